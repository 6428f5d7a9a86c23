// SQLiteStorage: the embedded default. One SQLite file (WAL mode) holds every revision of every
// object; several processes and threads may open it at once.
//
// Commit protocol, across processes:
//
//   tpc_begin   this instance's commit slot (one transaction at a time per instance)
//   store       buffered in memory; nothing touches the file yet
//   tpc_vote    BEGIN IMMEDIATE takes SQLite's write lock (other writers wait, readers go on);
//               every stored object's current serial is compared with the serial the change was
//               based on (conflict resolution runs where they differ), readCurrent checks run;
//               the tid is chosen above the newest tid in the file, and the rows are written
//   tpc_finish  COMMIT: the transaction becomes durable and visible at once, lock released
//   tpc_abort   ROLLBACK if the lock is held; buffers dropped
//
// So the write lock is held from vote to finish, tids strictly increase across processes, and
// a crash at any moment leaves either the whole transaction or none of it (SQLite's atomic
// commit). Other processes' commits are found at transaction boundaries: `lastTransaction()`
// asks SQLite whether anyone else wrote (PRAGMA data_version, no I/O when nobody did) and if so
// reads the new (tid, oid) pairs with one query on the tid index and tells the listeners.
//
// The schema is described in the package README ("SQLite file format") and versioned in the
// wendelin_meta table.

import { mkdirSync } from 'node:fs'
import path from 'node:path'

import Database from 'better-sqlite3'
import createDebug from 'debug'
import { TransientError } from '@wendelin/transaction'
import { pack as msgpack, unpack as msgunpack } from 'msgpackr'

import { tryToResolveConflict } from './conflict-resolution.js'
import { restoreNotAfterLast, restoredRecords } from './copy-transactions.js'
import {
  ConflictError,
  ConnectionStateError,
  POSError,
  POSKeyError,
  ReadConflictError,
  ReadOnlyError,
  StorageTransactionError,
  UndoError,
} from './errors.js'
import { KnownSerials } from './known-serials.js'
import { referencesIn } from './serialize.js'
import type {
  DataRecord,
  HistoryEntry,
  InvalidationListener,
  LoadedRevision,
  Storage,
  TransactionMetaData,
  TransactionRecord,
} from './storage.js'
import { type BlobIO, blobIO, unavailable } from './sqlite-blob-io.js'
import { registerStorageScheme } from './storage-spec.js'
import { type Oid, type Tid, MAX_TID, checkId, idToHex, newTid, tidFromDate, tidToDate } from './tid.js'
import { CHECKPOINT_FRAMES, WalKeeper, releaseWalIndexes } from './wal-checkpointer.js'

const log = createDebug('wendelin:zodb:sqlite')

/** Version of the file layout this code writes; files with a newer version are refused. */
export const SQLITE_SCHEMA_VERSION = 2
const APPLICATION = 'wendelin-zodb'
const INT64_MAX = 0x7fff_ffff_ffff_ffffn
/** Rows written (and current serials looked up) per statement at vote. */
const BATCH_ROWS = 64
/** loadBeforeMany's packed answer (#packedNewest): its length marks, and the characters it is read by. */
const PACKED_DELETED = -1
const PACKED_OMITTED = -2
const SPACE = 0x20
const MINUS = 0x2d
const DIGIT_0 = 0x30
/** Records up to this size come in the packed answer; bigger ones are read on their own (rare, and a blob of 64 would be big). */
const PACKED_MAX_INLINE = 65536
/**
 * Records bigger than this are inserted one per statement (with the blob extension, as a
 * zeroblob filled by wendelin_blob_write: see #insertBigRevision). SQLite copies every bound blob
 * (better-sqlite3 binds with SQLITE_TRANSIENT); a batch of 64 records of 2 MiB needs 128 MiB of
 * fresh memory per statement, page-faulted in and given back each time (measured: a quarter of
 * the CPU time writing 2 MiB records), while one record's copy reuses the same warm memory.
 * Measured per record size, batch against one per statement: 2 KiB 250 vs 230 MB/s, 8 KiB
 * even, 32 KiB 570 vs 625, 2 MiB 515 vs 635.
 */
const BATCH_RECORD_MAX = 16 * 1024
/** Objects whose current serial an instance may remember for the checks at vote: oids below this (8 bytes per oid up to the largest). */
const KNOWN_SERIALS_MAX_OID = 1 << 22

/**
 * Another connection (another process's long pack, say) held the file's lock longer than
 * `busyTimeout`. A TransientError: the transaction can be tried again (db.transaction and the
 * transaction manager's run() do). `code` is SQLite's (SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT...).
 */
export class StorageBusyError extends TransientError {
  override name = 'StorageBusyError'
  constructor(
    readonly file: string,
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${message}`, options)
  }
}

/** The file cannot be used as a database: not SQLite, not ours, corrupt, or from a newer version. */
export class StorageFileError extends POSError {
  override name = 'StorageFileError'
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${message}`, options)
  }
}

// UndoError is shared with the other storages (errors.ts); re-exported for existing importers.
export { UndoError }

export type Durability = 'full' | 'normal'

export interface SQLiteStorageOptions {
  /** Open for reading only: every write is a ReadOnlyError. */
  readOnly?: boolean
  /**
   * 'full' (default): every commit is on disk when tpc_finish returns (synchronous=FULL).
   * 'normal': commits survive a process crash but the last ones may be lost on power failure
   * (synchronous=NORMAL), for several times more small commits per second.
   */
  durability?: Durability
  /** How long a commit waits for another process's write lock, in ms (default 60000). */
  busyTimeout?: number
  /**
   * SQLite page size of a file this instance creates (a power of two from 512 to 65536; SQLite's
   * default is 4096). Ignored for an existing file, whose page size is fixed. Big pages suit
   * databases of big records (ZBigFile blocks: fewer pages per record to write, log and copy
   * back) and cost small commits (each rewrites whole pages); see the package README.
   */
  pageSize?: number
  /**
   * How many bytes of the database file reads go through a memory mapping (SQLite's mmap_size)
   * instead of a pread per page; SQLite caps it at its compile-time maximum (2 GiB with
   * better-sqlite3's build). Default 0: no mapping. Mapped, reading a 2 MiB record was ~15%
   * faster and a random W-ARR A.get() in a 4 GiB array 13% (2026-11-21); but an I/O error or a
   * file cut short under a mapping (by another program: this storage never shrinks it) is a
   * SIGBUS that kills the process — every thread, a server with all its clients — where
   * unmapped it is a StorageFileError. Opt in where that trade is acceptable.
   */
  mmapSize?: number
  /**
   * SQLite's auto_vacuum of a file this instance creates (ignored for an existing file, which
   * keeps the mode it was created with). 'incremental', the default, keeps a pointer map (one
   * page per ~1,000), with which SQLite finds the next page of a big record without reading
   * the page before it, so a range read near the end of a 2 MiB record visits a few pages
   * instead of ~500: a random element of a 4 GiB ZBlk0 array reads in ~40-55 us instead of
   * ~270-460. Its cost on commits that grow B-trees is within the noise (W-OBJ populate, 10
   * runs each alternating, 2026-11-22: median 103.4k objects/s with 'none', 102.9k with the
   * map; an earlier sitting saw 7%). 'none' leaves the map out. Nothing here ever runs
   * incremental_vacuum: the file does not shrink.
   */
  autoVacuum?: AutoVacuum
  /**
   * Read parts of records with SQLite's incremental blob I/O (the blob extension, built with
   * the package: see loadBeforeRanges and loadBeforeInto). Default true where it is built;
   * false reads them as before it (substr, or a whole load and a copy), for comparison; the
   * spec carries it (blobExtension=0), so loader workers read the same way.
   */
  blobExtension?: boolean
}

export type AutoVacuum = 'none' | 'incremental'

function checkAutoVacuum(mode: string): AutoVacuum {
  if (mode !== 'none' && mode !== 'incremental') throw new RangeError(`sqlite storage: autoVacuum must be 'none' or 'incremental', not ${JSON.stringify(mode)}`)
  return mode
}

function checkMmapSize(size: number): number {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`sqlite storage: mmapSize must be a whole number of bytes >= 0, not ${size}`)
  return size
}

function checkPageSize(size: number): number {
  if (!Number.isInteger(size) || size < 512 || size > 65536 || (size & (size - 1)) !== 0) {
    throw new RangeError(`sqlite storage: pageSize must be a power of two from 512 to 65536, not ${size}`)
  }
  return size
}

/** Progress of a pack, reported to `pack`'s callback. */
export interface PackProgress {
  phase: 'reachability' | 'removing revisions' | 'removing unreachable objects' | 'done'
  /** Objects visited (reachability) or rows removed so far. */
  done: number
}

export interface PackOptions {
  onProgress?: (progress: PackProgress) => void
}

/** One undoable transaction, as `undoLog` lists them. */
export interface UndoEntry {
  tid: Tid
  time: Date
  user: string
  description: string
}

interface PendingStore {
  oldSerial: Tid
  data: Uint8Array | null
}

