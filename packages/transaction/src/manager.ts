// A transaction manager keeps the current transaction of one line of work and starts, commits
// and aborts it. Data managers find the transaction to join through it; synchronizers (database
// connections) register with it to hear about transaction boundaries.

import type { Savepoint, Synchronizer, TransactionLogger, TransactionManagerLike } from './interfaces.js'
import { AlreadyInTransactionError, NoTransactionError, TransactionStateError } from './errors.js'
import { Transaction, type TransactionOwner } from './transaction.js'
import { IterableWeakSet } from './weak-set.js'
import { defaultLogger } from './log.js'

export interface TransactionManagerOptions {
  /**
   * Explicit mode: transactions must be begun with `begin()`; `begin()` while one is active and
   * `get()`/`commit()`/`abort()` with none active are errors. Implicit mode (the default) starts a
   * transaction on first use and lets `begin()` abort the current one.
   */
  explicit?: boolean
  /** Where swallowed errors are reported (default: `debug` namespaces wendelin:transaction*). */
  logger?: TransactionLogger
}

export interface RunOptions {
  /** How many times to try in all (default 3). */
  tries?: number
  /** Text noted on each attempt's transaction (default: the function's name, if it has one). */
  note?: string
}

export class TransactionManager implements TransactionManagerLike, TransactionOwner {
  explicit: boolean
  readonly #logger: TransactionLogger
  #txn: Transaction | null = null
  readonly #synchs = new IterableWeakSet<Synchronizer>()

  constructor(options: TransactionManagerOptions = {}) {
    this.explicit = options.explicit ?? false
    this.#logger = options.logger ?? defaultLogger
  }

  begin(): Transaction {
    if (this.#txn !== null) {
      if (this.explicit) throw new AlreadyInTransactionError()
      this.#txn.abort()
    }
    const txn = this.#newTransaction()
    // get() already returns the new transaction while synchronizers hear of it.
    for (const s of this.#synchs) s.newTransaction?.(txn)
    return txn
  }

  get(): Transaction {
    if (this.#txn === null) {
      if (this.explicit) throw new NoTransactionError()
      return this.#newTransaction()
    }
    return this.#txn
  }

  /** The current transaction, or null: never starts one. */
  peek(): Transaction | null {
    return this.#txn
  }

  #newTransaction(): Transaction {
    this.#txn = new Transaction({ synchronizers: this.#synchs, manager: this, logger: this.#logger })
    return this.#txn
  }

  /** @internal called by a transaction that ended. */
  free(txn: Transaction): void {
    if (txn !== this.#txn) {
      throw new TransactionStateError('free() of a transaction that is not the current one of this manager')
    }
    this.#txn = null
  }

  commit(): void {
    this.get().commit()
  }

  abort(): void {
    this.get().abort()
  }

  doom(): void {
    this.get().doom()
  }

  isDoomed(): boolean {
    return this.get().isDoomed()
  }

  savepoint(optimistic = false): Savepoint {
    return this.get().savepoint(optimistic)
  }

