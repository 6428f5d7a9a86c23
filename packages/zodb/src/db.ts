// DB: a database over one storage. It creates the root object on first open, hands out
// connections (reusing closed ones from a pool), and forwards the storage's invalidations to
// every connection so that each can apply them at its next transaction boundary.

import createDebug from 'debug'
import { TransactionManager, manager as defaultManager, type Transaction, type TransactionManagerLike } from '@wendelin/transaction'

import { Connection } from './connection.js'
import { ConflictError, ConnectionStateError, POSError, POSKeyError } from './errors.js'
import { Root } from './root.js'
import { encodeRecord } from './serialize.js'
import type { HistoryEntry, InvalidationListener, Storage, UndoLogEntry } from './storage.js'
import { openStorage } from './storage-spec.js'
import { StorageCommit } from './storage-commit.js'
import { MAX_TID, idToHex, tidFromDate, type Oid, type Tid } from './tid.js'

const log = createDebug('wendelin:zodb:db')

export interface DBOptions {
  /** Target number of active objects per connection cache (default 10000). */
  cacheSize?: number
  /** Target estimated bytes of active objects per connection cache (default 0: no limit). */
  cacheSizeBytes?: number
  /** Closed connections kept for reuse (default 7). */
  poolSize?: number
  /** Open the storage read-only (for a spec). */
  readOnly?: boolean
}

export interface OpenOptions {
  /** The transaction manager whose transactions the connection follows (default: the package's `manager`). */
  transactionManager?: TransactionManagerLike
  /** Read the database as it was right after this transaction (or at this time): a read-only historical connection. */
  at?: Tid | Date
  /** Read the database as it was right before this transaction (or time). */
  before?: Tid | Date
}

export interface TransactionOptions {
  /** Tries in all on ConflictError (default 3). */
  tries?: number
  /** A note for the transaction's description. */
  note?: string
}

export class DB<R extends object = Root> implements Disposable {
  readonly storage: Storage
  readonly cacheSize: number
  readonly cacheSizeBytes: number
  readonly poolSize: number
  /** Open connections and pooled (closed) ones: all receive invalidations. */
  readonly #connections = new Set<Connection<R>>()
  readonly #pool: Connection<R>[] = []
  #closed = false
  readonly #listener: InvalidationListener

  /** Open a database over a storage or a storage spec (`memory:`, ...). */
  static async open<R extends object = Root>(storage: Storage | string, options: DBOptions = {}): Promise<DB<R>> {
    const s = typeof storage === 'string' ? await openStorage(storage, options.readOnly ? { readOnly: true } : {}) : storage
    try {
      return new DB<R>(s, options)
    } catch (error) {
      if (s !== storage) s.close() // opened here for the database alone: nobody else would close it
      throw error
    }
  }

