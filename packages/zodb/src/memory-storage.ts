// MemoryStorage: every revision of every object, kept in this thread's memory. It implements the
// whole storage contract (MVCC reads, history, iteration, pack with garbage collection, conflict
// resolution) and is what tests and throw-away databases use. Its data cannot be seen from
// another thread: `spec` is `memory:` but opening that elsewhere gives a new, empty storage, so
// `shareable` is false and `specForAnotherThread()` refuses with a clear error.

import createDebug from 'debug'

import { tryToResolveConflict } from './conflict-resolution.js'
import { restoreNotAfterLast, restoredRecords } from './copy-transactions.js'
import {
  ConflictError,
  ConnectionStateError,
  POSKeyError,
  ReadConflictError,
  ReadOnlyError,
  StorageNotShareableError,
  StorageTransactionError,
  UndoError,
} from './errors.js'
import { referencesIn } from './serialize.js'
import type {
  DataRecord,
  HistoryEntry,
  InvalidationListener,
  LoadedRevision,
  Storage,
  TransactionMetaData,
  TransactionRecord,
  UndoLogEntry,
} from './storage.js'
import { checkId, idToHex, newTid, tidFromDate, tidToDate, type Oid, type Tid } from './tid.js'

const log = createDebug('wendelin:zodb:memory-storage')

interface Revision {
  tid: Tid
  data: Uint8Array | null
}

interface TransactionEntry {
  tid: Tid
  status: ' ' | 'p'
  user: string
  description: string
  extension: Record<string, unknown>
  oids: Oid[]
}

interface Commit {
  txn: TransactionMetaData
  meta: { user: string; description: string; extension: Record<string, unknown> }
  /** New revisions; null deletes the object (an undone creation). */
  stores: Map<Oid, Uint8Array | null>
  resolved: Oid[]
  voted: boolean
}

export interface MemoryStorageOptions {
  name?: string
  readOnly?: boolean
}

let instances = 0

export class MemoryStorage implements Storage {
  readonly spec: string
  readonly shareable = false
  readonly #name: string
  readonly #sortKey: string
  readonly #readOnly: boolean
  /** Revisions of each object, oldest first. */
  readonly #revisions = new Map<Oid, Revision[]>()
  readonly #transactions: TransactionEntry[] = []
  #last: Tid = 0n
  /** The latest pack time: transactions up to it cannot be undone. */
  #packedTo: Tid = 0n
  #nextOid: Oid = 1n
  #commit: Commit | null = null
  readonly #listeners = new Set<InvalidationListener>()
  #closed = false

  constructor(options: MemoryStorageOptions = {}) {
    this.#name = options.name ?? 'MemoryStorage'
    this.#readOnly = options.readOnly ?? false
    this.#sortKey = `memory:${++instances}:${this.#name}`
    this.spec = options.name ? `memory:${options.name}` : 'memory:'
  }

  get closed(): boolean {
    return this.#closed
  }

  getName(): string {
    return this.#name
  }

