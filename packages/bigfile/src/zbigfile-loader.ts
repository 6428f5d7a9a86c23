// ZBigFileBlocks: the BigFile a ZBigFile handle maps. On the owning thread it stores blocks
// through the handle's ZBigFile (storeblk); in a loader worker (reopened from its spec) it reads
// blocks from the loader's own instance of the storage, at the handle's snapshot, with a
// historical connection, and reports which objects each block depended on.
import { DB, hexToId, idToHex, openStorage, type Connection, type Oid, type Storage } from '@wendelin/zodb'

import { BigFile, type BigFileSpec, type JsonValue, type LoadContext } from './bigfile.js'
import { loaderLog } from './log.js'
import { addon } from './native.js'
import { type BlockDeps, ZBigFile, encodeReport, lookupBlock } from './zbigfile.js'

export interface ZBigFileBlocksArgs {
  /** Storage spec another thread can open (specForAnotherThread). */
  storage: string
  /** The ZBigFile's oid, hex. */
  oid: string
  blksize: number
}

/** Blocks fetched ahead of a sequential reader, beyond the one it reads (2 MiB each, usually). */
const FETCH_AHEAD = 2

/**
 * One storage and database per storage spec in a loader worker, shared by the handles over it
 * and closed when the last of them closes.
 */
const databases = new Map<string, { db: Promise<DB>; users: number }>()

function databaseFor(spec: string): Promise<DB> {
  let entry = databases.get(spec)
  if (!entry) {
    const db = openStorage(spec, { readOnly: true }).then((s: Storage) => new DB(s, { cacheSize: 2000 }))
    entry = { db, users: 0 }
    db.catch(() => databases.delete(spec))
    databases.set(spec, entry)
  }
  entry.users++
  return entry.db
}

function releaseDatabase(spec: string): void {
  const entry = databases.get(spec)
  if (!entry || --entry.users > 0) return
  databases.delete(spec)
  entry.db.then(
    (db) => db.close(),
    () => {},
  )
}

/**
 * Fills `dest` with block `blk` of ZBigFile `oid` as historical connection `conn` (at the
 * snapshot a load reads) shows it, and returns what the block depended on: how loaders read
 * blocks, and how a handle's owning thread reads them itself while no loader serves yet
 * (ZBigFileH, through a historical connection of its own: never its live connection, whose
 * objects may hold this transaction's changes, savepoints included, or a newer snapshot).
 * `beforeRead` is given the file once it is loaded, before the block is looked up and read.
 */
export function readBlockAt(conn: Connection, oid: Oid, blk: number, dest: Uint8Array, describe: string, beforeRead?: (zfile: ZBigFile) => void): BlockDeps {
  // Never committed yet is snapshot 0, which reads holes without a connection: here the file
  // exists, and a POSKeyError is a record missing (a damaged database), not a new file — it
  // was taken for one, and every page read as zeros. (A file created after the snapshot would
  // be a ReadConflictError of the historical connection.)
  const zfile = conn.get(oid) as ZBigFile
  void zfile.blksize // load it
  if (!(zfile instanceof ZBigFile)) throw new TypeError(`${describe}: object 0x${idToHex(oid)} is not a ZBigFile`)
  beforeRead?.(zfile)
  const { zblk, deps } = lookupBlock(zfile, blk)
  if (zblk === null) dest.fill(0)
  else if (!zblk.loadFrom(conn.db.storage, conn.before, dest)) {
    zblk.release() // the bytes are in the page now: do not keep a second copy in the cache
  }
  return deps
}

/**
 * On a storage that prefetches (the network client): asks for the records of block `blk` of
 * `zfile` (loaded through `conn`) and of the `ahead` blocks after it, each in a request of its
 * own, before `blk` is read (readBlockAt's `beforeRead`) — how a loader reads a sequential
 * reader's blocks. The server then reads and sends block N+1 while the loader copies block N
 * and the reader uses it, instead of each block's round trip starting when the one before is
 * done (ZBigArray cold read through the server, this alone: 224-313 -> 312-413 MB/s). Asking
 * again for a record cached or on its way costs nothing (the client skips it); holes are
 * skipped. Never throws: the read itself meets and reports what went wrong.
 */
export function fetchBlocksAhead(conn: Connection, zfile: ZBigFile, blk: number, ahead: number): void {
  const storage = conn.db.storage
  if (typeof storage.prefetch !== 'function') return
  try {
    for (let next = blk; next <= blk + ahead; next++) {
      const zblk = zfile.blktab.get(next)?._p_oid
      if (zblk === undefined || zblk === null) continue
      const block = next
      storage.prefetch([zblk], conn.before).catch((e: unknown) => loaderLog('ZBigFile 0x%s: prefetch of block %d failed: %s', idToHex(zfile._p_oid ?? 0n), block, (e as Error).message))
    }
  } catch (e) {
    loaderLog('ZBigFile 0x%s: no readahead from block %d: %s', idToHex(zfile._p_oid ?? 0n), blk, (e as Error).message)
  }
}