  constructor(storage: Storage, options: DBOptions = {}) {
    this.storage = storage
    this.cacheSize = options.cacheSize ?? 10000
    this.cacheSizeBytes = options.cacheSizeBytes ?? 0
    this.poolSize = options.poolSize ?? 7
    this.#listener = {
      invalidate: (tid, oids) => {
        for (const c of this.#connections) c._invalidate(tid, oids)
      },
      invalidateCache: () => {
        for (const c of this.#connections) c._invalidateCache()
      },
    }
    storage.addListener(this.#listener)
    try {
      this.#ensureRoot()
    } catch (error) {
      storage.removeListener(this.#listener) // the storage must not keep a database that never was
      throw error
    }
  }

  #ensureRoot(): void {
    try {
      if (this.storage.loadBefore(0n, MAX_TID) !== null) return
    } catch (error) {
      if (!(error instanceof POSKeyError)) throw error
    }
    if (this.storage.isReadOnly()) return
    const root = new Root()
    const txn = { user: '', description: 'initial database creation', extension: {} }
    root._p_oid = 0n
    const data = encodeRecord(root, 'zodb.Root', {
      persistentRef: () => {
        throw new Error('the new root refers to nothing')
      },
    })
    this.storage.tpc_begin(txn)
    try {
      this.storage.store(0n, 0n, data, txn)
      this.storage.tpc_vote(txn)
      this.storage.tpc_finish(txn)
    } catch (error) {
      this.storage.tpc_abort(txn)
      // Another process opening the same new database created the root first: use theirs.
      if (error instanceof ConflictError && this.storage.loadBefore(0n, MAX_TID) !== null) {
        log('the root object was created meanwhile by another client')
        return
      }
      throw error
    }
    log('created the root object')
  }

  get closed(): boolean {
    return this.#closed
  }

  /**
   * A connection. By default it follows the package's transaction manager; with `at` or
   * `before` it is historical: it sees the database as of then, and nothing can be changed.
   */
  open(options: OpenOptions = {}): Connection<R> {
    if (this.#closed) throw new ConnectionStateError('open: the database is closed')
    if (options.at !== undefined && options.before !== undefined) throw new TypeError('open: give at or before, not both')
    const cache = { cacheSize: this.cacheSize, cacheSizeBytes: this.cacheSizeBytes }
    if (options.at !== undefined || options.before !== undefined) {
      const before = options.at !== undefined ? toTid(options.at) + 1n : toTid(options.before!)
      const conn = new Connection<R>(this, { before, cache, ...(options.transactionManager ? { transactionManager: options.transactionManager } : {}) })
      this.#connections.add(conn)
      return conn
    }
    const pooled = this.#pool.pop()
    if (pooled !== undefined) {
      pooled._reopen(options.transactionManager)
      return pooled
    }
    const conn = new Connection<R>(this, { cache, ...(options.transactionManager ? { transactionManager: options.transactionManager } : {}) })
    this.#connections.add(conn)
    const open = this.#connections.size - this.#pool.length
    if (open > this.poolSize) log('%d connections are open, more than the pool size %d: are some never closed?', open, this.poolSize)
    return conn
  }

  /** @internal */
  _connectionClosed(conn: Connection<object>): void {
    const c = conn as unknown as Connection<R>
    if (c.historical || this.#closed || this.#pool.length >= this.poolSize) {
      this.#connections.delete(c)
      c.cache.clear()
      return
    }
    this.#pool.push(c)
  }

  /** Number of connections (open and pooled). */
  get connectionCount(): number {
    return this.#connections.size
  }

  /** Number of closed connections waiting in the pool. */
  get pooledCount(): number {
    return this.#pool.length
  }

  /**
   * Run `fn` with a connection of its own in a transaction of its own and commit; on a
   * ConflictError run it again (up to `tries` times). The connection is closed afterwards.
   */
  async transaction<T>(fn: (conn: Connection<R>) => T | Promise<T>, options: TransactionOptions = {}): Promise<T> {
    const tm = new TransactionManager({ explicit: true })
    const conn = this.open({ transactionManager: tm })
    try {
      return await tm.runAsync(async () => await fn(conn), { ...(options.tries ? { tries: options.tries } : {}), ...(options.note ? { note: options.note } : {}) })
    } finally {
      try {
        if (tm.peek() !== null) tm.abort()
      } finally {
        conn.close()
      }
    }
  }

  lastTransaction(): Tid {
    return this.storage.lastTransaction()
  }

  history(oid: Oid, size = 1): HistoryEntry[] {
    return this.storage.history(oid, size)
  }

  /** Remove old revisions (and, with gc, unreachable objects) as of `t` (default: now). */
  pack(t: Date | Tid = new Date(), gc = true): void {
    this.storage.pack(t, gc)
  }

  supportsUndo(): boolean {
    return this.storage.supportsUndo()
  }

  /**
   * Undo transaction `tid` when the current transaction of `transactionManager` (default: the
   * package's manager) commits: every object it wrote goes back to its previous revision.
   * POSError if the storage cannot undo; the storage refuses (at commit) if a later transaction
   * changed one of those objects.
   */
  undo(tid: Tid, options: { transactionManager?: TransactionManagerLike } = {}): void {
    const storage = this.storage
    if (!storage.supportsUndo() || typeof storage.undo !== 'function') {
      throw new POSError(`undo of 0x${idToHex(tid)}: storage ${storage.getName()} does not support undo`)
    }
    const undo = storage.undo.bind(storage)
    const txn = (options.transactionManager ?? defaultManager).get()
    txn.join({
      // After the storage's own key: a connection committing in the same transaction goes first.
      sortKey: () => `${storage.sortKey()}~undo`,
      abort: () => {},
      tpc_begin: (t: Transaction) => StorageCommit.for(storage, t).begin(),
      commit: (t: Transaction) => void undo(tid, t),
      tpc_vote: (t: Transaction) => void StorageCommit.for(storage, t).vote(),
      tpc_finish: (t: Transaction) => void StorageCommit.for(storage, t).finish(),
      tpc_abort: (t: Transaction) => StorageCommit.for(storage, t).abort(),
    })
  }

  /** The newest transactions, newest first (empty where the storage cannot undo). */
  undoLog(limit = 20): UndoLogEntry[] {
    return this.storage.undoLog?.(limit) ?? []
  }

  /** Close every connection and the storage. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.storage.removeListener(this.#listener)
    for (const c of this.#connections) c._shutdown()
    this.#connections.clear()
    this.#pool.length = 0
    this.storage.close()
  }

  [Symbol.dispose](): void {
    this.close()
  }
}

function toTid(t: Tid | Date): Tid {
  return typeof t === 'bigint' ? t : tidFromDate(t)
}
