// Shared set-up for the database tests: a DB over a fresh MemoryStorage, connections that each
// follow a transaction manager of their own (as separate threads do in ZODB's tests), and a
// few registered classes.
import { TransactionManager } from '@wendelin/transaction'
import { Connection, DB, MemoryStorage, Persistent, registerClass, type Root } from '@wendelin/zodb'

export class Item extends Persistent {
  name = ''
  value: unknown = 0
  constructor(name = '', value: unknown = 0) {
    super()
    this.name = name
    this.value = value
  }
}
registerClass('test.Item', Item)

/** A counter whose concurrent increments merge. */
export class Counter extends Persistent {
  value = 0
  override _p_resolveConflict(old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>) {
    return { ...mine, value: (committed.value as number) + (mine.value as number) - ((old?.value as number | undefined) ?? 0) }
  }
}
registerClass('test.Counter', Counter)

export type AppRoot = Root & { [name: string]: unknown }

export interface Session {
  tm: TransactionManager
  conn: Connection<AppRoot>
  root: AppRoot
}

export function newDB(options: ConstructorParameters<typeof DB>[1] = {}): DB<AppRoot> {
  return new DB<AppRoot>(new MemoryStorage(), options)
}

/** A connection with its own transaction manager. */
export function session(db: DB<AppRoot>): Session {
  const tm = new TransactionManager()
  const conn = db.open({ transactionManager: tm })
  return {
    tm,
    conn,
    get root() {
      return conn.root
    },
  }
}
