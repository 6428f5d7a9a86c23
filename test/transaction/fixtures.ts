// Test doubles for the transaction suite: data managers that record what the transaction did
// to them and can fail in any phase, a data manager with real savepoint support, and a logger
// that captures what the transaction swallowed.
import type {
  DataManager,
  DataManagerSavepoint,
  Synchronizer,
  Transaction,
  TransactionLogger,
} from '@wendelin/transaction'

export type Phase = 'tpc_begin' | 'commit' | 'tpc_vote' | 'tpc_finish' | 'abort' | 'tpc_abort' | 'savepoint' | 'rollback'

/** A data manager that appends `"<key>.<phase>"` to a shared journal and can throw in one phase. */
export class RecordingDataManager implements DataManager {
  constructor(
    readonly key: string,
    readonly journal: string[] = [],
    public failIn: Phase | null = null,
  ) {}

  #record(phase: Phase): void {
    this.journal.push(`${this.key}.${phase}`)
    if (this.failIn === phase) throw new Error(`${this.key} failed in ${phase}`)
  }

  sortKey(): string {
    return this.key
  }
  tpc_begin(_txn: Transaction): void {
    this.#record('tpc_begin')
  }
  commit(_txn: Transaction): void {
    this.#record('commit')
  }
  tpc_vote(_txn: Transaction): void {
    this.#record('tpc_vote')
  }
  tpc_finish(_txn: Transaction): void {
    this.#record('tpc_finish')
  }
  abort(_txn: Transaction): void {
    this.#record('abort')
  }
  tpc_abort(_txn: Transaction): void {
    this.#record('tpc_abort')
  }

  /** Phases this manager saw, without its key. */
  get phases(): string[] {
    return this.journal.filter((e) => e.startsWith(`${this.key}.`)).map((e) => e.slice(this.key.length + 1))
  }
}

/** A recording data manager that also supports savepoints (recording their creation and rollback). */
export class SavepointRecordingDataManager extends RecordingDataManager {
  savepoint(): DataManagerSavepoint {
    this.journal.push(`${this.key}.savepoint`)
    if (this.failIn === 'savepoint') throw new Error(`${this.key} failed in savepoint`)
    return {
      rollback: () => {
        this.journal.push(`${this.key}.rollback`)
        if (this.failIn === 'rollback') throw new Error(`${this.key} failed in rollback`)
      },
    }
  }
}

/**
 * A small transactional key-value store (after the transaction package's savepoint sample):
 * changes go to a working copy, commit makes them committed, abort and rollback restore.
 */
export class SampleStore implements DataManager {
  committed = new Map<string, unknown>()
  #working = new Map<string, unknown>()
  #txn: Transaction | null = null
  #tpcTxn: Transaction | null = null
  constructor(
    readonly getTransaction: () => Transaction,
    readonly name = 'sample',
  ) {}

  get(key: string): unknown {
    return (this.#txn ? this.#working : this.committed).get(key)
  }
  set(key: string, value: unknown): void {
    this.#join()
    this.#working.set(key, value)
  }
  delete(key: string): void {
    this.#join()
    this.#working.delete(key)
  }
  keys(): string[] {
    return [...(this.#txn ? this.#working : this.committed).keys()].sort()
  }

  #join(): void {
    if (this.#txn === null) {
      const txn = this.getTransaction()
      txn.join(this)
      this.#txn = txn
      this.#working = new Map(this.committed)
    }
  }
  #reset(): void {
    this.#txn = null
    this.#working = new Map()
  }

  sortKey(): string {
    return this.name
  }
  abort(_txn: Transaction): void {
    this.#reset()
  }
  tpc_begin(txn: Transaction): void {
    this.#tpcTxn = txn
  }
  commit(_txn: Transaction): void {}
  tpc_vote(_txn: Transaction): void {}
  tpc_finish(_txn: Transaction): void {
    this.committed = this.#working
    this.#tpcTxn = null
    this.#reset()
  }
  tpc_abort(_txn: Transaction): void {
    this.#tpcTxn = null
    this.#reset()
  }
  savepoint(): DataManagerSavepoint {
    const snapshot = new Map(this.#working)
    return {
      rollback: () => {
        this.#working = new Map(snapshot)
      },
    }
  }
  get inCommit(): boolean {
    return this.#tpcTxn !== null
  }
}

/** A synchronizer that records every call with the transaction it got. */
export class RecordingSynchronizer implements Synchronizer {
  calls: Array<[string, Transaction]> = []
  constructor(
    readonly journal: string[] = [],
    readonly label = 'synch',
    public failIn: 'beforeCompletion' | 'afterCompletion' | 'newTransaction' | null = null,
  ) {}
  #record(name: 'beforeCompletion' | 'afterCompletion' | 'newTransaction', txn: Transaction): void {
    this.calls.push([name, txn])
    this.journal.push(`${this.label}.${name}`)
    if (this.failIn === name) throw new Error(`${this.label} failed in ${name}`)
  }
  beforeCompletion(txn: Transaction): void {
    this.#record('beforeCompletion', txn)
  }
  afterCompletion(txn: Transaction): void {
    this.#record('afterCompletion', txn)
  }
  newTransaction(txn: Transaction): void {
    this.#record('newTransaction', txn)
  }
  names(): string[] {
    return this.calls.map(([n]) => n)
  }
}

/** A logger that keeps what it is given. */
export class CapturingLogger implements TransactionLogger {
  errors: Array<{ message: string; error: unknown }> = []
  criticals: Array<{ message: string; error: unknown }> = []
  debugs: string[] = []
  debug(message: string): void {
    this.debugs.push(message)
  }
  error(message: string, error: unknown): void {
    this.errors.push({ message, error })
  }
  critical(message: string, error: unknown): void {
    this.criticals.push({ message, error })
  }
}

/** Call `fn` and return what it threw (failing if it did not throw). */
export function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  throw new Error('expected the call to throw')
}
