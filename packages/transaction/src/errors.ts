// Errors of the transaction package. Every error carries a message that says what went wrong
// and, where there is one, the underlying `cause`.

/** Base class of every error raised by the transaction machinery. */
export class TransactionError extends Error {
  override name = 'TransactionError'
}

/**
 * An error after which the same work may succeed if simply tried again (a write conflict is
 * the usual one). `manager.run()` and `manager.attempts()` retry on it.
 */
export class TransientError extends TransactionError {
  override name = 'TransientError'
}

/** `commit()`, `join()` or `savepoint()` on a transaction whose earlier commit or savepoint failed. */
export class TransactionFailedError extends TransactionError {
  override name = 'TransactionFailedError'
  constructor(cause: unknown) {
    const detail = cause instanceof Error ? (cause.stack ?? `${cause.name}: ${cause.message}`) : String(cause)
    super(
      'An operation previously failed in this transaction; abort it (or begin a new one) ' +
        `before using it again. The first failure was:\n\n${detail}`,
      { cause },
    )
  }
}

/** `commit()` of a doomed transaction: it can only be aborted. */
export class DoomedTransactionError extends TransactionError {
  override name = 'DoomedTransactionError'
}

/** In explicit mode: `get()`, `commit()`, ... when no transaction was begun. */
export class NoTransactionError extends TransactionError {
  override name = 'NoTransactionError'
  constructor() {
    super('No transaction is active (explicit mode: call begin() first)')
  }
}

/** In explicit mode: `begin()` while a transaction is active. */
export class AlreadyInTransactionError extends TransactionError {
  override name = 'AlreadyInTransactionError'
  constructor() {
    super('A transaction is already active (explicit mode: commit or abort it before begin())')
  }
}

/** Rolling back a savepoint that a rollback to an earlier savepoint, or the end of its transaction, invalidated. */
export class InvalidSavepointRollbackError extends TransactionError {
  override name = 'InvalidSavepointRollbackError'
}

/** A savepoint was asked of a transaction with a data manager that cannot make one. */
export class SavepointsUnsupportedError extends TransactionError {
  override name = 'SavepointsUnsupportedError'
  constructor(readonly dataManager: unknown) {
    super(`Savepoints unsupported by data manager ${describe(dataManager)}`)
  }
}

/** The transaction is not in a state that allows the operation (e.g. join while committing). */
export class TransactionStateError extends TransactionError {
  override name = 'TransactionStateError'
}

/** A short, human name for a data manager or other object, for messages. */
export function describe(obj: unknown): string {
  if (obj === null || obj === undefined) return String(obj)
  if (typeof obj === 'object' || typeof obj === 'function') {
    const sortKey = (obj as { sortKey?: unknown }).sortKey
    const ctor = (obj as { constructor?: { name?: string } }).constructor?.name ?? 'Object'
    if (typeof sortKey === 'function') {
      try {
        return `${ctor}(${String(sortKey.call(obj))})`
      } catch {
        return ctor
      }
    }
    return ctor
  }
  return String(obj)
}