  getSize(): number {
    this.#checkOpen()
    let size = 0
    for (const revs of this.#revisions.values()) for (const r of revs) size += r.data?.length ?? 0
    return size
  }

  len(): number {
    this.#checkOpen()
    let n = 0
    for (const revs of this.#revisions.values()) if (revs[revs.length - 1]!.data !== null) n++
    return n
  }

  isReadOnly(): boolean {
    return this.#readOnly
  }

  sortKey(): string {
    return this.#sortKey
  }

  lastTransaction(): Tid {
    this.#checkOpen()
    return this.#last
  }

  loadBefore(oid: Oid, tid: Tid): LoadedRevision | null {
    this.#checkOpen()
    const revs = this.#revs(oid)
    let i = revs.length - 1
    while (i >= 0 && revs[i]!.tid >= tid) i--
    if (i < 0) return null
    const rev = revs[i]!
    if (rev.data === null) return null
    return { data: rev.data, serial: rev.tid, nextSerial: i + 1 < revs.length ? revs[i + 1]!.tid : null }
  }

  loadSerial(oid: Oid, serial: Tid): Uint8Array {
    this.#checkOpen()
    const rev = this.#revs(oid).find((r) => r.tid === serial)
    if (rev === undefined || rev.data === null) throw new POSKeyError(oid, `no revision written by transaction 0x${idToHex(serial)}`)
    return rev.data
  }

  newOid(): Oid {
    this.#checkWritable('newOid')
    return this.#nextOid++
  }

  tpc_begin(txn: TransactionMetaData): void {
    this.#checkWritable('tpc_begin')
    if (this.#commit !== null) {
      if (this.#commit.txn === txn) return
      throw new StorageTransactionError(`${this.#name}: tpc_begin while another transaction is committing (one commit at a time)`)
    }
    // Copy the metadata now: an extension that cannot be copied fails here, not in tpc_finish.
    const meta = { user: String(txn.user), description: String(txn.description), extension: structuredClone(txn.extension) }
    this.#commit = { txn, meta, stores: new Map(), resolved: [], voted: false }
  }

  store(oid: Oid, oldSerial: Tid, data: Uint8Array, txn: TransactionMetaData): void {
    this.#checkWritable('store')
    const commit = this.#committing(txn, 'store')
    checkId(oid, 'oid')
    if (!(data instanceof Uint8Array)) throw new TypeError('store: data must be a Uint8Array record')
    const current = this.#currentSerial(oid)
    if (current !== oldSerial) {
      if (current === 0n) {
        throw new ConflictError('store of an object based on a revision that does not exist', { oid, oldSerial, committedSerial: null })
      }
      data = tryToResolveConflict(oid, current, oldSerial, data, (o, s) => this.loadSerial(o, s))
      if (!commit.resolved.includes(oid)) commit.resolved.push(oid)
    }
    if (oid >= this.#nextOid) this.#nextOid = oid + 1n
    commit.stores.set(oid, data)
  }

  checkCurrentSerialInTransaction(oid: Oid, serial: Tid, txn: TransactionMetaData): void {
    this.#committing(txn, 'checkCurrentSerialInTransaction')
    const current = this.#currentSerial(oid)
    if (current !== serial) {
      throw new ReadConflictError('an object read with readCurrent() was changed by another transaction', {
        oid,
        oldSerial: serial,
        committedSerial: current,
      })
    }
  }

  tpc_vote(txn: TransactionMetaData): Oid[] {
    const commit = this.#committing(txn, 'tpc_vote')
    commit.voted = true
    return [...commit.resolved]
  }

  tpc_finish(txn: TransactionMetaData, onTid?: (tid: Tid) => void): Tid {
    const commit = this.#committing(txn, 'tpc_finish')
    if (!commit.voted) throw new StorageTransactionError(`${this.#name}: tpc_finish before tpc_vote`)
    const tid = newTid(this.#last)
    const oids = [...commit.stores.keys()]
    for (const [oid, data] of commit.stores) {
      let revs = this.#revisions.get(oid)
      if (revs === undefined) this.#revisions.set(oid, (revs = []))
      revs.push({ tid, data })
    }
    this.#transactions.push({
      tid,
      status: ' ',
      ...commit.meta,
      oids,
    })
    this.#last = tid
    this.#commit = null
    if (log.enabled) log('committed %s: %d objects', idToHex(tid), oids.length)
    onTid?.(tid)
    for (const l of [...this.#listeners]) l.invalidate(tid, oids)
    return tid
  }

  restore(t: TransactionRecord): void {
    this.#checkWritable('restore')
    if (this.#commit !== null) throw new StorageTransactionError(`${this.#name}: restore while a transaction is committing`)
    const records = restoredRecords(t)
    if (t.tid <= this.#last) throw restoreNotAfterLast(this.#name, t.tid, this.#last)
    const entry: TransactionEntry = {
      tid: t.tid,
      status: t.status === 'p' ? 'p' : ' ',
      user: t.user,
      description: t.description,
      extension: structuredClone(t.extension),
      oids: [...records.keys()],
    }
    for (const [oid, data] of records) {
      let revs = this.#revisions.get(oid)
      if (revs === undefined) this.#revisions.set(oid, (revs = []))
      // A copy: the source may reuse its buffers.
      revs.push({ tid: t.tid, data: data === null ? null : new Uint8Array(data) })
      if (oid >= this.#nextOid) this.#nextOid = oid + 1n
    }
    this.#transactions.push(entry)
    this.#last = t.tid
    // A packed transaction is at or before a pack's time: undo refuses it, as in the source.
    if (entry.status === 'p' && t.tid > this.#packedTo) this.#packedTo = t.tid
    if (log.enabled) log('restored %s: %d objects', idToHex(t.tid), entry.oids.length)
    for (const l of [...this.#listeners]) l.invalidate(t.tid, entry.oids)
  }

  tpc_abort(txn: TransactionMetaData): void {
    if (this.#commit !== null && this.#commit.txn === txn) this.#commit = null
  }

  history(oid: Oid, size = 1): HistoryEntry[] {
    this.#checkOpen()
    const revs = this.#revs(oid)
    const out: HistoryEntry[] = []
    for (let i = revs.length - 1; i >= 0 && out.length < size; i--) {
      const r = revs[i]!
      const t = this.#transaction(r.tid)
      out.push({
        tid: r.tid,
        time: tidToDate(r.tid),
        user: t?.user ?? '',
        description: t?.description ?? '',
        extension: structuredClone(t?.extension ?? {}),
        size: r.data?.length ?? 0,
      })
    }
    return out
  }

  *iterator(start: Tid = 0n, stop: Tid = 0xffff_ffff_ffff_ffffn): IterableIterator<TransactionRecord> {
    this.#checkOpen()
    for (const t of [...this.#transactions]) {
      this.#checkOpen() // a walk that goes on after close() must not read on as if nothing happened
      if (t.tid < start || t.tid > stop) continue
      const records: DataRecord[] = []
      for (const oid of t.oids) {
        const rev = this.#revisions.get(oid)?.find((r) => r.tid === t.tid)
        if (rev !== undefined) records.push({ oid, tid: t.tid, data: rev.data })
      }
      yield { tid: t.tid, status: t.status, user: t.user, description: t.description, extension: structuredClone(t.extension), records }
    }
  }

  pack(packTime: Date | Tid, gc = true): void {
    this.#checkWritable('pack')
    if (this.#commit !== null) throw new StorageTransactionError(`${this.#name}: cannot pack while a transaction is committing`)
    let packTid = typeof packTime === 'bigint' ? packTime : tidFromDate(packTime)
    if (packTid > this.#last) packTid = this.#last
    if (packTid > this.#packedTo) this.#packedTo = packTid
    const removed = new Map<Tid, Set<Oid>>()
    const drop = (oid: Oid, rev: Revision) => {
      let s = removed.get(rev.tid)
      if (s === undefined) removed.set(rev.tid, (s = new Set()))
      s.add(oid)
    }
    // 1. Drop revisions superseded at packTid: keep the newest one <= packTid and all later ones.
    for (const [oid, revs] of this.#revisions) {
      let keepFrom = revs.length - 1
      while (keepFrom > 0 && revs[keepFrom]!.tid > packTid) keepFrom--
      if (revs[keepFrom]!.tid <= packTid && revs[keepFrom]!.data === null) keepFrom++ // a deletion needs no record
      for (const r of revs.slice(0, keepFrom)) drop(oid, r)
      if (keepFrom > 0) revs.splice(0, keepFrom)
      if (revs.length === 0) this.#revisions.delete(oid)
    }
    // 2. Garbage-collect objects unreachable from the root in the remaining revisions. Objects
    //    written after packTid are kept whatever: a later transaction may reach them.
    if (gc) {
      const reachable = new Set<Oid>()
      const todo: Oid[] = [0n]
      for (const [oid, revs] of this.#revisions) if (revs[revs.length - 1]!.tid > packTid) todo.push(oid)
      while (todo.length > 0) {
        const oid = todo.pop()!
        if (reachable.has(oid)) continue
        reachable.add(oid)
        for (const r of this.#revisions.get(oid) ?? []) {
          if (r.data !== null) for (const ref of referencesIn(r.data)) if (!reachable.has(ref)) todo.push(ref)
        }
      }
      for (const [oid, revs] of [...this.#revisions]) {
        if (reachable.has(oid)) continue
        for (const r of revs) drop(oid, r)
        this.#revisions.delete(oid)
      }
    }
    // 3. Transactions lose the records that went; empty ones up to packTid go too.
    for (let i = this.#transactions.length - 1; i >= 0; i--) {
      const t = this.#transactions[i]!
      const gone = removed.get(t.tid)
      if (gone === undefined) continue
      t.oids = t.oids.filter((o) => !gone.has(o))
      t.status = 'p'
      if (t.oids.length === 0 && t.tid <= packTid) this.#transactions.splice(i, 1)
    }
    // Every transaction up to packTid is packed (undo refuses it), as SQLiteStorage marks them: a
    // copy (restore) learns that from the status alone.
    for (const t of this.#transactions) if (t.tid <= packTid) t.status = 'p'
    log('packed to %s (gc %s)', idToHex(packTid), gc)
  }

  supportsUndo(): boolean {
    return true
  }

  /**
   * Undo transaction `tid` within the committing transaction: each object it wrote goes back
   * to its previous revision (an object it created is deleted). UndoError if a later
   * transaction changed one of them.
   */
  undo(tid: Tid, txn: TransactionMetaData): Oid[] {
    this.#checkWritable('undo')
    const commit = this.#committing(txn, 'undo')
    const t = this.#transaction(tid)
    if (t === undefined) throw new UndoError(`no transaction 0x${idToHex(tid)} to undo`)
    // A pack removed the revisions before those current at its time: what this transaction's
    // objects would go back to is gone (and would read as a creation, undone by deleting).
    if (tid <= this.#packedTo) throw new UndoError(`cannot undo transaction 0x${idToHex(tid)}: it is at or before the time of a pack, which removed the revisions it would go back to`)
    const changes: [Oid, Uint8Array | null][] = []
    for (const oid of t.oids) {
      const revs = this.#revisions.get(oid)
      const last = revs?.[revs.length - 1]
      if (revs === undefined || last === undefined || last.tid !== tid) {
        throw new UndoError(`cannot undo transaction 0x${idToHex(tid)}: object 0x${idToHex(oid)} was changed by a later transaction`)
      }
      changes.push([oid, revs.length >= 2 ? revs[revs.length - 2]!.data : null])
    }
    for (const [oid, data] of changes) commit.stores.set(oid, data)
    return changes.map(([oid]) => oid)
  }

  undoLog(limit = 20): UndoLogEntry[] {
    this.#checkOpen()
    return this.#transactions
      .filter((t) => t.tid > this.#packedTo)
      .slice(-limit)
      .reverse()
      .map((t) => ({ tid: t.tid, time: tidToDate(t.tid), user: t.user, description: t.description }))
  }

  addListener(listener: InvalidationListener): void {
    this.#listeners.add(listener)
  }

  removeListener(listener: InvalidationListener): void {
    this.#listeners.delete(listener)
  }

  close(): void {
    this.#closed = true
    this.#commit = null
    this.#listeners.clear()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /** MemoryStorage lives in this thread: another thread cannot open it. */
  specForAnotherThread(): never {
    throw specNotShareable(this)
  }

  // --- helpers -------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new ConnectionStateError(`storage ${this.#name} is closed`)
  }

  #checkWritable(what: string): void {
    this.#checkOpen()
    if (this.#readOnly) throw new ReadOnlyError(`${what}: storage ${this.#name} is read-only`)
  }

  #committing(txn: TransactionMetaData, what: string): Commit {
    this.#checkOpen()
    if (this.#commit === null) throw new StorageTransactionError(`${this.#name}: ${what} outside of a transaction commit (call tpc_begin first)`)
    if (this.#commit.txn !== txn) throw new StorageTransactionError(`${this.#name}: ${what} with a transaction that is not the one committing`)
    return this.#commit
  }

  #revs(oid: Oid): Revision[] {
    checkId(oid, 'oid')
    const revs = this.#revisions.get(oid)
    if (revs === undefined) throw new POSKeyError(oid)
    return revs
  }

  #currentSerial(oid: Oid): Tid {
    const revs = this.#revisions.get(oid)
    if (revs === undefined) return 0n
    const last = revs[revs.length - 1]!
    return last.data === null ? 0n : last.tid
  }

  #transaction(tid: Tid): TransactionEntry | undefined {
    return this.#transactions.find((t) => t.tid === tid)
  }
}

/** The error for a storage that another thread cannot open. */
export function specNotShareable(storage: Storage): StorageNotShareableError {
  return new StorageNotShareableError(
    `storage ${storage.getName()} (${storage.spec}) lives in this thread's memory: another thread (a loader worker) ` +
      'cannot open it. Use a storage another thread can open, such as sqlite:/path/on/tmpfs.db',
  )
}
