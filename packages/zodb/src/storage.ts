// The storage contract: what DB and Connection need from the place records are kept.
//
// This is the TypeScript counterpart of ZODB's IStorage family (interfaces.py): records are
// opaque bytes to a storage (it only looks inside to resolve conflicts and to find references
// when it garbage-collects), every revision of an object is identified by the tid of the
// transaction that wrote it, and reads at a snapshot use loadBefore. Every method is synchronous:
// a persistent object loads itself in the middle of an attribute read.

import type { Oid, Tid } from './tid.js'

/** What a storage needs of a transaction: the transaction package's Transaction satisfies it. */
export interface TransactionMetaData {
  readonly user: string
  readonly description: string
  readonly extension: Record<string, unknown>
}

/** One revision as `loadBefore` returns it. */
export interface LoadedRevision {
  /** The record (null if the object's creation was undone at this revision). */
  data: Uint8Array
  /** The tid of the transaction that wrote this revision. */
  serial: Tid
  /** The tid of the next revision of the object, or null if this is the newest. */
  nextSerial: Tid | null
}

/** One entry of `history()`, newest first. */
export interface HistoryEntry {
  tid: Tid
  time: Date
  user: string
  description: string
  extension: Record<string, unknown>
  /** Size of the record in bytes. */
  size: number
}

/** One object revision inside a transaction of `iterator()`. */
export interface DataRecord {
  oid: Oid
  tid: Tid
  /** The record, or null if the revision deletes the object (undone creation). */
  data: Uint8Array | null
}

/** One committed transaction, as `iterator()` yields it. */
export interface TransactionRecord {
  tid: Tid
  /** ' ' for a committed transaction, 'p' for one that a pack touched (as ZODB). */
  status: ' ' | 'p'
  user: string
  description: string
  extension: Record<string, unknown>
  records: DataRecord[]
}

/** One transaction as `undoLog()` lists it. */
export interface UndoLogEntry {
  tid: Tid
  time: Date
  user: string
  description: string
}

/** Told about committed transactions, in tid order. */
export interface InvalidationListener {
  /** Transaction `tid` changed `oids`. Called once per transaction, in increasing tid order. */
  invalidate(tid: Tid, oids: readonly Oid[]): void
  /** Everything may have changed (e.g. after a reconnect): drop every cached object. */
  invalidateCache?(): void
}

/**
 * A storage. One transaction commits at a time: `tpc_begin` starts it, and every later call that
 * takes a transaction must pass the same one, or StorageTransactionError is thrown.
 */
export interface Storage extends Disposable {
  /**
   * A URL-like description from which another thread opens its own instance of the same data
   * (`sqlite:/path/db.sqlite`, `zeo://host:port`). `memory:` storages cannot be reopened: see
   * `shareable`.
   */
  readonly spec: string
  /** Whether another thread can open `spec` and see the same data. */
  readonly shareable: boolean
  /**
   * Optional: `spec` for another thread, or a StorageNotShareableError saying why it cannot open
   * it (what `specForAnotherThread(storage)` returns or throws when the storage has this method).
   */
  specForAnotherThread?(): string
  /**
   * True when the storage has copied the `data` of every store() by the time its tpc_vote
   * returns, and keeps no reference to it after tpc_finish or tpc_abort: from the end of the
   * vote the caller may change that memory (a ZBigFile handle's commit hands SQLite records
   * over its pages, which it marks stored — free to be written and reused — before the
   * storage's tpc_finish). SQLiteStorage writes the records at vote. Absent or false: the
   * storage may keep the bytes (MemoryStorage holds them as its data, the network client hands
   * them to its I/O worker), and they must never change.
   */
  readonly copiesRecords?: boolean

  getName(): string
  /** Approximate size of the data in bytes. */
  getSize(): number
  /** Number of objects. */
  len(): number
  isReadOnly(): boolean
  /** Orders storages in a commit with several of them; stable for the storage's life. */
  sortKey(): string
  /** The tid of the last committed transaction (0n if none). */
  lastTransaction(): Tid

  /**
   * The revision of `oid` current just before `tid`: the newest one written by a transaction
   * with a tid < `tid`. Returns null if the object did not exist before `tid`; throws POSKeyError
   * if there is no such object at all.
   */
  loadBefore(oid: Oid, tid: Tid): LoadedRevision | null
  /** The revision of `oid` written by transaction `serial`; POSKeyError if there is none. */
  loadSerial(oid: Oid, serial: Tid): Uint8Array
  /** A new, never-used oid. ReadOnlyError on a read-only storage. */
  newOid(): Oid

