// Transaction savepoints. A transaction savepoint holds one savepoint per joined data manager;
// rolling it back rolls each of them back. Savepoints are ordered: rolling back to one
// invalidates every savepoint made after it, and ending the transaction invalidates them all.

import type { DataManager, DataManagerSavepoint, Savepoint } from './interfaces.js'
import { InvalidSavepointRollbackError, SavepointsUnsupportedError } from './errors.js'
import type { Transaction } from './transaction.js'

/** What a savepoint needs from its transaction (implemented by Transaction, not public API). */
export interface SavepointOwner {
  /** Whether the savepoint with this index can still be rolled back. */
  _savepointIsLive(index: number): boolean
  /** Invalidate every savepoint made after the one with this index. */
  _invalidateSavepointsAfter(index: number): void
  /** Record `error` as the failure that hoses the transaction. */
  _fail(error: unknown): void
  /** Abort and unjoin the data managers that joined after the savepoint with this index was made. */
  _abortJoinedAfter(index: number): void
}

export class TransactionSavepoint implements Savepoint {
  readonly #owner: Transaction & SavepointOwner
  /** Its place among the savepoints of its transaction (set by the transaction). */
  #index = 0
  /** @internal per-data-manager savepoints of the managers joined when it was made, in join order. */
  readonly _savepoints: DataManagerSavepoint[] = []

  constructor(owner: Transaction & SavepointOwner, optimistic: boolean, resources: readonly DataManager[]) {
    this.#owner = owner
    for (const dm of resources) {
      if (typeof dm.savepoint === 'function') {
        this._savepoints.push(dm.savepoint())
      } else if (optimistic) {
        this._savepoints.push(new NoRollbackSavepoint(dm))
      } else {
        throw new SavepointsUnsupportedError(dm)
      }
    }
  }

  get valid(): boolean {
    return this.#owner._savepointIsLive(this.#index)
  }

  /** @internal called once by the transaction that made it. */
  _setIndex(index: number): void {
    this.#index = index
  }

  rollback(): void {
    const owner = this.#owner
    if (!owner._savepointIsLive(this.#index)) {
      throw new InvalidSavepointRollbackError(
        'This savepoint was invalidated: a rollback to an earlier savepoint, or the end of its transaction, discarded it',
      )
    }
    owner._invalidateSavepointsAfter(this.#index)
    try {
      for (const sp of this._savepoints) sp.rollback()
      // Managers that joined after the savepoint: rolling back to before they joined aborts them.
      owner._abortJoinedAfter(this.#index)
    } catch (error) {
      owner._fail(error)
      throw error
    }
  }
}

/** Stands in for a manager without savepoint support in an optimistic savepoint: rollback is an error. */
export class NoRollbackSavepoint implements DataManagerSavepoint {
  constructor(readonly dataManager: DataManager) {}

  rollback(): void {
    throw new SavepointsUnsupportedError(this.dataManager)
  }
}