  /** Register a synchronizer (held weakly); it hears of the current transaction at once. */
  registerSynch(synch: Synchronizer): void {
    this.#synchs.add(synch)
    if (this.#txn !== null) synch.newTransaction?.(this.#txn)
  }

  unregisterSynch(synch: Synchronizer): void {
    this.#synchs.delete(synch)
  }

  clearSynchs(): void {
    this.#synchs.clear()
  }

  registeredSynchs(): boolean {
    return this.#synchs.size > 0
  }

  /**
   * Run `fn` in a new transaction and commit it; on an error worth retrying (a TransientError
   * such as a ConflictError, or one a joined data manager's `shouldRetry` accepts) abort and
   * run it again, up to `tries` times in all. Other errors abort and are rethrown.
   */
  run<T>(fn: (txn: Transaction) => T, options: RunOptions = {}): T {
    const tries = checkTries(options.tries)
    for (let attempt = 1; ; attempt++) {
      const txn = this._beginAttempt(fn, options)
      try {
        const result = fn(txn)
        if (isPromiseLike(result)) {
          txn.abort()
          throw new TypeError('run() was given an async function: use runAsync() for functions that return promises')
        }
        this.commit()
        return result
      } catch (error) {
        if (!this._retryAfter(error, attempt, tries)) throw error
      }
    }
  }

  /** `run()` for async work: `fn`'s promise is awaited before the commit. */
  async runAsync<T>(fn: (txn: Transaction) => Promise<T>, options: RunOptions = {}): Promise<T> {
    const tries = checkTries(options.tries)
    for (let attempt = 1; ; attempt++) {
      const txn = this._beginAttempt(fn, options)
      try {
        const result = await fn(txn)
        this.commit()
        return result
      } catch (error) {
        if (!this._retryAfter(error, attempt, tries)) throw error
      }
    }
  }

  /**
   * Attempts at one piece of work, for code that prefers a loop to a callback:
   *
   *     for (const attempt of tm.attempts(3)) {
   *       attempt.run((txn) => { ...change things... })
   *     }
   *
   * Each attempt begins a transaction, runs the function and commits. A retryable failure aborts
   * and the loop goes on to the next attempt; success ends the loop; the last attempt's failure,
   * or any failure that is not retryable, is thrown.
   */
  *attempts(count = 3): Generator<Attempt, void, undefined> {
    checkTries(count)
    for (let n = 1; n <= count; n++) {
      const attempt = new Attempt(this, n, n === count)
      yield attempt
      if (attempt.succeeded) return
      if (!attempt.used) {
        throw new TransactionStateError('an attempt from attempts() must be used with attempt.run() or attempt.runAsync()')
      }
    }
  }

  /** @internal Begin the transaction of one attempt, noting what it runs. */
  _beginAttempt(fn: { name: string }, options: RunOptions = {}): Transaction {
    const txn = this.begin()
    const note = options.note ?? (fn.name && fn.name !== '_' ? fn.name : '')
    if (note) txn.note(note)
    return txn
  }

  /** @internal After a failed attempt: abort, and say whether to try again. */
  _retryAfter(error: unknown, attempt: number, tries: number): boolean {
    // Ask before aborting: aborting forgets the data managers whose shouldRetry we consult.
    const txn = this.#txn
    const retry = attempt < tries && txn !== null && txn.isRetryableError(error)
    if (txn !== null) {
      try {
        txn.abort()
      } catch (abortError) {
        this.#logger.error('Error aborting a failed attempt', abortError)
      }
    }
    return retry
  }
}

/** One try from `TransactionManager.attempts()`. */
export class Attempt {
  #succeeded = false
  #used = false

  constructor(
    readonly manager: TransactionManager,
    /** 1 for the first attempt. */
    readonly number: number,
    /** Whether a failure of this attempt is thrown rather than retried. */
    readonly last: boolean,
  ) {}

  get succeeded(): boolean {
    return this.#succeeded
  }

  get used(): boolean {
    return this.#used
  }

  /** Begin a transaction, run `fn`, commit. Returns whether it committed (false: it will be retried). */
  run(fn: (txn: Transaction) => void): boolean {
    this.#use()
    const txn = this.manager._beginAttempt(fn)
    try {
      const result: unknown = fn(txn)
      if (isPromiseLike(result)) throw new TypeError('attempt.run() was given an async function: use runAsync()')
      this.manager.commit()
    } catch (error) {
      if (this.manager._retryAfter(error, this.number, this.last ? this.number : Infinity)) return false
      throw error
    }
    this.#succeeded = true
    return true
  }

  async runAsync(fn: (txn: Transaction) => Promise<void>): Promise<boolean> {
    this.#use()
    const txn = this.manager._beginAttempt(fn)
    try {
      await fn(txn)
      this.manager.commit()
    } catch (error) {
      if (this.manager._retryAfter(error, this.number, this.last ? this.number : Infinity)) return false
      throw error
    }
    this.#succeeded = true
    return true
  }

  #use(): void {
    if (this.#used) throw new TransactionStateError('this attempt was already run; take the next one from attempts()')
    this.#used = true
  }
}

function checkTries(tries: number | undefined): number {
  const n = tries ?? 3
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`tries must be a positive integer, got ${String(tries)}`)
  return n
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}
