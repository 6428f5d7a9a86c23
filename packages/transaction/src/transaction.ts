// One unit of work: the data managers that joined it commit together or not at all.
//
// Status machine:
//
//     ACTIVE ──doom()──► DOOMED ──abort()──► (freed)
//       │ commit()
//       ▼
//     COMMITTING ──all phases ok──► COMMITTED (freed)
//       │ a phase failed
//       ▼
//     COMMITFAILED ("hosed"): commit/join/savepoint throw TransactionFailedError until abort()
//
// A failed savepoint (making or rolling back) also hoses the transaction. Freeing detaches the
// transaction from its manager and drops its data managers, hooks and data. Disposing (`using`)
// aborts a transaction that is not freed yet.

import type {
  AbortHook,
  AfterCommitHook,
  BeforeCommitHook,
  DataManager,
  HookRegistration,
  Savepoint,
  Synchronizer,
  TransactionLogger,
} from './interfaces.js'
import {
  DoomedTransactionError,
  TransactionFailedError,
  TransactionStateError,
  TransientError,
  describe,
} from './errors.js'
import { type SavepointOwner, TransactionSavepoint } from './savepoint.js'
import { IterableWeakSet } from './weak-set.js'
import { defaultLogger } from './log.js'

export const Status = {
  ACTIVE: 'Active',
  COMMITTING: 'Committing',
  COMMITTED: 'Committed',
  DOOMED: 'Doomed',
  COMMITFAILED: 'Commit failed',
} as const
export type Status = (typeof Status)[keyof typeof Status]

/** What a transaction needs from the manager that made it. */
export interface TransactionOwner {
  /** The transaction ended: it is no longer current. */
  free(txn: Transaction): void
}

interface Hook {
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- typed at add*Hook()
  hook: Function
  args: unknown[]
}

export interface TransactionOptions {
  /** The manager's synchronizers (shared, so synchronizers registered later are seen too). */
  synchronizers?: IterableWeakSet<Synchronizer>
  manager?: TransactionOwner
  logger?: TransactionLogger
}

export class Transaction implements SavepointOwner {
  #status: Status = Status.ACTIVE
  /** Committed or aborted: freed, nothing left to end. */
  #ended = false
  #resources: DataManager[] = []
  #synchronizers: IterableWeakSet<Synchronizer> | null
  #manager: TransactionOwner | null
  readonly #log: TransactionLogger
  /** The error that hosed this transaction (set with status COMMITFAILED). */
  #failure: { error: unknown } | null = null
  /**
   * The indexes of the savepoints that can still be rolled back, ascending. Only numbers: the
   * transaction keeps no savepoint alive (Python's holds them weakly), so a long transaction that
   * makes a savepoint every so often (a bulk import) does not keep every savepoint it dropped,
   * with the state each data manager saved in it, until it ends.
   */
  #liveSavepoints: number[] = []
  #savepointIndex = 0
  /** Managers that joined after savepoints were made, in join order, with how many had been made then. */
  #lateJoins: { dm: DataManager; after: number }[] = []
  #data = new Map<object, unknown>()
  #beforeCommit: Hook[] = []
  #afterCommit: Hook[] = []
  #beforeAbort: Hook[] = []
  #afterAbort: Hook[] = []
  #user = ''
  #description = ''
  /** Extended metadata stored with the transaction record (ZODB's `extension`). */
  extension: Record<string, unknown> = {}

  constructor(options: TransactionOptions = {}) {
    this.#synchronizers = options.synchronizers ?? new IterableWeakSet()
    this.#manager = options.manager ?? null
    this.#log = options.logger ?? defaultLogger
    this.#log.debug('new transaction')
  }

  get status(): Status {
    return this.#status
  }

  /** The user who made the changes, stored with the transaction record. */
  get user(): string {
    return this.#user
  }
  set user(value: string) {
    if (typeof value !== 'string') throw new TypeError(`transaction user must be a string, got ${typeof value}`)
    this.#user = value
  }

  /** Text describing the transaction; `note()` appends to it. */
  get description(): string {
    return this.#description
  }
  set description(value: string) {
    if (typeof value !== 'string') throw new TypeError(`transaction description must be a string, got ${typeof value}`)
    this.#description = value
  }