  /** Start committing `txn`. StorageTransactionError if another transaction is committing. */
  tpc_begin(txn: TransactionMetaData): void
  /**
   * Store a new revision of `oid`. `oldSerial` is the serial the change was based on (0n for a
   * new object). If the object's current serial differs, the storage tries conflict resolution
   * (now or at vote) and throws ConflictError if that fails. A small `data` may be a view into
   * an 8 KiB buffer shared with other records (see serialize.ts): a storage that keeps a few
   * records for long (a cache) should keep copies of them.
   */
  store(oid: Oid, oldSerial: Tid, data: Uint8Array, txn: TransactionMetaData): void
  /** Fail the commit (ReadConflictError, at the latest in vote) unless `oid`'s current serial is `serial`. */
  checkCurrentSerialInTransaction(oid: Oid, serial: Tid, txn: TransactionMetaData): void
  /**
   * Last chance to refuse the commit. Returns the oids whose stored data was replaced by
   * conflict resolution: their callers' copies are out of date.
   */
  tpc_vote(txn: TransactionMetaData): Oid[]
  /** Make the transaction durable and visible; returns its tid. `onTid` is called with it first, before listeners hear of it. */
  tpc_finish(txn: TransactionMetaData, onTid?: (tid: Tid) => void): Tid
  /** Forget everything since `tpc_begin` (no-op if `txn` is not the committing transaction). */
  tpc_abort(txn: TransactionMetaData): void

  /** Revisions of `oid`, newest first, at most `size` of them. POSKeyError if there is no such object. */
  history(oid: Oid, size?: number): HistoryEntry[]
  /** Committed transactions with start <= tid <= stop, in tid order. */
  iterator(start?: Tid, stop?: Tid): IterableIterator<TransactionRecord>
  /**
   * Remove revisions not needed to read at or after `packTime` (a Date, or a tid); with `gc`,
   * also every object no longer reachable from the root object (oid 0).
   */
  pack(packTime: Date | Tid, gc?: boolean): void
  /** Whether `undo` is supported. */
  supportsUndo(): boolean
  /**
   * Optional: undo transaction `tid` as part of the committing transaction `txn` — every object
   * it wrote goes back to its previous revision. Returns the oids that change. Throws if a later
   * transaction changed one of them.
   */
  undo?(tid: Tid, txn: TransactionMetaData): Oid[]
  /** Optional, with undo: the newest transactions, newest first, candidates for `undo`. */
  undoLog?(limit?: number): UndoLogEntry[]

  /**
   * Optional: start loading the revisions of `oids` current before `tid` so that later
   * `loadBefore` calls are served without waiting (a network storage's round trips). Never
   * required for correctness.
   */
  prefetch?(oids: Iterable<Oid>, tid?: Tid): Promise<void>

  /**
   * Optional: the revisions of several objects current before `tid`, as `loadBefore` would give
   * each, in one call (a connection uses it for the objects of a B-tree leaf being iterated).
   * Objects that did not exist before `tid` are left out, as are unknown oids; never throws
   * POSKeyError. `nextSerial` is not given (null). Never required for correctness.
   */
  loadBeforeMany?(oids: readonly Oid[], tid: Tid): Map<Oid, LoadedRevision>

  /**
   * Optional: parts of the record of `oid` current before `tid`, as `loadBefore` would find it:
   * for each `[offset, length]` of `ranges`, its bytes (fewer where the record ends first),
   * without reading the rest of a big record where the storage can. Null where loadBefore gives
   * null; POSKeyError as loadBefore. Never required for correctness (ZBigFile reads a single
   * element of a 2 MiB block with it).
   */
  loadBeforeRanges?(oid: Oid, tid: Tid, ranges: ReadonlyArray<readonly [offset: number, length: number]>): Uint8Array[] | null

  /**
   * Optional: copies parts of the record of `oid` current before `tid`, as `loadBefore` would
   * find it, into the caller's arrays: for each `[offset, dest]`, bytes [offset, offset +
   * dest.length) (fewer where the record ends first; the rest of `dest` untouched). Returns the
   * record's serial and length; null where loadBefore gives null; POSKeyError as loadBefore.
   * `dest` holds garbage if it throws. Never required for correctness (a loader worker fills a
   * page with a 2 MiB block's bytes without an intermediate copy).
   */
  loadBeforeInto?(oid: Oid, tid: Tid, parts: ReadonlyArray<readonly [offset: number, dest: Uint8Array]>): { serial: Tid; length: number } | null

  /**
   * Optional (a storage others can be copied into, see copyTransactions): write transaction `t`
   * as it was committed elsewhere — its tid, status, metadata and records (a null `data`: the
   * object was deleted) — in one step, without conflict checks. `t.tid` must be above
   * lastTransaction(), and no transaction may be committing (StorageTransactionError). Oids
   * handed out afterwards are above every oid restored. Listeners hear of it as of a commit.
   * Meant for a storage nothing else writes meanwhile.
   */
  restore?(t: TransactionRecord): void

  /** Listen for committed transactions (each storage delivers in tid order). */
  addListener(listener: InvalidationListener): void
  removeListener(listener: InvalidationListener): void

  /** Releases what the storage holds (files, threads, sockets); harmless once closed. `using` calls it. */
  close(): void
  readonly closed: boolean
}