export class ZBigFileBlocks extends BigFile {
  readonly blksize: number
  readonly args: ZBigFileBlocksArgs
  /** Owning thread only: where storeblk writes. */
  private readonly zfile: ZBigFile | null
  // Loader side: the historical connection of the current snapshot.
  private db: DB | null = null
  private dbOpening: Promise<DB> | null = null
  private conn: Connection | null = null
  private connSnapshot = -1n
  /** The block this loader read last (readahead: a sequential reader's next blocks). */
  private lastBlk = -1

  constructor(args: ZBigFileBlocksArgs, zfile: ZBigFile | null = null) {
    super()
    this.args = args
    this.blksize = args.blksize
    this.zfile = zfile
  }

  static fromSpec(args: JsonValue): ZBigFileBlocks {
    return new ZBigFileBlocks(args as unknown as ZBigFileBlocksArgs)
  }

  spec(): BigFileSpec {
    return { module: import.meta.url, export: 'ZBigFileBlocks', args: this.args as unknown as JsonValue }
  }

  override describe(): string {
    return `ZBigFile oid 0x${this.args.oid} in ${this.args.storage}`
  }

  get oid(): Oid {
    return hexToId(this.args.oid)
  }

  storeblk(blk: number, src: Uint8Array): void {
    if (!this.zfile) throw new Error('storeblk: this ZBigFile instance is a loader\'s (read-only)')
    this.zfile.storeblk(blk, src)
  }

  loadblk(blk: number, dest: Uint8Array, ctx?: LoadContext): Uint8Array | Promise<Uint8Array> {
    const snapshot = ctx ? addon.filehSnapshot(ctx.filehId) : undefined
    if (snapshot === undefined) throw new Error(`${this.describe()}: loadblk without a file handle`)
    if (snapshot === 0n) {
      // Nothing was ever committed: every block is a hole (no storage needed).
      dest.fill(0)
      return encodeReport(0n, { path: [this.oid], zblk: null })
    }
    if (this.db === null) return this.database().then(() => this.loadAt(snapshot, blk, dest))
    return this.loadAt(snapshot, blk, dest)
  }

  /** In a loader, when the handle opens: the storage and a connection at its snapshot. */
  override warm(ctx: LoadContext): Promise<void> {
    return this.database().then(() => {
      const snapshot = addon.filehSnapshot(ctx.filehId)
      // Loads compare the snapshot again: a stale one here costs a reopen, never a wrong read.
      if (snapshot !== undefined && snapshot !== 0n && this.db !== null) this.connectionAt(snapshot)
    })
  }

  /** The loader's database over the storage (shared by the handles of this worker). */
  private database(): Promise<DB> {
    if (this.dbOpening === null) {
      const opening = databaseFor(this.args.storage)
      this.dbOpening = opening
      opening.then(
        (db) => {
          if (this.dbOpening === opening) this.db = db
        },
        () => {
          if (this.dbOpening === opening) this.dbOpening = null // not cached: the next load tries again
        },
      )
    }
    return this.dbOpening
  }

  private connectionAt(snapshot: bigint): Connection {
    if (this.conn === null || this.connSnapshot !== snapshot) {
      this.conn?.close()
      this.conn = this.db!.open({ before: snapshot + 1n })
      this.connSnapshot = snapshot
    }
    return this.conn
  }

  private loadAt(snapshot: bigint, blk: number, dest: Uint8Array): Uint8Array {
    const conn = this.connectionAt(snapshot)
    const sequential = blk === this.lastBlk + 1
    this.lastBlk = blk
    // One loader only: several keep as many blocks on their way already, and one's readahead
    // would fetch blocks the others then load too (each loader has its own client and cache).
    const ahead = sequential && addon.loaderCount() <= 1 ? (zfile: ZBigFile) => fetchBlocksAhead(conn, zfile, blk, FETCH_AHEAD) : undefined
    return encodeReport(snapshot, readBlockAt(conn, this.oid, blk, dest, this.describe(), ahead))
  }

  override close(): void {
    this.conn?.close()
    this.conn = null
    this.connSnapshot = -1n
    if (this.dbOpening !== null) {
      this.db = null
      this.dbOpening = null
      releaseDatabase(this.args.storage)
    }
  }
}