interface Commit {
  txn: TransactionMetaData
  stores: Map<Oid, PendingStore>
  readCurrent: Map<Oid, Tid>
  resolved: Oid[]
  /** Transactions undone: checked again at vote, holding the write lock (see tpc_vote). */
  undone: Tid[]
  /** Set at vote, while the write lock is held. */
  tid: Tid | null
}

type Row = Record<string, unknown>

const SCHEMA = `
CREATE TABLE wendelin_meta (
  key   TEXT PRIMARY KEY,
  value ANY
) STRICT;
CREATE TABLE transactions (
  tid         INTEGER PRIMARY KEY,
  user        TEXT NOT NULL,
  description TEXT NOT NULL,
  extension   BLOB NOT NULL,
  packed      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE object_revisions (
  oid  INTEGER NOT NULL,
  tid  INTEGER NOT NULL,
  data BLOB
) STRICT;
CREATE INDEX object_revisions_by_oid ON object_revisions (oid);
CREATE INDEX object_revisions_by_tid ON object_revisions (tid);
`
// Revisions are appended in commit order (rowid), so a commit writes its rows to the end of the
// table; only the small index entries land at random places. The rowid order of an object's
// revisions is their tid order (commits are serialized and take increasing tids; deleting rows
// keeps the order of the others), so the oid index needs no tid: an entry is (oid, rowid), and
// an object's newest revision is one seek at the end of its run, the newest before a tid a step
// back over table rows. Version 1 indexed (oid, tid) UNIQUE: entries of ~21 bytes instead of
// ~12, and an update of random objects rewrites most of that index's pages in every commit
// (measured, raw SQLite, 1,000 random objects of 100,000 per commit: 7.7-8.5 -> 5.1-6.6 us per
// row; W-OBJ update CPU 77-86k -> 85-103k objects/s, alternating).

/**
 * How a commit's revisions are inserted. OR ROLLBACK: a failed insert ends the whole transaction,
 * as tpc_vote does with any error anyway, and so SQLite keeps no statement journal (a copy of
 * every page each multi-row statement changes, spilled to a temporary file past 64 KiB, in case
 * the statement alone had to be undone): measured in raw SQLite with this schema, 1,000 random
 * objects per commit, 105-120k -> 135-157k rows/s.
 */
const INSERT_REVISIONS = 'INSERT OR ROLLBACK INTO object_revisions (oid, tid, data) VALUES'

function clampTid(tid: Tid): bigint {
  return tid > INT64_MAX ? INT64_MAX : tid
}

function parseSpec(spec: string): { file: string; options: SQLiteStorageOptions } {
  const rest = spec.slice('sqlite:'.length)
  const q = rest.indexOf('?')
  const file = q < 0 ? rest : rest.slice(0, q)
  if (file === '') throw new TypeError(`sqlite storage spec without a file path: ${JSON.stringify(spec)}`)
  const options: SQLiteStorageOptions = {}
  if (q >= 0) {
    for (const [k, v] of new URLSearchParams(rest.slice(q + 1))) {
      if (k === 'durability' && (v === 'full' || v === 'normal')) options.durability = v
      else if (k === 'readonly' || k === 'readOnly') options.readOnly = v !== '0' && v !== 'false'
      else if (k === 'busyTimeout' && /^\d+$/.test(v)) options.busyTimeout = Number(v)
      else if (k === 'pageSize' && /^\d+$/.test(v)) options.pageSize = checkPageSize(Number(v))
      else if (k === 'mmapSize' && /^\d+$/.test(v)) options.mmapSize = checkMmapSize(Number(v))
      else if (k === 'autoVacuum') options.autoVacuum = checkAutoVacuum(v)
      else if (k === 'blobExtension' && (v === '0' || v === '1')) options.blobExtension = v === '1'
      else throw new TypeError(`sqlite storage spec: unknown option ${k}=${v} in ${JSON.stringify(spec)}`)
    }
  }
  return { file, options }
}

export class SQLiteStorage implements Storage {
  readonly file: string
  readonly spec: string
  readonly shareable = true
  /** SQLite copies every bound record in vote; tpc_finish and tpc_abort drop the commit's stores. */
  readonly copiesRecords = true
  readonly durability: Durability
  /** Bytes of the file read through a memory mapping (SQLite's mmap_size in effect; 0: none). */
  readonly mmapSize: number
  readonly #db: Database.Database
  readonly #readOnly: boolean
  readonly #listeners = new Set<InvalidationListener>()
  #commit: Commit | null = null
  #lastTid: Tid = 0n
  /** How long a statement waits for another connection's lock (ms) before SQLITE_BUSY. */
  #busyTimeout = 60_000
  #dataVersion = -1n
  /** A block of oids reserved in the file for this instance: [next, end). */
  #oidNext: Oid = 0n
  #oidEnd: Oid = 0n
  #oidBlock = 64n
  /**
   * A block of oids was reserved inside the voted transaction (newOid between its vote and its
   * finish: a ZEO server serving another client, say): an abort must keep that reservation, or
   * other processes would hand out the oids this instance already did (see #rollback).
   */
  #oidsReservedInVote = false
  /**
   * Current serials of objects this instance loaded or saw committed, and the oids it handed out
   * and has not committed yet: reserved in the file for us alone, they have no revision, so a
   * new object's store needs no look-up at vote (see known-serials.ts).
   */
  #known!: KnownSerials
  /** `pack_count` of the file when #known was started: a pack by anyone may remove current revisions. */
  #packCount = 0n
  #closed = false
  readonly #stmt: ReturnType<SQLiteStorage['prepareStatements']>
  /** Checkpoints of a writable instance, off the committing thread (null: SQLite's autocheckpoint). */
  #wal: WalKeeper | null = null
  /** The blob extension, loaded into this connection (null: not built, not loadable, or not wanted). */
  #blobIO: BlobIO | null = null
  /**
   * The page cache's size at open, in KiB (better-sqlite3's default is 16,000), and what a big
   * record of the commit under way raised it to (0: not raised; see #insertBigRevision).
   */
  #cacheKiB = 0
  #cacheRaisedKiB = 0

