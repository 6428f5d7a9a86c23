// Transaction savepoints. A transaction savepoint holds one savepoint per joined data manager;
// rolling it back rolls each of them back. Savepoints are ordered: rolling back to one
// invalidates every savepoint made after it, and ending the transaction invalidates them all.

import type { DataManager, DataManagerSavepoint, Savepoint } from './interfaces.js'
import { InvalidSavepointRollbackError, SavepointsUnsupportedError } from './errors.js'
import type { Transaction } from './transaction.js'

/** What a savepoint needs from its transaction (implemented by Transaction, not public API). */
export interface SavepointOwner {
  /** Invalidate and forget every savepoint made after `savepoint`. */
  _invalidateSavepointsAfter(savepoint: TransactionSavepoint): void
  /** Record `error` as the failure that hoses the transaction. */
  _fail(error: unknown): void
  /** Remove a data manager that joined after a savepoint which is being rolled back. */
  _unjoin(dm: DataManager): void
}

export class TransactionSavepoint implements Savepoint {
  #owner: (Transaction & SavepointOwner) | null
  /** @internal per-data-manager savepoints, in join order; grows when a manager joins later. */
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
    return this.#owner !== null
  }

  /** @internal called by the transaction when this savepoint can no longer be used. */
  _invalidate(): void {
    this.#owner = null
  }

  rollback(): void {
    const owner = this.#owner
    if (owner === null) {
      throw new InvalidSavepointRollbackError(
        'This savepoint was invalidated: a rollback to an earlier savepoint, or the end of its transaction, discarded it',
      )
    }
    owner._invalidateSavepointsAfter(this)
    try {
      for (const sp of this._savepoints) sp.rollback()
    } catch (error) {
      owner._fail(error)
      throw error
    }
  }
}

/**
 * The savepoint of a data manager that joined after the transaction savepoint was made: rolling
 * back to before it joined means aborting its changes and removing it from the transaction.
 */
export class AbortSavepoint implements DataManagerSavepoint {
  constructor(
    readonly dataManager: DataManager,
    readonly owner: Transaction & SavepointOwner,
  ) {}

  rollback(): void {
    this.dataManager.abort(this.owner)
    this.owner._unjoin(this.dataManager)
  }
}

/** Stands in for a manager without savepoint support in an optimistic savepoint: rollback is an error. */
export class NoRollbackSavepoint implements DataManagerSavepoint {
  constructor(readonly dataManager: DataManager) {}

  rollback(): void {
    throw new SavepointsUnsupportedError(this.dataManager)
  }
}
