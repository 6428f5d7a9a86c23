// Copying a storage's history into another (ZODB's copyTransactionsFrom, zodbconvert): every
// transaction, with its tid, metadata and records, through the destination's `restore`. A
// destination that already holds a copy's beginning gets the transactions after it: an
// incremental backup.

import createDebug from 'debug'

import { POSError, StorageTransactionError } from './errors.js'
import type { Storage, TransactionRecord } from './storage.js'
import { type Oid, type Tid, checkId, idToHex } from './tid.js'

const log = createDebug('wendelin:zodb:copy')

/** Where a copy is: counts so far, and the tid of the last transaction copied. */
export interface CopyProgress {
  transactions: number
  records: number
  /** Bytes of record data copied. */
  bytes: number
  /** The last transaction copied (0n before the first). */
  tid: Tid
}

export interface CopyOptions {
  /** Called after each transaction copied. */
  onProgress?: (progress: Readonly<CopyProgress>) => void
}

/** A storage that can be copied into. */
export type RestorableStorage = Storage & Required<Pick<Storage, 'restore'>>

/**
 * Copy the transactions of `source` into `destination`, each as it was committed (tids, user,
 * description, extension, records, deletions). An empty destination gets all of them; one whose
 * last transaction the source also has (same tid, user and description) gets those after it;
 * any other destination is refused with a POSError before anything is written. Each
 * transaction is restored in one step: a copy stopped midway (an error, a crash) leaves whole
 * transactions, and running it again goes on from there. Returns what was copied.
 */
export function copyTransactions(source: Storage, destination: Storage, options: CopyOptions = {}): CopyProgress {
  if (typeof destination.restore !== 'function') {
    throw new TypeError(`${destination.getName()} cannot be copied into: it has no restore() (copy into a SQLiteStorage or a MemoryStorage)`)
  }
  const progress: CopyProgress = { transactions: 0, records: 0, bytes: 0, tid: 0n }
  const start = resumeAfter(source, destination)
  log('copying %s into %s from 0x%s', source.getName(), destination.getName(), idToHex(start))
  for (const t of source.iterator(start)) {
    destination.restore(t)
    progress.transactions++
    progress.records += t.records.length
    for (const r of t.records) progress.bytes += r.data?.length ?? 0
    progress.tid = t.tid
    options.onProgress?.(progress)
  }
  log('copied %d transactions, %d records', progress.transactions, progress.records)
  return progress
}

/** The tid the copy starts at: 0n into an empty destination, else after the last one both have. */
function resumeAfter(source: Storage, destination: Storage): Tid {
  const last = destination.lastTransaction()
  if (last === 0n) return 0n
  const ours = first(destination.iterator(last, last))
  const theirs = first(source.iterator(last, last))
  if (ours === null || theirs === null || ours.user !== theirs.user || ours.description !== theirs.description) {
    throw new POSError(
      `${destination.getName()} is not empty and is not an earlier copy of ${source.getName()}: ` +
        `its last transaction, 0x${idToHex(last)}, is not one of the source's`,
    )
  }
  return last + 1n
}

function first(transactions: IterableIterator<TransactionRecord>): TransactionRecord | null {
  for (const t of transactions) {
    transactions.return?.()
    return t
  }
  return null
}

/**
 * The records of a transaction to restore, by oid, checked: a storage's `restore` calls this
 * before it writes anything. A tid of 0, an oid twice, or a record that is not bytes or null is
 * refused.
 */
export function restoredRecords(t: TransactionRecord): Map<Oid, Uint8Array | null> {
  checkId(t.tid, 'restore: tid')
  if (t.tid === 0n) throw new StorageTransactionError('restore: a transaction cannot have tid 0')
  if (typeof t.user !== 'string' || typeof t.description !== 'string' || typeof t.extension !== 'object' || t.extension === null) {
    throw new TypeError(`restore: transaction 0x${idToHex(t.tid)} has malformed metadata (user and description must be strings, extension an object)`)
  }
  const records = new Map<Oid, Uint8Array | null>()
  for (const r of t.records) {
    checkId(r.oid, 'restore: oid')
    if (r.data !== null && !(r.data instanceof Uint8Array)) throw new TypeError(`restore: the record of object 0x${idToHex(r.oid)} must be a Uint8Array or null`)
    if (records.has(r.oid)) throw new StorageTransactionError(`restore: transaction 0x${idToHex(t.tid)} has two records of object 0x${idToHex(r.oid)}`)
    records.set(r.oid, r.data)
  }
  return records
}

/** A restore's refusal of a transaction `tid` not after the storage's last one, `last`. */
export function restoreNotAfterLast(storage: string, tid: Tid, last: Tid): StorageTransactionError {
  return new StorageTransactionError(`${storage}: cannot restore transaction 0x${idToHex(tid)}: it is not after the last one, 0x${idToHex(last)}`)
}