  /** The file's auto_vacuum mode (options.autoVacuum when it was created; 'full' if another program chose it). */
  get autoVacuum(): AutoVacuum | 'full' {
    this.#checkOpen()
    const mode = Number(this.#db.pragma('auto_vacuum', { simple: true }))
    return mode === 2 ? 'incremental' : mode === 1 ? 'full' : 'none'
  }

  /**
   * The size of this connection's page cache in effect, in KiB (better-sqlite3's default is
   * 16,000): raised while a commit writes a record it cannot hold twice, back after it.
   */
  get pageCacheKiB(): number {
    this.#checkOpen()
    // cache_size counts KiB when negative, pages when positive.
    const cache = Number(this.#db.pragma('cache_size', { simple: true }))
    return cache < 0 ? -cache : Math.ceil((cache * Number(this.#db.pragma('page_size', { simple: true }))) / 1024)
  }

  /** Whether parts of records are read with SQLite's incremental blob I/O (options.blobExtension). */
  get blobExtension(): boolean {
    return this.#blobIO !== null
  }

  /** Open `sqlite:/path/file.sqlite[?durability=normal&readonly=1]` or a plain path. */
  static open(specOrFile: string, options: SQLiteStorageOptions = {}): SQLiteStorage {
    if (specOrFile.startsWith('sqlite:')) {
      const parsed = parseSpec(specOrFile)
      return new SQLiteStorage(parsed.file, { ...parsed.options, ...options })
    }
    return new SQLiteStorage(specOrFile, options)
  }

  constructor(file: string, options: SQLiteStorageOptions = {}) {
    this.file = path.resolve(file)
    this.#readOnly = options.readOnly ?? false
    this.durability = options.durability ?? 'full'
    const pageSize = options.pageSize === undefined ? undefined : checkPageSize(options.pageSize)
    const autoVacuum = checkAutoVacuum(options.autoVacuum ?? 'incremental')
    const mmapSize = checkMmapSize(options.mmapSize ?? 0)
    const params = new URLSearchParams()
    if (this.durability !== 'full') params.set('durability', this.durability)
    if (this.#readOnly) params.set('readonly', '1')
    if (mmapSize > 0) params.set('mmapSize', String(mmapSize))
    if (options.blobExtension === false) params.set('blobExtension', '0') // loader workers' instances too
    this.spec = `sqlite:${this.file}${params.size > 0 ? `?${params}` : ''}`
    if (!this.#readOnly) mkdirSync(path.dirname(this.file), { recursive: true })
    try {
      this.#busyTimeout = options.busyTimeout ?? 60_000
      this.#db = new Database(this.file, { readonly: this.#readOnly, fileMustExist: this.#readOnly, timeout: this.#busyTimeout })
    } catch (error) {
      throw new StorageFileError(this.file, `cannot open: ${(error as Error).message}`, { cause: error })
    }
    try {
      this.#db.defaultSafeIntegers(true)
      this.#blobIO = options.blobExtension === false ? null : loadBlobExtension(this.#db)
      this.#initialize(pageSize, autoVacuum)
      // After the page size is fixed; SQLite answers the size in effect (its maximum at most).
      this.mmapSize = Number(this.#db.pragma(`mmap_size = ${mmapSize}`, { simple: true }))
      this.#cacheKiB = this.pageCacheKiB
      this.#stmt = this.prepareStatements()
      if (!this.#readOnly) this.#wal = WalKeeper.open(this.file, this.durability === 'full' ? 'FULL' : 'NORMAL', () => this.#db.pragma('wal_checkpoint(PASSIVE)'))
      if (this.#wal !== null) this.#db.pragma('wal_autocheckpoint = 0')
      // The version first: a commit between the two reads is then noticed by the first poll.
      this.#dataVersion = this.#stmt.dataVersion.get() as bigint
      this.#lastTid = (this.#stmt.lastTid.get() as Row).tid as bigint
      this.#packCount = this.#readPackCount()
    } catch (error) {
      this.#wal?.close()
      this.#db.close()
      throw this.#fileError(error, 'cannot open')
    }
    // A read-only instance (a loader worker's, say) never votes: nothing to remember for it.
    this.#known = new KnownSerials(this.#lastTid, this.#readOnly ? 0 : KNOWN_SERIALS_MAX_OID)
    log('opened %s (durability %s%s), last tid %s', this.file, this.durability, this.#readOnly ? ', read-only' : '', idToHex(this.#lastTid))
  }

  /** Create the schema in a new file, check (and if need be migrate) an existing one. */
  #initialize(pageSize: number | undefined, autoVacuum: AutoVacuum): void {
    const db = this.#db
    // Before anything writes the file's header: page size and auto_vacuum are chosen when the
    // file is created. In this order: setting auto_vacuum on an empty file writes its first
    // page, after which the page size can no longer change. (If another program or process
    // writes the header first, the file has its mode: the documented rule for existing files.)
    if (!this.#readOnly && (db.pragma('page_count', { simple: true }) as bigint) === 0n) {
      if (pageSize !== undefined) db.pragma(`page_size = ${pageSize}`)
      if (autoVacuum !== 'none') db.pragma(`auto_vacuum = ${autoVacuum.toUpperCase()}`)
    }
    const mode = db.pragma('journal_mode', { simple: true }) as string
    if (!this.#readOnly && mode !== 'wal') db.pragma('journal_mode = WAL')
    db.pragma(`synchronous = ${this.durability === 'full' ? 'FULL' : 'NORMAL'}`)
    // Checkpoint (copy the WAL back into the file) every ~40 MB of WAL instead of SQLite's 4 MB:
    // commits that rewrite the same index pages then cost one copy per checkpoint, not one per
    // commit. Durability is the WAL's, unchanged. Measured on W-OBJ: bytes written per updated
    // object 4,512 -> 3,348, per populated object 546 -> 305, update 42-47k -> 52-54k objects/s.
    // A writable instance then hands the checkpoints to a thread of its own (see #wal).
    db.pragma(`wal_autocheckpoint = ${CHECKPOINT_FRAMES}`)
    const listTables = () => new Set((db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Row[]).map((r) => r.name as string))
    let tables = listTables()
    if (tables.size === 0) {
      if (this.#readOnly) throw new StorageFileError(this.file, 'is empty: there is no database to read')
      db.exec('BEGIN IMMEDIATE')
      try {
        // Several processes may create a new file at once: look again holding the write lock.
        if (listTables().size === 0) {
          db.exec(SCHEMA)
          const meta = db.prepare('INSERT INTO wendelin_meta (key, value) VALUES (?, ?)')
          meta.run('application', APPLICATION)
          meta.run('schema_version', BigInt(SQLITE_SCHEMA_VERSION))
          meta.run('next_oid', 1n)
          meta.run('created', new Date().toISOString())
          log('created the schema (version %d) in %s', SQLITE_SCHEMA_VERSION, this.file)
        }
        db.exec('COMMIT')
      } catch (error) {
        db.exec('ROLLBACK')
        throw error
      }
      tables = listTables()
    }
    if (!tables.has('wendelin_meta')) {
      throw new StorageFileError(this.file, `is an SQLite database, but not a wendelin database (it has tables ${[...tables].join(', ')})`)
    }
    const meta = new Map((db.prepare('SELECT key, value FROM wendelin_meta').all() as Row[]).map((r) => [r.key as string, r.value]))
    if (meta.get('application') !== APPLICATION) {
      throw new StorageFileError(this.file, `is not a wendelin database (application ${JSON.stringify(meta.get('application'))})`)
    }
    // loadBeforeMany joins records with SQLite's text operators, which keep a blob's bytes as they
    // are only in a UTF-8 database (every file this code creates is one).
    const encoding = db.pragma('encoding', { simple: true }) as string
    if (encoding !== 'UTF-8') throw new StorageFileError(this.file, `has text encoding ${encoding}: a wendelin database is UTF-8`)
    const version = Number(meta.get('schema_version'))
    if (!Number.isInteger(version) || version < 1) throw new StorageFileError(this.file, `has an invalid schema version ${String(meta.get('schema_version'))}`)
    if (version > SQLITE_SCHEMA_VERSION) {
      throw new StorageFileError(
        this.file,
        `was written by a newer version of wendelin (schema version ${version}; this version reads up to ${SQLITE_SCHEMA_VERSION}): upgrade to open it`,
      )
    }
    if (version < SQLITE_SCHEMA_VERSION && !this.#readOnly) this.#migrate()
    // A read-only instance reads a version 1 file as it is: the same queries, over the (oid, tid) index.
  }

  /** Bring an older layout up to this version, holding the write lock (other processes may race). */
  #migrate(): void {
    const db = this.#db
    db.exec('BEGIN IMMEDIATE')
    try {
      const version = Number(db.prepare("SELECT value FROM wendelin_meta WHERE key = 'schema_version'").pluck().get())
      if (version === 1) {
        // 1 -> 2: the oid index without the tid (see SCHEMA).
        db.exec('DROP INDEX object_revisions_by_oid; CREATE INDEX object_revisions_by_oid ON object_revisions (oid)')
        db.prepare("UPDATE wendelin_meta SET value = 2 WHERE key = 'schema_version'").run()
        log('migrated %s from schema version 1 to 2', this.file)
      }
      db.exec('COMMIT')
    } catch (error) {
      db.exec('ROLLBACK')
      throw error
    }
  }

  private prepareStatements() {
    const db = this.#db
    return {
      lastTid: db.prepare('SELECT coalesce(max(tid), 0) AS tid FROM transactions'),
      // One statement per load: the revision before `before` and the serial after it (below `visible`).
      newestRevision: db.prepare('SELECT tid, data FROM object_revisions WHERE oid = ? AND +tid < ? ORDER BY rowid DESC LIMIT 1').raw(),
      loadBefore: db
        .prepare(
          `SELECT r.tid, r.data,
             (SELECT n.tid FROM object_revisions n WHERE n.oid = ? AND n.rowid > r.rowid AND +n.tid < ? ORDER BY n.rowid LIMIT 1)
           FROM object_revisions r WHERE r.oid = ? AND +r.tid < ? ORDER BY r.rowid DESC LIMIT 1`,
        )
        .raw(),
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      loadSerial: db.prepare('SELECT data FROM object_revisions WHERE oid = ? AND +tid = ?'),
      currentSerial: db.prepare('SELECT tid FROM object_revisions WHERE oid = ? ORDER BY rowid DESC LIMIT 1').pluck(),
      packCount: db.prepare("SELECT value FROM wendelin_meta WHERE key = 'pack_count'").pluck(),
      insertRevision: db.prepare(`${INSERT_REVISIONS} (?, ?, ?)`),
      // A commit's rows go BATCH_ROWS to a statement (its serial checks too: #currentSerialsOf): one
      // call into SQLite instead of BATCH_ROWS (measured: a populate's inserts ~1.5x as fast).
      insertRevisions: db.prepare(`${INSERT_REVISIONS} ${Array(BATCH_ROWS).fill('(?, ?, ?)').join(', ')}`),
      insertTransaction: db.prepare('INSERT INTO transactions (tid, user, description, extension) VALUES (?, ?, ?, ?)'),
      reserveOids: db.prepare(
        `UPDATE wendelin_meta SET value = max(value, (SELECT coalesce(max(oid), 0) + 1 FROM object_revisions)) + ?
         WHERE key = 'next_oid' RETURNING value`,
      ),
      changesSince: db.prepare('SELECT tid, oid FROM object_revisions WHERE tid > ? ORDER BY tid, oid'),
      history: db.prepare(
        `SELECT r.tid AS tid, length(r.data) AS size, t.user AS user, t.description AS description, t.extension AS extension
         FROM object_revisions r LEFT JOIN transactions t ON t.tid = r.tid
         WHERE r.oid = ? AND r.tid < ? ORDER BY r.tid DESC LIMIT ?`,
      ),
      transactionsFrom: db.prepare('SELECT tid, user, description, extension, packed FROM transactions WHERE tid >= ? AND tid <= ? ORDER BY tid LIMIT ?'),
      recordsOf: db.prepare('SELECT oid, data FROM object_revisions WHERE tid = ? ORDER BY oid'),
      // Objects whose newest visible revision is not a deletion.
      // The newest visible revision by rowid: joined on (oid, tid), SQLite took the tid index and
      // scanned a whole transaction's rows per object (6.7 s for 100,000 objects).
      count: db.prepare(
        `SELECT count(*) AS n FROM (SELECT max(rowid) AS rid FROM object_revisions WHERE tid < ? GROUP BY oid) c
         JOIN object_revisions r ON r.rowid = c.rid WHERE r.data IS NOT NULL`,
      ),
      // A transaction a pack touched cannot be undone (see undo): not a candidate.
      undoLog: db.prepare('SELECT tid, user, description FROM transactions WHERE packed = 0 AND tid < ? ORDER BY tid DESC LIMIT ?'),
      previousRevision: db.prepare('SELECT tid, data FROM object_revisions WHERE oid = ? AND +tid < ? ORDER BY rowid DESC LIMIT 1'),
      transactionPacked: db.prepare('SELECT packed FROM transactions WHERE tid = ?').pluck(),
    }
  }

  // --- facts ---------------------------------------------------------------------------------

  get closed(): boolean {
    return this.#closed
  }

  getName(): string {
    return `SQLiteStorage(${this.file})`
  }

  getSize(): number {
    this.#checkOpen()
    const pages = this.#db.pragma('page_count', { simple: true }) as bigint
    const size = this.#db.pragma('page_size', { simple: true }) as bigint
    return Number(pages * size)
  }

  len(): number {
    this.#checkOpen()
    return this.#guard('len', () => Number((this.#stmt.count.get(this.#visibleBefore()) as Row).n))
  }

  isReadOnly(): boolean {
    return this.#readOnly
  }

  sortKey(): string {
    return this.spec
  }

  /** The newest tid, after noticing what other processes committed (they are told to the listeners). */
  lastTransaction(): Tid {
    this.#checkOpen()
    this.#guard('poll', () => this.#poll())
    return this.#lastTid
  }

  /** Look for transactions other processes (or other instances) committed since we last looked. */
  #poll(): void {
    if (this.#commit?.tid != null) return // we hold the write lock: nobody else committed
    const version = this.#stmt.dataVersion.get() as bigint
    if (version === this.#dataVersion) return
    // The last tid before the rows: a commit landing between the two reads is then in the rows
    // (and delivered), never counted in #lastTid without its rows.
    const last = (this.#stmt.lastTid.get() as Row).tid as bigint
    const rows = this.#stmt.changesSince.all(this.#lastTid) as Row[]
    const changes: { tid: Tid; oids: Oid[] }[] = []
    for (const r of rows) {
      const tid = r.tid as bigint
      if (changes.at(-1)?.tid !== tid) changes.push({ tid, oids: [] })
      changes.at(-1)!.oids.push(r.oid as bigint)
    }
    // Everything is recorded before anyone is told: a listener that throws must not leave later
    // commits out of #known (the vote would trust their stale serials) or of #lastTid.
    for (const c of changes) {
      this.#known.committed(c.tid, c.oids)
      if (c.tid > this.#lastTid) this.#lastTid = c.tid
      this.#dropOidBlockHolding(c.oids)
    }
    if (last > this.#lastTid) this.#lastTid = last
    this.#dataVersion = version
    if (rows.length > 0) log('noticed %d revisions committed elsewhere, up to %s', rows.length, idToHex(this.#lastTid))
    // Every listener hears every change, in tid order; the first failure is rethrown after.
    let failure: { error: unknown } | null = null
    for (const c of changes)
      for (const l of [...this.#listeners]) {
        try {
          l.invalidate(c.tid, c.oids)
        } catch (error) {
          failure ??= { error }
        }
      }
    if (failure !== null) throw failure.error
  }

  // --- reading -------------------------------------------------------------------------------

  loadBefore(oid: Oid, tid: Tid): LoadedRevision | null {
    this.#checkOpen()
    const visible = this.#visibleBefore()
    try {
      // The newest visible revision first: one index seek, and usually the answer (a snapshot
      // reads the current revision, whose next serial is none). Only an older snapshot needs
      // the query that finds the revision before `tid` and the one after it.
      const newest = this.#stmt.newestRevision.get(oid, visible) as [bigint, Uint8Array | null] | undefined
      if (newest === undefined) throw new POSKeyError(oid)
      this.#known.loaded(oid, newest[0], visible)
      if (newest[0] < tid) return newest[1] === null ? null : { data: toBytes(newest[1]), serial: newest[0], nextSerial: null }
      const row = this.#stmt.loadBefore.get(oid, visible, oid, tid < visible ? tid : visible) as [bigint, Uint8Array | null, bigint | null] | undefined
      if (row === undefined || row[1] === null) return null
      return { data: toBytes(row[1]), serial: row[0], nextSerial: row[2] ?? null }
    } catch (error) {
      throw this.#translate(error, 'load')
    }
  }

  /**
   * The revisions of `oids` current before `tid`, BATCH_ROWS oids per query (measured: 1.4 us
   * per object against 2.6 us for one loadBefore each). Objects that did not exist then are
   * left out. Each query answers with one blob (#packedNewest), read here without an object
   * per row: the records are views into it and a transaction's records share one serial.
   */
  loadBeforeMany(oids: readonly Oid[], tid: Tid): Map<Oid, LoadedRevision> {
    this.#checkOpen()
    const visible = this.#visibleBefore()
    const before = tid < visible ? tid : visible
    const found = new Map<Oid, LoadedRevision>()
    if (oids.length === 0) return found
    return this.#guard('load', () => {
      const stmt = this.#packedNewest()
      // The serial of the last record (its decimal digits as two numbers): records of one
      // transaction share one bigint.
      let serial = 0n
      let serialHigh = -1
      let serialLow = -1
      for (let start = 0; start < oids.length; start += BATCH_ROWS) {
        const end = Math.min(start + BATCH_ROWS, oids.length)
        let list = '['
        for (let j = start; j < end; j++) list += j === start ? `${oids[j]!}` : `,${oids[j]!}`
        const packed = stmt.get(`${list}]`) as Buffer | null
        if (packed === null) continue
        for (let at = 0; at < packed.length; ) {
          // "<index> <tid> <length> " (digits; a length of -1: deletion, -2: left out), the record.
          let index = 0
          let c: number
          while ((c = packed[at++]!) !== SPACE) index = index * 10 + c - DIGIT_0
          // The tid's digits as two exact numbers: all but the last 9 (at most 10 digits) and those.
          let stop = at
          while (packed[stop] !== SPACE) stop++
          const split = stop - 9 > at ? stop - 9 : at
          let high = 0
          let low = 0
          while (at < split) high = high * 10 + packed[at++]! - DIGIT_0
          while (at < stop) low = low * 10 + packed[at++]! - DIGIT_0
          at++
          const negative = packed[at] === MINUS
          if (negative) at++
          let length = 0
          while ((c = packed[at++]!) !== SPACE) length = length * 10 + c - DIGIT_0
          if (negative) length = -length
          const inline = length > 0 ? length : 0
          at += inline
          if (high !== serialHigh || low !== serialLow) {
            serial = BigInt(high) * 1_000_000_000n + BigInt(low)
            serialHigh = high
            serialLow = low
          }
          const oid = oids[start + index]!
          let data: Uint8Array | null = null
          let rev = serial
          if (rev >= before || length === PACKED_OMITTED) {
            // Changed at or after `before` (an old snapshot), or a big record: on its own.
            const row = this.#stmt.newestRevision.get(oid, before) as [bigint, Uint8Array | null] | undefined
            if (row === undefined) continue
            rev = row[0]
            data = row[1] === null ? null : toBytes(row[1])
          } else if (length !== PACKED_DELETED) {
            data = packed.subarray(at - inline, at)
          }
          this.#known.loaded(oid, rev, before)
          if (data !== null) found.set(oid, { data, serial: rev, nextSerial: null })
        }
      }
      return found
    })
  }

  /**
   * The newest revision of each oid of a JSON array (up to BATCH_ROWS), as one blob of
   * records, each a header in decimal digits, "<index in the array> <tid> <length> "
   * (PACKED_DELETED for a deletion, PACKED_OMITTED for a record over PACKED_MAX_INLINE left
   * out), then the record. One blob instead of a row each: better-sqlite3 makes an array,
   * bigints and a Buffer of its own per row, and binds 64 parameters (64 oids, W-OBJ records:
   * 1,620-1,820 ns per record -> 880-1,090; with the header as printf'd hex through unhex
   * 1,030, as text 800). The text operators keep a blob's bytes as they are (a UTF-8 database:
   * the schema makes it so).
   */
  #packedNewest(): Database.Statement {
    return this.#statement('packed', () =>
      this.#db
        .prepare(
          `SELECT CAST(group_concat(j.key || ' ' || r.tid || ' ' ||
             CASE WHEN r.data IS NULL THEN ${PACKED_DELETED} WHEN length(r.data) > ${PACKED_MAX_INLINE} THEN ${PACKED_OMITTED} ELSE length(r.data) END
             || ' ' || CASE WHEN length(r.data) <= ${PACKED_MAX_INLINE} THEN r.data ELSE x'' END, x'') AS BLOB)
           FROM json_each(?) j
           JOIN object_revisions r ON r.rowid = (SELECT n.rowid FROM object_revisions n WHERE n.oid = j.value ORDER BY n.rowid DESC LIMIT 1)`,
        )
        .pluck(),
    )
  }

  /**
   * Ranges of the newest revision before `tid`. With the blob extension (sqlite-blob-io.ts)
   * only the pages of each range are read (and the links of the pages before it); without it,
   * `substr`, for which SQLite reads the whole record into its own memory first. Random
   * ranges of 2 MiB records (4 KiB pages, page cache warm), header and 8 bytes: 260-280 us
   * with substr, 33-46 us with the extension (2026-11-21).
   */
  loadBeforeRanges(oid: Oid, tid: Tid, ranges: ReadonlyArray<readonly [offset: number, length: number]>): Uint8Array[] | null {
    this.#checkOpen()
    if (ranges.length === 0 || ranges.length > 8) throw new RangeError(`loadBeforeRanges: 1 to 8 ranges, not ${ranges.length}`)
    const args: unknown[] = []
    for (const [offset, length] of ranges) {
      checkRange('loadBeforeRanges', offset, length)
      args.push(this.#blobIO === null ? offset + 1 : offset, length) // substr counts from 1
    }
    const row = this.#rowBefore('load', oid, tid, args, this.#rangesStatement(ranges.length))
    if (row === null) return null
    const parts: Uint8Array[] = []
    for (let i = 2; i < row.length; i++) parts.push(row[i] === null ? new Uint8Array(0) : toBytes(row[i]))
    return parts
  }

  /**
   * Copies parts of the newest revision before `tid` into the caller's arrays: for each
   * `[offset, dest]`, bytes [offset, offset + dest.length) of the record (fewer where it ends
   * first; the rest of `dest` is left as it was). Returns the record's serial and length; null,
   * or POSKeyError, as loadBefore. With the blob extension the pages of a part are read
   * straight into `dest` (2 MiB records: ~360 us against ~900 for a select and a copy);
   * without it, loadBefore and a copy. `dest` is garbage if this throws.
   */
  loadBeforeInto(oid: Oid, tid: Tid, parts: ReadonlyArray<readonly [offset: number, dest: Uint8Array]>): { serial: Tid; length: number } | null {
    this.#checkOpen()
    if (parts.length === 0 || parts.length > 8) throw new RangeError(`loadBeforeInto: 1 to 8 parts, not ${parts.length}`)
    for (const [offset, dest] of parts) checkRange('loadBeforeInto', offset, dest.length)
    const blobIO = this.#blobIO
    if (blobIO === null) {
      const rev = this.loadBefore(oid, tid)
      if (rev === null) return null
      for (const [offset, dest] of parts) if (offset < rev.data.length) dest.set(rev.data.subarray(offset, offset + dest.length))
      return { serial: rev.serial, length: rev.data.length }
    }
    const args = parts.map(([offset]) => offset)
    const row = blobIO.with(
      parts.map(([, dest]) => dest),
      () => this.#rowBefore('load', oid, tid, args, this.#readIntoStatement(parts.length)),
    )
    return row === null ? null : { serial: row[0] as Tid, length: Number(row[1]) }
  }

  /**
   * The row (tid, length(data), ...) `stmt` gives for the newest revision of `oid` before `tid`
   * with `args` bound before oid and tid; null for a deletion or where the object has revisions,
   * none before `tid` (as loadBefore); POSKeyError where it has none.
   */
  #rowBefore(what: string, oid: Oid, tid: Tid, args: unknown[], stmt: Database.Statement): unknown[] | null {
    const visible = this.#visibleBefore()
    const row = this.#guard(what, () => stmt.get([...args, oid, tid < visible ? tid : visible]) as unknown[] | undefined)
    if (row === undefined) {
      const exists = this.#guard(what, () => this.#existsStatement().get(oid, visible) !== undefined)
      if (!exists) throw new POSKeyError(oid)
      return null
    }
    return row[1] === null ? null : row // length(data) is null for a deletion
  }

  /** Whether an object has any revision before a tid (without reading its record). */
  #existsStatement(): Database.Statement {
    return this.#statement('exists', () => this.#db.prepare('SELECT 1 FROM object_revisions WHERE oid = ? AND tid < ? LIMIT 1').raw())
  }

  /**
   * SELECT tid, length(data) (which reads no more than the record's header) and `n` ranges of
   * the newest revision before a tid. The CASE keeps a deletion's NULL from the extension.
   */
  #rangesStatement(n: number): Database.Statement {
    const range = this.#blobIO === null ? 'substr(data, ?, ?)' : "CASE WHEN length(data) IS NULL THEN NULL ELSE wendelin_blob_range('object_revisions', 'data', rowid, ?, ?) END"
    return this.#newestBeforeStatement(`ranges:${n}`, Array(n).fill(range))
  }

  /** SELECT tid, length(data) and `n` copies into destination slots 0..n-1 (see loadBeforeInto). */
  #readIntoStatement(n: number): Database.Statement {
    const reads = Array.from({ length: n }, (_, i) => `CASE WHEN length(data) IS NULL THEN NULL ELSE wendelin_blob_read('object_revisions', 'data', rowid, ?, ${i}) END`)
    return this.#newestBeforeStatement(`into:${n}`, reads)
  }

  /**
   * `columns` of the newest revision of an oid before a tid. `+tid` keeps the planner on the oid
   * index whatever statistics say (ANALYZE, STAT4): by the tid index it would evaluate the
   * columns for every older revision before sorting — and wendelin_blob_read writes.
   */
  #newestBeforeStatement(key: string, columns: string[]): Database.Statement {
    return this.#statement(key, () =>
      this.#db.prepare(`SELECT tid, length(data), ${columns.join(', ')} FROM object_revisions WHERE oid = ? AND +tid < ? ORDER BY rowid DESC LIMIT 1`).raw(),
    )
  }

  /** Statements prepared when first needed (some kinds come in one per list length), by key. */
  readonly #lazyStatements = new Map<string, Database.Statement>()

  #statement(key: string, prepare: () => Database.Statement): Database.Statement {
    let stmt = this.#lazyStatements.get(key)
    if (stmt === undefined) this.#lazyStatements.set(key, (stmt = prepare()))
    return stmt
  }

  /** The raw statement `sql(values)` of `n` oids, `values` being their `(VALUES (?), ...)` list. */
  #oidListStatement(kind: string, n: number, sql: (values: string) => string): Database.Statement {
    return this.#statement(`${kind}:${n}`, () => this.#db.prepare(sql(`(VALUES ${Array(n).fill('(?)').join(', ')})`)).raw())
  }

  /** The current serial (null: none) of `n` oids. */
  #currentSerialsOf(n: number): Database.Statement {
    return this.#oidListStatement(
      'current',
      n,
      (values) => `SELECT v.column1, (SELECT r.tid FROM object_revisions r WHERE r.oid = v.column1 ORDER BY r.rowid DESC LIMIT 1) FROM ${values} v`,
    )
  }

  /**
   * Rows with a tid at or above this bound are not visible: between our vote and finish the
   * file holds the voted transaction's rows, which nobody may read before it commits (and
   * which vanish if it aborts).
   */
  #visibleBefore(): bigint {
    const pending = this.#commit?.tid
    return pending != null ? pending : INT64_MAX
  }

  loadSerial(oid: Oid, serial: Tid): Uint8Array {
    this.#checkOpen()
    return this.#guard('load', () => {
      const row = serial < this.#visibleBefore() ? (this.#stmt.loadSerial.get(oid, serial) as Row | undefined) : undefined
      if (row === undefined || row.data === null) throw new POSKeyError(oid, `no revision written by transaction 0x${idToHex(serial)}`)
      return toBytes(row.data)
    })
  }

  newOid(): Oid {
    this.#checkWritable('newOid')
    if (this.#oidNext >= this.#oidEnd) {
      // Reserve a block in the file so that other processes never hand out the same oids. The
      // reservation need not be synced: in WAL mode it reaches disk no later than the commit that
      // first uses one of its oids, and a lost reservation whose oids were never committed is harmless.
      const block = this.#oidBlock
      if (this.#oidBlock < 4096n) this.#oidBlock *= 2n
      const durable = this.durability === 'full' && !this.#db.inTransaction
      if (!this.#db.inTransaction) this.#wal?.beforeWrite() // a write transaction too: it may restart the WAL
      if (durable) this.#db.pragma('synchronous = NORMAL')
      try {
        const end = this.#guard('newOid', () => (this.#stmt.reserveOids.get(block) as Row).value as bigint)
        this.#oidNext = end - block
        this.#oidEnd = end
        if (this.#db.inTransaction) this.#oidsReservedInVote = true
      } finally {
        if (durable) this.#db.pragma('synchronous = FULL')
      }
    }
    const oid = this.#oidNext++
    this.#known.reserved(oid)
    return oid
  }

  // --- two-phase commit ----------------------------------------------------------------------

  tpc_begin(txn: TransactionMetaData): void {
    this.#checkWritable('tpc_begin')
    if (this.#commit !== null) {
      if (this.#commit.txn === txn) return
      throw new StorageTransactionError(`${this.getName()}: tpc_begin while another transaction is committing (one commit at a time)`)
    }
    this.#commit = { txn, stores: new Map(), readCurrent: new Map(), resolved: [], undone: [], tid: null }
  }

  store(oid: Oid, oldSerial: Tid, data: Uint8Array, txn: TransactionMetaData): void {
    this.#checkWritable('store')
    const commit = this.#committing(txn, 'store')
    checkId(oid, 'oid')
    if (!(data instanceof Uint8Array)) throw new TypeError('store: data must be a Uint8Array record')
    if (commit.tid !== null) throw new StorageTransactionError(`${this.getName()}: store after tpc_vote`)
    commit.stores.set(oid, { oldSerial, data })
  }

  checkCurrentSerialInTransaction(oid: Oid, serial: Tid, txn: TransactionMetaData): void {
    const commit = this.#committing(txn, 'checkCurrentSerialInTransaction')
    if (!commit.readCurrent.has(oid)) commit.readCurrent.set(oid, serial)
  }

  /**
   * Undo transaction `tid` as part of the committing transaction: every object it wrote goes
   * back to the revision before it (an object it created is deleted). Refused with UndoError if
   * a later transaction changed one of those objects. Returns the oids that change.
   */
  undo(tid: Tid, txn: TransactionMetaData): Oid[] {
    this.#checkWritable('undo')
    const commit = this.#committing(txn, 'undo')
    return this.#guard('undo', () => {
      const packed = this.#stmt.transactionPacked.get(clampTid(tid)) as bigint | undefined
      if (packed === undefined) throw new UndoError(`no transaction 0x${idToHex(tid)} to undo`)
      // A pack removed the revisions before those of a transaction at or before its pack time:
      // "the previous revision" of each of its objects is gone, and would read as a creation.
      if (packed !== 0n) throw new UndoError(`cannot undo transaction 0x${idToHex(tid)}: it is at or before the time of a pack, which removed the revisions it would go back to`)
      const records = this.#stmt.recordsOf.all(clampTid(tid)) as Row[]
      commit.undone.push(tid)
      const oids: Oid[] = []
      for (const r of records) {
        const oid = r.oid as bigint
        const current = this.#stmt.currentSerial.get(oid) as bigint | undefined
        if (current !== tid) {
          throw new UndoError(`cannot undo transaction 0x${idToHex(tid)}: object 0x${idToHex(oid)} was changed by a later transaction`)
        }
        const prev = this.#stmt.previousRevision.get(oid, clampTid(tid)) as Row | undefined
        commit.stores.set(oid, { oldSerial: tid, data: prev === undefined || prev.data === null ? null : toBytes(prev.data) })
        oids.push(oid)
      }
      return oids
    })
  }

  tpc_vote(txn: TransactionMetaData): Oid[] {
    const commit = this.#committing(txn, 'tpc_vote')
    if (commit.tid !== null) return [...commit.resolved]
    this.#wal?.beforeWrite()
    this.#guard('commit', () => this.#stmt.begin.run())
    try {
      // Holding the write lock, tell listeners what others committed before us: they then hear
      // every tid in order, ours last. The known serials are then current, unless a pack
      // removed revisions since they were learnt.
      this.#poll()
      const packCount = this.#readPackCount()
      if (packCount !== this.#packCount) {
        this.#packCount = packCount
        this.#known.reset(this.#lastTid)
      }
      // undo() read the revisions it goes back to without the lock: a pack by another process
      // since (one running then, whose lock this vote waited for) may have collected objects
      // they refer to. The serial checks below do not see it (a pack keeps current revisions).
      for (const tid of commit.undone) {
        if (this.#stmt.transactionPacked.get(clampTid(tid)) !== 0n) {
          throw new UndoError(`cannot undo transaction 0x${idToHex(tid)}: a pack reached it while the undo was committing`)
        }
      }
      for (const [oid, expected] of commit.readCurrent) {
        const current = this.#currentSerial(oid)
        if (current !== expected) {
          throw new ReadConflictError('an object read with readCurrent() was changed by another transaction', {
            oid,
            oldSerial: expected,
            committedSerial: current,
          })
        }
      }
      for (const [oid, current] of this.#staleStores(commit.stores)) {
        const pending = commit.stores.get(oid)!
        if (current === 0n || pending.data === null) {
          throw new ConflictError(
            current === 0n ? 'store of an object based on a revision that does not exist' : 'undo of an object that changed meanwhile',
            { oid, oldSerial: pending.oldSerial, committedSerial: current === 0n ? null : current },
          )
        }
        pending.data = tryToResolveConflict(oid, current, pending.oldSerial, pending.data, (o, s) => this.loadSerial(o, s))
        pending.oldSerial = current
        commit.resolved.push(oid)
      }
      const last = (this.#stmt.lastTid.get() as Row).tid as bigint
      const tid = newTid(last > this.#lastTid ? last : this.#lastTid)
      this.#stmt.insertTransaction.run(tid, txn.user, txn.description, msgpack(txn.extension))
      this.#insertRevisions(tid, commit.stores)
      commit.tid = tid
    } catch (error) {
      this.#rollback()
      throw this.#translate(error, 'commit')
    }
    return [...commit.resolved]
  }

  tpc_finish(txn: TransactionMetaData, onTid?: (tid: Tid) => void): Tid {
    const commit = this.#committing(txn, 'tpc_finish')
    const tid = commit.tid
    if (tid === null) throw new StorageTransactionError(`${this.getName()}: tpc_finish before tpc_vote`)
    try {
      this.#guard('commit', () => this.#stmt.commit.run())
    } finally {
      this.#restoreCache()
    }
    this.#oidsReservedInVote = false
    this.#wal?.afterCommit()
    this.#lastTid = tid
    this.#commit = null
    const oids = [...commit.stores.keys()]
    this.#known.committed(tid, oids)
    if (log.enabled) log('committed %s: %d objects', idToHex(tid), oids.length)
    onTid?.(tid)
    for (const l of [...this.#listeners]) l.invalidate(tid, oids)
    return tid
  }

  restore(t: TransactionRecord): void {
    this.#checkWritable('restore')
    if (this.#commit !== null) throw new StorageTransactionError(`${this.getName()}: restore while a transaction is committing`)
    const stores = new Map<Oid, PendingStore>()
    for (const [oid, data] of restoredRecords(t)) stores.set(oid, { oldSerial: 0n, data })
    this.#wal?.beforeWrite()
    this.#guard('restore', () => this.#stmt.begin.run())
    try {
      this.#poll()
      const last = (this.#stmt.lastTid.get() as Row).tid as bigint
      const newest = last > this.#lastTid ? last : this.#lastTid
      if (t.tid <= newest) throw restoreNotAfterLast(this.getName(), t.tid, newest)
      this.#stmt.insertTransaction.run(t.tid, t.user, t.description, msgpack(t.extension))
      if (t.status === 'p') this.#statement('markPacked', () => this.#db.prepare('UPDATE transactions SET packed = 1 WHERE tid = ?')).run(t.tid)
      this.#insertRevisions(t.tid, stores)
      // Recorded as reserved: the next reservation looks at the largest oid stored too, but a
      // pack may take the restored objects away, and their oids must not come back.
      let top = -1n
      for (const oid of stores.keys()) if (oid > top) top = oid
      if (top >= 0n) {
        this.#statement('restoreOids', () => this.#db.prepare("UPDATE wendelin_meta SET value = max(value, ?) WHERE key = 'next_oid'")).run(top + 1n)
      }
      this.#guard('restore', () => this.#stmt.commit.run())
    } catch (error) {
      this.#rollback()
      throw this.#translate(error, 'restore')
    }
    this.#restoreCache()
    this.#wal?.afterCommit()
    this.#lastTid = t.tid
    const oids = [...stores.keys()]
    this.#dropOidBlockHolding(oids)
    this.#known.committed(t.tid, oids)
    if (log.enabled) log('restored %s: %d objects', idToHex(t.tid), oids.length)
    for (const l of [...this.#listeners]) l.invalidate(t.tid, oids)
  }

  /**
   * A restore (this instance's, or another's that a poll noticed) writes oids nobody reserved,
   * maybe inside the block this instance holds: the block is dropped then, or its new objects
   * would take those oids and conflict. (The next reservation starts above them: next_oid.)
   */
  #dropOidBlockHolding(oids: readonly Oid[]): void {
    for (const oid of oids) {
      if (oid >= this.#oidNext && oid < this.#oidEnd) {
        this.#oidNext = this.#oidEnd = 0n
        return
      }
    }
  }

  tpc_abort(txn: TransactionMetaData): void {
    if (this.#commit === null || this.#commit.txn !== txn) return
    if (this.#commit.tid !== null) this.#rollback()
    this.#commit = null
  }

  #rollback(): void {
    const voted = this.#commit?.tid
    if (this.#oidsReservedInVote && voted != null && this.#db.inTransaction) {
      // Oids were reserved after the vote and may be in use already: undo the voted rows only,
      // still holding the write lock, and commit the reservation.
      try {
        this.#db.prepare('DELETE FROM object_revisions WHERE tid = ?').run(voted)
        this.#db.prepare('DELETE FROM transactions WHERE tid = ?').run(voted)
        this.#db.exec('COMMIT')
      } catch (error) {
        log('keeping the oids reserved during an aborted commit failed: %s', (error as Error).message)
      }
    }
    this.#oidsReservedInVote = false
    if (this.#db.inTransaction) this.#db.exec('ROLLBACK')
    this.#restoreCache()
  }

  /**
   * The stored objects whose current serial (0n: none) is not the one their change was based
   * on, with it: from what the instance knows, else queried a batch of oids at a time.
   */
  #staleStores(stores: Map<Oid, PendingStore>): [Oid, Tid][] {
    const stale: [Oid, Tid][] = []
    const batch: Oid[] = []
    const flush = () => {
      if (batch.length === 0) return
      for (const [oid, tid] of this.#currentSerialsOf(batch.length).all(batch) as [bigint, bigint | null][]) {
        const current = tid ?? 0n
        if (current !== stores.get(oid)!.oldSerial) stale.push([oid, current])
      }
      batch.length = 0
    }
    const known = this.#known
    // forEach: a for-of over the entries made an array per entry (and a result object) here.
    stores.forEach((pending, oid) => {
      const serial = known.get(oid)
      if (serial === undefined) {
        batch.push(oid)
        if (batch.length === BATCH_ROWS) flush()
      } else if (serial !== pending.oldSerial) {
        stale.push([oid, serial])
      }
    })
    flush()
    return stale
  }

  /**
   * Write the revisions of a commit: small ones BATCH_ROWS rows per statement (the rest in one
   * more), big ones (over BATCH_RECORD_MAX bytes) one per statement.
   */
  #insertRevisions(tid: Tid, stores: Map<Oid, PendingStore>): void {
    const args: unknown[] = new Array<unknown>(BATCH_ROWS * 3)
    let n = 0
    stores.forEach((pending, oid) => {
      if (pending.data !== null && pending.data.length > BATCH_RECORD_MAX) {
        this.#insertBigRevision(oid, tid, pending.data)
        return
      }
      args[n++] = oid
      args[n++] = tid
      args[n++] = pending.data
      if (n === args.length) {
        this.#stmt.insertRevisions.run(args)
        n = 0
      }
    })
    if (n === 3) this.#stmt.insertRevision.run(args[0], args[1], args[2])
    else if (n > 0) this.#insertRevisionsOf(n / 3).run(args.slice(0, n))
  }

  /**
   * One big record's row. With the blob extension: inserted as zeroblob(length) and filled with
   * wendelin_blob_write, one copy into SQLite's pages where a bound blob is copied three times
   * (the bind, the row's record, its cells). A record that the page cache cannot hold twice
   * over raises the cache until the commit ends (#restoreCache): a smaller cache would spill its
   * zeros to the WAL before the write, and write them again after it.
   */
  #insertBigRevision(oid: Oid, tid: Tid, data: Uint8Array): void {
    const blobIO = this.#blobIO
    if (blobIO === null) {
      this.#stmt.insertRevision.run(oid, tid, data)
      return
    }
    const kib = Math.ceil((2 * data.length) / 1024) + 1024
    if (kib > this.#cacheKiB && kib > this.#cacheRaisedKiB) {
      this.#db.pragma(`cache_size = -${kib}`)
      this.#cacheRaisedKiB = kib
    }
    const rowid = this.#statement('insertZeros', () => this.#db.prepare(`${INSERT_REVISIONS} (?, ?, zeroblob(?))`)).run(oid, tid, data.length).lastInsertRowid
    const write = this.#statement('blobWrite', () => this.#db.prepare("SELECT wendelin_blob_write('object_revisions', 'data', ?, 0, 0)").pluck())
    const written = blobIO.with([data], () => write.get(rowid))
    if (Number(written) !== data.length) throw new POSError(`wendelin_blob_write wrote ${String(written)} of ${data.length} bytes`)
  }

  /** The page cache back to its size at open, after a commit that raised it (which lets its pages go). */
  #restoreCache(): void {
    if (this.#cacheRaisedKiB === 0) return
    this.#cacheRaisedKiB = 0
    this.#db.pragma(`cache_size = -${this.#cacheKiB}`)
  }

  /** INSERT of `rows` revisions (a commit's last, partial batch), prepared when first needed. */
  #insertRevisionsOf(rows: number): Database.Statement {
    return this.#statement(`insert:${rows}`, () => this.#db.prepare(`${INSERT_REVISIONS} ${Array(rows).fill('(?, ?, ?)').join(', ')}`))
  }

  #currentSerial(oid: Oid): Tid {
    return this.#known.get(oid) ?? (this.#stmt.currentSerial.get(oid) as bigint | undefined) ?? 0n
  }

  /** How many packs the file has seen (a key older files lack: none). */
  #readPackCount(): bigint {
    return (this.#stmt.packCount.get() as bigint | undefined) ?? 0n
  }

  // --- history, iteration, undo log ------------------------------------------------------------

  history(oid: Oid, size = 1): HistoryEntry[] {
    this.#checkOpen()
    const rows = this.#guard('history', () => this.#stmt.history.all(oid, this.#visibleBefore(), BigInt(size)) as Row[])
    if (rows.length === 0) throw new POSKeyError(oid)
    return rows.map((r) => ({
      tid: r.tid as bigint,
      time: tidToDate(r.tid as bigint),
      user: (r.user as string | null) ?? '',
      description: (r.description as string | null) ?? '',
      extension: r.extension == null ? {} : (msgunpack(toBytes(r.extension)) as Record<string, unknown>),
      size: Number(r.size ?? 0n),
    }))
  }

  /** Transactions from `start` to `stop`, read a page at a time (memory stays bounded). */
  *iterator(start: Tid = 0n, stop: Tid = MAX_TID): IterableIterator<TransactionRecord> {
    this.#checkOpen()
    let from = clampTid(start)
    const to = clampTid(stop) < this.#visibleBefore() ? clampTid(stop) : this.#visibleBefore() - 1n
    for (;;) {
      this.#checkOpen()
      const page = this.#guard('iterate', () => this.#stmt.transactionsFrom.all(from, to, 100n) as Row[])
      for (const t of page) {
        // Closed while the caller walked: say so rather than better-sqlite3's "not open".
        this.#checkOpen()
        const tid = t.tid as bigint
        const records: DataRecord[] = (this.#guard('iterate', () => this.#stmt.recordsOf.all(tid)) as Row[]).map((r) => ({
          oid: r.oid as bigint,
          tid,
          data: r.data === null ? null : toBytes(r.data),
        }))
        // The status read again after the records: a pack between the page and them removed
        // records of this transaction, and it must then say 'p' (a copy would let undo go back to
        // revisions it never got). Gone meanwhile: packed too.
        const packed = t.packed === 1n || this.#guard('iterate', () => this.#stmt.transactionPacked.get(tid)) !== 0n
        yield {
          tid,
          status: packed ? 'p' : ' ',
          user: t.user as string,
          description: t.description as string,
          extension: msgunpack(toBytes(t.extension)) as Record<string, unknown>,
          records,
        }
      }
      if (page.length < 100) return
      from = (page[page.length - 1]!.tid as bigint) + 1n
    }
  }

  supportsUndo(): boolean {
    return true
  }

  /** The newest transactions, newest first: candidates for `undo`. */
  undoLog(limit = 20): UndoEntry[] {
    this.#checkOpen()
    return (this.#guard('undoLog', () => this.#stmt.undoLog.all(this.#visibleBefore(), BigInt(limit))) as Row[]).map((r) => ({
      tid: r.tid as bigint,
      time: tidToDate(r.tid as bigint),
      user: r.user as string,
      description: r.description as string,
    }))
  }

  // --- pack ----------------------------------------------------------------------------------

  /**
   * Remove revisions that no snapshot at or after `packTime` needs; with `gc`, also objects that
   * are not reachable from the root. Works inside SQLite (temporary tables for the reachable set),
   * so memory stays bounded however large the database is. Readers at snapshots at or after
   * `packTime` are unaffected; other writers wait until it is done.
   */
  pack(packTime: Date | Tid, gc = true, options: PackOptions = {}): void {
    this.#checkWritable('pack')
    if (this.#commit !== null) throw new StorageTransactionError(`${this.getName()}: cannot pack while a transaction is committing`)
    const report = options.onProgress ?? (() => {})
    let packTid = typeof packTime === 'bigint' ? packTime : tidFromDate(packTime)
    const db = this.#db
    this.#guard('pack', () => db.exec('BEGIN IMMEDIATE'))
    try {
      const last = (this.#stmt.lastTid.get() as Row).tid as bigint
      if (packTid > last) packTid = last
      if (gc) this.#markReachable(packTid, report)
      report({ phase: 'removing revisions', done: 0 })
      // Revisions older than the newest one at packTid are not needed by any snapshot >= packTid.
      // Each object's newest row at packTid is found once, in one pass (rowid order is tid order
      // within an object): a subquery per row over the object's revisions made pack quadratic in
      // an object's revision count (6,000 revisions of a root: 2 s, under the write lock).
      db.exec('CREATE TEMP TABLE IF NOT EXISTS pack_newest (oid INTEGER PRIMARY KEY, newest INTEGER NOT NULL)')
      db.exec('DELETE FROM temp.pack_newest')
      db.prepare('INSERT INTO temp.pack_newest (oid, newest) SELECT oid, max(rowid) FROM object_revisions WHERE tid <= ? GROUP BY oid').run(packTid)
      const superseded = db
        .prepare('DELETE FROM object_revisions AS r WHERE r.tid < ? AND r.rowid < (SELECT n.newest FROM temp.pack_newest n WHERE n.oid = r.oid)')
        .run(packTid).changes
      db.exec('DROP TABLE temp.pack_newest')
      // A deletion (undone creation) at or before packTid needs no record.
      const deletions = db.prepare('DELETE FROM object_revisions WHERE data IS NULL AND tid <= ?').run(packTid).changes
      report({ phase: 'removing revisions', done: superseded + deletions })
      let unreachable = 0
      if (gc) {
        report({ phase: 'removing unreachable objects', done: 0 })
        unreachable = db
          .prepare('DELETE FROM object_revisions WHERE tid <= ? AND oid NOT IN (SELECT oid FROM temp.pack_reachable)')
          .run(packTid).changes
        db.exec('DROP TABLE temp.pack_reachable')
        report({ phase: 'removing unreachable objects', done: unreachable })
      }
      db.prepare('UPDATE transactions SET packed = 1 WHERE tid <= ?').run(packTid)
      // Tells every instance that current revisions may be gone (see tpc_vote).
      db.prepare("INSERT INTO wendelin_meta (key, value) VALUES ('pack_count', 1) ON CONFLICT (key) DO UPDATE SET value = value + 1").run()
      // The newest transaction stays even if it lost its records: its tid is what the next
      // commit (of any process, any instance opened later) must exceed, and what instances that
      // saw it poll from. Without it a clock at or behind it gave the next commit the same tid.
      db.prepare('DELETE FROM transactions WHERE tid <= ? AND tid < ? AND tid NOT IN (SELECT tid FROM object_revisions)').run(packTid, last)
      db.exec('COMMIT')
      this.#packCount = this.#readPackCount()
      this.#known.reset(this.#lastTid)
      log('packed %s to %s: %d superseded revisions, %d of unreachable objects', this.file, idToHex(packTid), superseded, unreachable)
    } catch (error) {
      this.#rollback()
      throw this.#translate(error, 'pack')
    }
    report({ phase: 'done', done: 0 })
  }

  /** Fill temp.pack_reachable with every oid reachable from the root, or written after packTid. */
  #markReachable(packTid: Tid, report: (p: PackProgress) => void): void {
    const db = this.#db
    db.exec('CREATE TEMP TABLE IF NOT EXISTS pack_reachable (oid INTEGER PRIMARY KEY)')
    db.exec('CREATE TEMP TABLE IF NOT EXISTS pack_frontier (oid INTEGER PRIMARY KEY)')
    db.exec('DELETE FROM temp.pack_reachable; DELETE FROM temp.pack_frontier')
    // No DISTINCT (the key ignores repeats): with it SQLite walked the whole oid index, reading each row's tid.
    const seed = db.prepare('INSERT OR IGNORE INTO temp.pack_frontier (oid) SELECT oid FROM object_revisions WHERE tid > ?')
    seed.run(packTid)
    db.exec('INSERT OR IGNORE INTO temp.pack_frontier (oid) VALUES (0)')
    const take = db.prepare('SELECT oid FROM temp.pack_frontier LIMIT 1000')
    const drop = db.prepare('DELETE FROM temp.pack_frontier WHERE oid = ?')
    const mark = db.prepare('INSERT OR IGNORE INTO temp.pack_reachable (oid) VALUES (?)')
    const push = db.prepare('INSERT OR IGNORE INTO temp.pack_frontier (oid) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM temp.pack_reachable WHERE oid = ?)')
    // The revisions a snapshot at packTid or later can see: the newest at packTid, and later ones.
    const visible = db.prepare(
      `SELECT data FROM object_revisions WHERE oid = ? AND data IS NOT NULL AND
         tid >= coalesce((SELECT max(tid) FROM object_revisions WHERE oid = ? AND tid <= ?), 0)`,
    )
    let visited = 0
    for (;;) {
      const batch = (take.all() as Row[]).map((r) => r.oid as bigint)
      if (batch.length === 0) break
      for (const oid of batch) {
        drop.run(oid)
        if (mark.run(oid).changes === 0) continue
        visited++
        for (const r of visible.all(oid, oid, packTid) as Row[]) {
          for (const ref of referencesIn(toBytes(r.data))) push.run(ref, ref)
        }
      }
      report({ phase: 'reachability', done: visited })
    }
    db.exec('DROP TABLE temp.pack_frontier')
  }

  // --- listeners, life ------------------------------------------------------------------------

  addListener(listener: InvalidationListener): void {
    this.#listeners.add(listener)
  }

  removeListener(listener: InvalidationListener): void {
    this.#listeners.delete(listener)
  }

  /** Check the whole file (SQLite's integrity_check); returns the problems found, none if healthy. */
  integrityCheck(): string[] {
    this.#checkOpen()
    const rows = this.#db.pragma('integrity_check') as Row[]
    const problems = rows.map((r) => String(r.integrity_check)).filter((s) => s !== 'ok')
    return problems
  }

  /** Checkpoints this instance asked of its checkpointer thread, and commits that waited for one. */
  checkpointStats(): { checkpoints: number; waits: number } {
    return this.#wal?.stats ?? { checkpoints: 0, waits: 0 }
  }

  close(): void {
    if (this.#closed) return
    if (this.#commit !== null && this.#commit.tid !== null) this.#rollback()
    this.#commit = null
    this.#closed = true
    this.#listeners.clear()
    this.#wal?.close() // before our connection, whose close copies back what remains
    if (!this.#readOnly) {
      // SQLite copies the WAL back into the file when its last connection closes, but only a
      // writable one can: a read-only instance that closes last (a loader worker's, whose close
      // comes after its file handle's) left the commits since the last checkpoint in the WAL
      // alone — the database file copied without it missed them. So copy back now what no
      // reader holds (PASSIVE: never waits).
      try {
        this.#db.pragma('wal_checkpoint(PASSIVE)')
      } catch (error) {
        log('checkpoint at close failed: %s', (error as Error).message)
      }
    }
    this.#db.close()
    // Our connection was maybe the last: SQLite then removed the WAL-index, whose descriptor can go.
    if (this.#wal !== null) releaseWalIndexes()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  // --- helpers -------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new ConnectionStateError(`storage ${this.getName()} is closed`)
  }

  #checkWritable(what: string): void {
    this.#checkOpen()
    if (this.#readOnly) throw new ReadOnlyError(`${what}: storage ${this.getName()} is read-only`)
  }

  #committing(txn: TransactionMetaData, what: string): Commit {
    this.#checkOpen()
    if (this.#commit === null) throw new StorageTransactionError(`${this.getName()}: ${what} without tpc_begin`)
    if (this.#commit.txn !== txn) throw new StorageTransactionError(`${this.getName()}: ${what} with a transaction that is not the committing one`)
    return this.#commit
  }

  /** Run a database operation, turning SQLite's corruption errors into a StorageFileError. */
  #guard<T>(what: string, fn: () => T): T {
    try {
      return fn()
    } catch (error) {
      throw this.#translate(error, what)
    }
  }

  #translate(error: unknown, what: string): unknown {
    const code = (error as { code?: unknown }).code
    if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT_INDEX') {
      return new StorageFileError(this.file, `the file is corrupt or not a database (${what}: ${(error as Error).message})`, { cause: error })
    }
    if (typeof code === 'string' && code.startsWith('SQLITE_BUSY')) {
      return new StorageBusyError(this.file, `${what}: another connection held the database's lock longer than busyTimeout (${this.#busyTimeout} ms), a long pack say; try again`, code, { cause: error })
    }
    return error
  }

  #fileError(error: unknown, what: string): unknown {
    if (error instanceof StorageFileError) return error
    const translated = this.#translate(error, what)
    if (translated !== error) return translated
    const code = (error as { code?: unknown }).code
    if (typeof code === 'string' && code.startsWith('SQLITE_')) {
      return new StorageFileError(this.file, `${what}: ${(error as Error).message}`, { cause: error })
    }
    return error
  }
}

/** Loads the blob extension into a connection; null (logged) where it cannot. */
function loadBlobExtension(db: Database.Database): BlobIO | null {
  if (blobIO === null) return null
  try {
    db.loadExtension(blobIO.path)
    return blobIO
  } catch (error) {
    unavailable(`SQLite cannot load the extension ${blobIO.path} (${(error as Error).message})`)
    return null
  }
}

function checkRange(what: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`${what}: bad range [${offset}, ${length}]`)
  }
}

function toBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value
  throw new TypeError(`expected a BLOB, got ${typeof value}`)
}

registerStorageScheme('sqlite', (spec, options) => SQLiteStorage.open(spec, options.readOnly ? { readOnly: true } : {}))