  /** Append a line to the description. */
  note(text: string): void {
    const line = String(text).trim()
    if (line === '') return
    this.#description = this.#description ? `${this.#description}\n${line}` : line
  }

  /** Set `user` as ZODB does: `"<path> <name>"`. */
  setUser(name: string, path = '/'): void {
    this.user = `${path} ${name}`
  }

  setExtendedInfo(name: string, value: unknown): void {
    this.extension[name] = value
  }

  /** Data a data manager keeps with this transaction, under a key of its own (usually itself). */
  data<T = unknown>(key: object): T | undefined {
    return this.#data.get(key) as T | undefined
  }

  setData(key: object, value: unknown): void {
    this.#data.set(key, value)
  }

  isDoomed(): boolean {
    return this.#status === Status.DOOMED
  }

  /** Make the transaction uncommittable: it can still be used, but only abort() ends it. */
  doom(): void {
    if (this.#status === Status.DOOMED) return
    if (this.#status !== Status.ACTIVE) {
      throw new TransactionStateError(`cannot doom a transaction whose status is ${this.#status}`)
    }
    this.#status = Status.DOOMED
  }

  /** The data managers joined so far, in join order. */
  get resources(): readonly DataManager[] {
    return this.#resources
  }

  /** Add a data manager to the transaction; it will be committed or aborted with it. */
  join(dm: DataManager): void {
    this.#throwIfHosed()
    if (this.#status !== Status.ACTIVE && this.#status !== Status.DOOMED) {
      throw new TransactionStateError(
        `cannot join ${describe(dm)}: the transaction's status is ${this.#status}, expected ${Status.ACTIVE} or ${Status.DOOMED}`,
      )
    }
    this.#resources.push(dm)
    // Joined after savepoints were made: rolling any of them back means aborting this manager.
    if (this.#liveSavepoints.length > 0) this.#lateJoins.push({ dm, after: this.#savepointIndex })
  }

  /** @internal Abort and unjoin the managers that joined after savepoint `index` was made, in join order. */
  _abortJoinedAfter(index: number): void {
    for (const { dm, after } of [...this.#lateJoins]) {
      if (after < index) continue
      dm.abort(this)
      this.#resources = this.#resources.filter((r) => r !== dm)
    }
  }

  /**
   * Remember the current state of every joined data manager. With `optimistic`, managers that
   * cannot make savepoints are allowed, and rolling back is then an error.
   */
  savepoint(optimistic = false): Savepoint {
    this.#throwIfHosed()
    let sp: TransactionSavepoint
    try {
      sp = new TransactionSavepoint(this, optimistic, this.#resources)
    } catch (error) {
      this.#cleanup(this.#resources)
      this._fail(error)
      throw error
    }
    sp._setIndex(++this.#savepointIndex)
    this.#liveSavepoints.push(this.#savepointIndex)
    return sp
  }

  /** @internal Whether savepoint `index` can still be rolled back. */
  _savepointIsLive(index: number): boolean {
    const live = this.#liveSavepoints
    let lo = 0
    let hi = live.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (live[mid]! < index) lo = mid + 1
      else hi = mid
    }
    return lo < live.length && live[lo] === index
  }

  /** @internal Invalidate every savepoint made after savepoint `index`. */
  _invalidateSavepointsAfter(index: number): void {
    const live = this.#liveSavepoints
    while (live.length > 0 && live[live.length - 1]! > index) live.pop()
  }

  #invalidateAllSavepoints(): void {
    this.#liveSavepoints = []
    this.#lateJoins = []
  }

  /** @internal Hose the transaction: remember why, so later use can say so. */
  _fail(error: unknown): void {
    this.#status = Status.COMMITFAILED
    if (this.#failure === null) this.#failure = { error }
  }

  #throwIfHosed(): void {
    if (this.#status === Status.COMMITFAILED) {
      throw new TransactionFailedError(this.#failure?.error)
    }
  }

  /** Commit the work of every joined data manager, or of none of them. */
  commit(): void {
    if (this.#status === Status.DOOMED) {
      throw new DoomedTransactionError('The transaction is doomed: it cannot be committed, only aborted')
    }
    this.#invalidateAllSavepoints()
    this.#throwIfHosed()
    if (this.#status !== Status.ACTIVE) {
      throw new TransactionStateError(`cannot commit a transaction whose status is ${this.#status}`)
    }

    this.#callHooks(this.#beforeCommit, { rethrow: true })
    for (const s of this.#synchs()) s.beforeCompletion?.(this)
    // A before-commit hook or a synchronizer may have doomed it: a doomed transaction never commits.
    if (this.isDoomed()) {
      throw new DoomedTransactionError('The transaction is doomed: it cannot be committed, only aborted')
    }
    this.#status = Status.COMMITTING
    try {
      this.#commitResources()
    } catch (error) {
      this._fail(error)
      this.#callHooks(this.#afterCommit, { prefix: [false], cleanResources: true })
      throw error
    }
    this.#status = Status.COMMITTED
    this.#notifyAfterCompletion()
    this.#callHooks(this.#afterCommit, { prefix: [true], cleanResources: true })
    this.#log.debug('commit')
    this.#free()
  }

  #commitResources(): void {
    const managers = [...this.#resources].sort(compareSortKeys)
    const voted = new Set<DataManager>()
    try {
      for (const dm of managers) dm.tpc_begin(this)
      for (const dm of managers) dm.commit(this)
      for (const dm of managers) {
        dm.tpc_vote(this)
        voted.add(dm)
      }
      try {
        for (const dm of managers) dm.tpc_finish(this)
      } catch (error) {
        this.#log.critical(
          'A data manager failed in tpc_finish, the second phase of two-phase commit: ' +
            'data managers may now be inconsistent with each other',
          error,
        )
        throw error
      }
    } catch (error) {
      try {
        this.#cleanup(managers, voted)
      } finally {
        this.#notifyAfterCompletion()
      }
      throw error
    }
  }

  /** After a failure: abort managers that did not vote, then tpc_abort all. Errors are logged. */
  #cleanup(managers: readonly DataManager[], voted: ReadonlySet<DataManager> = new Set()): void {
    for (const dm of managers) {
      if (voted.has(dm)) continue
      try {
        dm.abort(this)
      } catch (error) {
        this.#log.error(`Error in abort() on data manager ${describe(dm)}`, error)
      }
    }
    for (const dm of managers) {
      try {
        dm.tpc_abort(this)
      } catch (error) {
        this.#log.error(`Error in tpc_abort() on data manager ${describe(dm)}`, error)
      }
    }
  }

  /** Throw away the work of every joined data manager and end the transaction. */
  abort(): void {
    let firstError: { error: unknown } | null = null
    const remember = (error: unknown) => {
      if (firstError === null) firstError = { error }
    }
    try {
      this.#callHooks(this.#beforeAbort, {})
      this.#invalidateAllSavepoints()
      try {
        for (const s of this.#synchs()) s.beforeCompletion?.(this)
      } catch (error) {
        this.#log.error('Error in a synchronizer beforeCompletion() during abort', error)
        remember(error)
      }
      for (const dm of this.#resources) {
        try {
          dm.abort(this)
        } catch (error) {
          this.#log.error(`Error in abort() on data manager ${describe(dm)}`, error)
          remember(error)
        }
      }
      this.#callHooks(this.#afterAbort, { cleanResources: true })
      // Synchronizers see the transaction after it stopped being current, but before its
      // data is dropped: they may want to read what they stored in it.
      this.#freeManager()
      for (const s of this.#synchs()) {
        try {
          s.afterCompletion?.(this)
        } catch (error) {
          this.#log.error('Error in a synchronizer afterCompletion() during abort', error)
          remember(error)
        }
      }
      this.#log.debug('abort')
    } finally {
      this.#free()
    }
    if (firstError !== null) throw (firstError as { error: unknown }).error
  }

  /**
   * `using txn = tm.begin()`: a transaction its block did not commit is aborted at the end of
   * the block (a failure of the block included); a committed or aborted one is left alone.
   */
  [Symbol.dispose](): void {
    if (!this.#ended && this.#status !== Status.COMMITTING) this.abort()
  }

  /** Whether `error` is worth retrying: a TransientError, or a joined manager's shouldRetry says so. */
  isRetryableError(error: unknown): boolean {
    if (error instanceof TransientError) return true
    for (const dm of this.#resources) {
      if (typeof dm.shouldRetry === 'function' && dm.shouldRetry(error)) return true
    }
    return false
  }

  // --- hooks -----------------------------------------------------------------------------

  /** Call `hook(...args)` at the start of commit; hooks added by hooks are called too. */
  addBeforeCommitHook<A extends unknown[]>(hook: BeforeCommitHook<A>, ...args: A): void {
    this.#beforeCommit.push({ hook, args })
  }
  getBeforeCommitHooks(): HookRegistration<BeforeCommitHook>[] {
    return listHooks(this.#beforeCommit)
  }

  /** Call `hook(success, ...args)` after the commit attempt, whatever its outcome. */
  addAfterCommitHook<A extends unknown[]>(hook: AfterCommitHook<A>, ...args: A): void {
    this.#afterCommit.push({ hook, args })
  }
  getAfterCommitHooks(): HookRegistration<AfterCommitHook>[] {
    return listHooks(this.#afterCommit)
  }

  addBeforeAbortHook<A extends unknown[]>(hook: AbortHook<A>, ...args: A): void {
    this.#beforeAbort.push({ hook, args })
  }
  getBeforeAbortHooks(): HookRegistration<AbortHook>[] {
    return listHooks(this.#beforeAbort)
  }

  addAfterAbortHook<A extends unknown[]>(hook: AbortHook<A>, ...args: A): void {
    this.#afterAbort.push({ hook, args })
  }
  getAfterAbortHooks(): HookRegistration<AbortHook>[] {
    return listHooks(this.#afterAbort)
  }

  /**
   * Call and clear `hooks`, including hooks that they add while running. With `rethrow` the
   * first error stops the rest and is thrown; otherwise errors are logged and the rest run.
   * With `cleanResources`, every data manager is aborted afterwards: the hooks ran after the
   * real work and may have left changes behind.
   */
  #callHooks(hooks: Hook[], opts: { rethrow?: boolean; prefix?: unknown[]; cleanResources?: boolean }): void {
    if (hooks.length === 0) return
    try {
      for (let i = 0; i < hooks.length; i++) {
        const { hook, args } = hooks[i]!
        try {
          Reflect.apply(hook, undefined, [...(opts.prefix ?? []), ...args])
        } catch (error) {
          if (opts.rethrow) throw error
          this.#log.error(`Error in hook ${hook.name || '(anonymous)'}`, error)
        }
      }
    } finally {
      hooks.length = 0
      if (opts.cleanResources) {
        for (const dm of this.#resources) {
          try {
            dm.abort(this)
          } catch (error) {
            this.#log.error(`Error in abort() on data manager ${describe(dm)}`, error)
          }
        }
      }
    }
  }

  // --- end of life -------------------------------------------------------------------------

  *#synchs(): Iterable<Synchronizer> {
    if (this.#synchronizers !== null) yield* this.#synchronizers
  }

  /** After a commit: every synchronizer is told, whatever the others do. */
  #notifyAfterCompletion(): void {
    for (const s of this.#synchs()) {
      try {
        s.afterCompletion?.(this)
      } catch (error) {
        this.#log.error('Error in a synchronizer afterCompletion()', error)
      }
    }
  }

  #freeManager(): void {
    const manager = this.#manager
    this.#manager = null
    manager?.free(this)
  }

  #free(): void {
    this.#ended = true
    this.#freeManager()
    this.#data.clear()
    this.#resources = []
    this.#beforeCommit.length = 0
    this.#afterCommit.length = 0
    this.#beforeAbort.length = 0
    this.#afterAbort.length = 0
    // The set is shared with the manager: drop our reference rather than clearing it.
    this.#synchronizers = null
    this.#invalidateAllSavepoints()
  }
}

function compareSortKeys(a: DataManager, b: DataManager): number {
  const ka = a.sortKey()
  const kb = b.sortKey()
  return ka < kb ? -1 : ka > kb ? 1 : 0
}

function listHooks<H>(hooks: Hook[]): HookRegistration<H>[] {
  return hooks.map(({ hook, args }) => ({ hook: hook as H, args: [...args] }))
}
