// The contracts between a transaction and the things that take part in it.
//
// These interfaces are the TypeScript counterpart of `transaction.interfaces` in Python's
// transaction package: a data manager (a database connection, a BigFile handle, ...) joins a
// transaction and is then driven through the two-phase commit protocol; a synchronizer is told
// when transactions start and end; a savepoint lets a transaction roll back to an earlier state.
// The method names of the two-phase commit keep the ZODB spelling (`tpc_begin`, ...) so that the
// protocol reads the same here, in the storages and in the ZODB literature.

import type { Transaction } from './transaction.js'

/**
 * Something whose changes commit or abort together with a transaction.
 *
 * A data manager joins a transaction (`txn.join(dm)`) at the latest when it first has changes.
 * On `commit()` the transaction drives every joined manager, in `sortKey()` order, through:
 *
 *     tpc_begin(txn)   on all     prepare to commit; nothing is visible yet
 *     commit(txn)      on all     write the changes (tentatively)
 *     tpc_vote(txn)    on all     last chance to refuse: raise to veto (e.g. a ConflictError)
 *     tpc_finish(txn)  on all     make the changes permanent; must not fail
 *
 * If anything raises before `tpc_finish`, the transaction calls `abort(txn)` on every manager
 * that had not voted yet and then `tpc_abort(txn)` on all of them, so each is left as it was
 * before the commit started. `abort(txn)` is also how a transaction that is never committed
 * discards a manager's changes. A failure inside `tpc_finish` leaves managers that already
 * finished committed and the others not: it is reported as a critical inconsistency.
 */
export interface DataManager {
  /** Forget the changes made in `txn` (outside two-phase commit, or for a manager that did not vote). */
  abort(txn: Transaction): void
  /** Begin the two-phase commit of `txn`. */
  tpc_begin(txn: Transaction): void
  /** Write the changes of `txn`; they must not become visible to others before `tpc_finish`. */
  commit(txn: Transaction): void
  /** Verify that the commit can succeed; throw to veto it. */
  tpc_vote(txn: Transaction): void
  /** Make the changes permanent and visible. Must not fail once the vote succeeded. */
  tpc_finish(txn: Transaction): void
  /** Undo everything done since `tpc_begin`; may be called even if `tpc_begin` was not. */
  tpc_abort(txn: Transaction): void
  /**
   * A key that orders data managers within a commit (plain string comparison). Managers that
   * must write before others (a BigFile handle before its database connection) sort first. Keys
   * must be consistent across transactions so that concurrent commits take locks in one order.
   */
  sortKey(): string
  /**
   * Optional: a savepoint of this manager's current state, for `txn.savepoint()`. A manager
   * without it makes a savepoint an error unless the savepoint is optimistic.
   */
  savepoint?(): DataManagerSavepoint
  /** Optional: whether `error` is transient for this manager, so the work is worth retrying. */
  shouldRetry?(error: unknown): boolean
}

/** A data manager's own savepoint: restores the manager to the state it had when it was made. */
export interface DataManagerSavepoint {
  rollback(): void
}

/** A transaction savepoint, as returned by `txn.savepoint()`. */
export interface Savepoint {
  /** False once the savepoint can no longer be rolled back (an earlier one was rolled back, or the transaction ended). */
  readonly valid: boolean
  /** Restore every data manager of the transaction to its state at this savepoint. */
  rollback(): void
}

/**
 * An observer of a transaction manager's transactions (a database connection is one: it syncs
 * its snapshot at transaction boundaries). Synchronizers are held weakly: registering one does
 * not keep it alive. Every method is optional.
 */
export interface Synchronizer {
  /** Called before a transaction commits or aborts; an error here stops a commit before any data manager is touched. */
  beforeCompletion?(txn: Transaction): void
  /** Called after a transaction committed, failed to commit, or aborted. Errors are logged, not thrown, after a successful commit. */
  afterCompletion?(txn: Transaction): void
  /** Called when a transaction is begun explicitly (`begin()`), and on registration while one is current. */
  newTransaction?(txn: Transaction): void
}

/** Where a transaction reports what it could not throw (cleanup failures, a failed tpc_finish). */
export interface TransactionLogger {
  debug(message: string): void
  /** An error that was swallowed so that cleanup could go on. */
  error(message: string, error: unknown): void
  /** An error that may have left data managers inconsistent with each other. */
  critical(message: string, error: unknown): void
}

/** A hook called before a commit: an error aborts the commit attempt (the transaction stays active). */
export type BeforeCommitHook<A extends unknown[] = unknown[]> = (...args: A) => void
/** A hook called after a commit attempt with its outcome; errors are logged and do not stop later hooks. */
export type AfterCommitHook<A extends unknown[] = unknown[]> = (success: boolean, ...args: A) => void
/** A hook called before or after an abort; errors are logged and do not stop later hooks. */
export type AbortHook<A extends unknown[] = unknown[]> = (...args: A) => void

/** A registered hook with the arguments it will be called with. */
export interface HookRegistration<H> {
  readonly hook: H
  readonly args: readonly unknown[]
}

/** What `TransactionManager` and the async-scoped manager both offer. */
export interface TransactionManagerLike {
  /** In explicit mode `begin()` while a transaction is active, and `get()` with none, are errors. */
  readonly explicit: boolean
  /** Start a new transaction (in implicit mode an active one is aborted first). */
  begin(): Transaction
  /** The current transaction (in implicit mode one is created when there is none). */
  get(): Transaction
  commit(): void
  abort(): void
  doom(): void
  isDoomed(): boolean
  savepoint(optimistic?: boolean): Savepoint
  registerSynch(synch: Synchronizer): void
  unregisterSynch(synch: Synchronizer): void
  clearSynchs(): void
  registeredSynchs(): boolean
}
