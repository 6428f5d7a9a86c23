// @wendelin/transaction: two-phase commit for everything that persists.
//
// The module-level functions work on the default manager, an AsyncScopedTransactionManager, as
// Python's `transaction.commit()` works on the thread-local one:
//
//     import * as transaction from '@wendelin/transaction'
//     transaction.begin(); ...; transaction.commit()

import { AsyncScopedTransactionManager } from './async-scoped-manager.js'
import type { Savepoint } from './interfaces.js'
import type { Transaction } from './transaction.js'

export type {
  AbortHook,
  AfterCommitHook,
  BeforeCommitHook,
  DataManager,
  DataManagerSavepoint,
  HookRegistration,
  Savepoint,
  Synchronizer,
  TransactionLogger,
  TransactionManagerLike,
} from './interfaces.js'
export {
  AlreadyInTransactionError,
  DoomedTransactionError,
  InvalidSavepointRollbackError,
  NoTransactionError,
  SavepointsUnsupportedError,
  TransactionError,
  TransactionFailedError,
  TransactionStateError,
  TransientError,
} from './errors.js'
export { Status, Transaction, type TransactionOptions } from './transaction.js'
export { Attempt, type RunOptions, TransactionManager, type TransactionManagerOptions } from './manager.js'
export { AsyncScopedTransactionManager } from './async-scoped-manager.js'
export { IterableWeakSet } from './weak-set.js'
export { defaultLogger } from './log.js'

/** The default transaction manager: one current transaction per async scope. */
export const manager = new AsyncScopedTransactionManager()

export const begin = (): Transaction => manager.begin()
export const get = (): Transaction => manager.get()
export const commit = (): void => manager.commit()
export const abort = (): void => manager.abort()
export const doom = (): void => manager.doom()
export const isDoomed = (): boolean => manager.isDoomed()
export const savepoint = (optimistic = false): Savepoint => manager.savepoint(optimistic)
