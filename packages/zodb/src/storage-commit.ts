// The two-phase commit of one storage within one transaction. Several data managers may write
// to the same storage in one transaction (a connection and an undo, say); the storage must see
// tpc_begin, tpc_vote and tpc_finish once each. The first manager to reach a phase does it; the
// others get its result. Kept in the transaction's data under the storage.

import type { Storage, TransactionMetaData } from './storage.js'
import type { Oid, Tid } from './tid.js'

interface TransactionData {
  data<T>(key: object): T | undefined
  setData(key: object, value: unknown): void
}

export class StorageCommit {
  #begun = false
  #resolved: Oid[] | null = null
  #tid: Tid | null = null

  private constructor(
    readonly storage: Storage,
    readonly txn: TransactionMetaData,
  ) {}

  /** The commit of `storage` in `txn`, shared by every data manager of that transaction. */
  static for(storage: Storage, txn: TransactionMetaData & TransactionData): StorageCommit {
    let sc = txn.data<StorageCommit>(storage)
    if (sc === undefined) {
      sc = new StorageCommit(storage, txn)
      txn.setData(storage, sc)
    }
    return sc
  }

  begin(): void {
    if (this.#begun) return
    this.storage.tpc_begin(this.txn)
    this.#begun = true
  }

  /** The oids conflict resolution rewrote (the same list for every caller). */
  vote(): Oid[] {
    if (this.#resolved === null) this.#resolved = this.storage.tpc_vote(this.txn)
    return this.#resolved
  }

  /** Finish, once; `onTid` hears the tid before the storage's listeners do (first caller only). */
  finish(onTid?: (tid: Tid) => void): Tid {
    if (this.#tid === null) this.#tid = this.storage.tpc_finish(this.txn, onTid)
    return this.#tid
  }

  abort(): void {
    if (!this.#begun || this.#tid !== null) return
    this.#begun = false
    this.storage.tpc_abort(this.txn)
  }
}
