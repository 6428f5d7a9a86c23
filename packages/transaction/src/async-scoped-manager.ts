// A transaction manager per asynchronous task.
//
// Python gives each thread its own current transaction (ThreadTransactionManager). Node runs
// many concurrent tasks on one thread — web requests interleaved at every `await` — and a single
// current transaction would be shared by all of them. This manager keeps one TransactionManager
// per async context (AsyncLocalStorage): `scope(fn)` runs fn, and everything it awaits, with a
// current transaction of its own. Outside any scope a root manager is used, so plain scripts
// need no scope at all.
//
//     const tm = new AsyncScopedTransactionManager()
//     server.on('request', (req, res) => tm.scope(async () => {
//       const conn = db.open({ transactionManager: tm })   // registers with this scope's manager
//       ...; tm.commit()
//     }))

import { AsyncLocalStorage } from 'node:async_hooks'

import type { Savepoint, Synchronizer, TransactionManagerLike } from './interfaces.js'
import { type Attempt, type RunOptions, TransactionManager, type TransactionManagerOptions } from './manager.js'
import type { Transaction } from './transaction.js'

export class AsyncScopedTransactionManager implements TransactionManagerLike {
  readonly #storage = new AsyncLocalStorage<TransactionManager>()
  readonly #root: TransactionManager
  readonly #options: TransactionManagerOptions

  constructor(options: TransactionManagerOptions = {}) {
    this.#options = options
    this.#root = new TransactionManager(options)
  }

  /** The manager of the current async scope (the root manager outside any scope). */
  get current(): TransactionManager {
    return this.#storage.getStore() ?? this.#root
  }

  /** Whether the caller runs inside a `scope()`. */
  get inScope(): boolean {
    return this.#storage.getStore() !== undefined
  }

  /**
   * Run `fn` (sync or async) with a fresh current transaction and synchronizer set of its own;
   * nested scopes are independent of their parent. A transaction left open when the scope's
   * work ends is the caller's to commit or abort, as with threads.
   */
  scope<R>(fn: () => R, options: Pick<TransactionManagerOptions, 'explicit'> = {}): R {
    const manager = new TransactionManager({ ...this.#options, ...options })
    return this.#storage.run(manager, fn)
  }

  get explicit(): boolean {
    return this.current.explicit
  }

  begin(): Transaction {
    return this.current.begin()
  }

  get(): Transaction {
    return this.current.get()
  }

  peek(): Transaction | null {
    return this.current.peek()
  }

  commit(): void {
    this.current.commit()
  }

  abort(): void {
    this.current.abort()
  }

  doom(): void {
    this.current.doom()
  }

  isDoomed(): boolean {
    return this.current.isDoomed()
  }

  savepoint(optimistic = false): Savepoint {
    return this.current.savepoint(optimistic)
  }

  registerSynch(synch: Synchronizer): void {
    this.current.registerSynch(synch)
  }

  unregisterSynch(synch: Synchronizer): void {
    this.current.unregisterSynch(synch)
  }

  clearSynchs(): void {
    this.current.clearSynchs()
  }

  registeredSynchs(): boolean {
    return this.current.registeredSynchs()
  }

  run<T>(fn: (txn: Transaction) => T, options?: RunOptions): T {
    return this.current.run(fn, options)
  }

  runAsync<T>(fn: (txn: Transaction) => Promise<T>, options?: RunOptions): Promise<T> {
    return this.current.runAsync(fn, options)
  }

  attempts(count?: number): Generator<Attempt, void, undefined> {
    return this.current.attempts(count)
  }
}
