// ZBigFile: a BigFile whose blocks live in the object database (after wendelin.core's
// bigfile/file_zodb.py).
//
//   zfile.blksize   bytes per block (= page size of the RAM a handle maps it with)
//   zfile.blktab    IOBTree: block number → ZBlk (ZBlk0 or ZBlk1); a missing block is a hole
//                   and reads as zeros
//   zfile.format    how blocks are stored: 'ZBlk0', 'ZBlk1' or 'auto' (see zblk.ts)
//
// Reading goes through a handle (zfile.open(), zbigfile-handle.ts): the handle's pages are
// loaded by loader workers at the handle's snapshot; dirty pages are stored back through
// storeblk at commit, as ZBlk objects of the handle's connection.
import { IOBTree, pathTo } from '@wendelin/btrees'
import { Persistent, registerClass, type Oid } from '@wendelin/zodb'

import { DEFAULT_PAGE_SIZE } from './ram.js'
import { ZBigFileH, type ZBigFileHOptions } from './zbigfile-handle.js'
import { ZBLK_FORMATS, ZBlk, ZBlk0, ZBlk1, choose, type PageRecord, type ZBigFileFormat } from './zblk.js'

export interface ZBigFileOptions {
  /** Block format of blocks written from now on (default 'auto'). */
  format?: ZBigFileFormat
}

export class ZBigFile extends Persistent {
  blksize: number
  blktab: IOBTree<ZBlk>
  format: ZBigFileFormat

  constructor(blksize: number = DEFAULT_PAGE_SIZE, options: ZBigFileOptions = {}) {
    super()
    if (!Number.isSafeInteger(blksize) || blksize <= 0) throw new RangeError('ZBigFile: blksize must be a positive integer')
    const format = options.format ?? 'auto'
    if (!ZBLK_FORMATS.includes(format)) throw new TypeError(`ZBigFile: unknown format ${String(format)} (ZBlk0, ZBlk1 or auto)`)
    this.blksize = blksize
    this.blktab = new IOBTree<ZBlk>()
    this.format = format
  }

  /**
   * Opens a handle: map pages with `fh.mmap(pgoffset, pglen)`; changes are committed and
   * invalidated with the transactions of the file's connection. Close it when done.
   */
  open(options?: ZBigFileHOptions): ZBigFileH {
    return new ZBigFileH(this, options)
  }

  /**
   * Stores `src` (one block) as block `blk` in the format the file asks for. A block stored
   * before in another format is replaced by a new block object holding the same data, and the
   * old object is retired (changed, emptied): a concurrent write of the block conflicts.
   */
  storeblk(blk: number, src: Uint8Array, overPage?: PageRecord): void {
    const blktab = this.blktab
    const old = blktab.get(blk) ?? null
    const auto = this.format === 'auto' ? choose(old, src) : null
    const format = auto !== null ? auto.format : this.format
    if (old !== null && old.format === format) {
      old.storeFrom(src, auto?.differs, overPage) // the comparison made to choose is not made again
      return
    }
    const zblk = format === 'ZBlk0' ? new ZBlk0() : new ZBlk1()
    zblk.storeFrom(src, old === null ? auto?.differs : undefined, overPage)
    blktab.set(blk, zblk)
    // Else a transaction writing this block into the old object (from its snapshot) would commit
    // beside this one, and whichever of the two came first would be lost.
    old?.retire()
  }

  /** Reads block `blk` into `dest` from this object's connection (zeros for a hole). */
  readblk(blk: number, dest: Uint8Array): void {
    const zblk = this.blktab.get(blk)
    if (zblk === undefined) dest.fill(0)
    else zblk.loadInto(dest)
  }

  /**
   * Never a ghost while handles are open (as wendelin.core's LivePersistent): cache
   * minimization leaves it alone, and an invalidation loads the new state at once.
   */
  override _p_deactivate(): void {
    if ((openHandleCount.get(this) ?? 0) > 0) return
    super._p_deactivate()
  }

  override _p_invalidate(): void {
    super._p_invalidate()
    if ((openHandleCount.get(this) ?? 0) > 0 && this._p_jar !== null && this._p_oid !== null) {
      try {
        this._p_activate()
      } catch {
        // the connection cannot load now (closing): it stays a ghost, loaded on next use
      }
    }
  }

  /** Makes the file `nblocks` blocks long: blocks at and past it become holes. */
  truncate(nblocks: number): void {
    const doomed = [...this.blktab.keys(nblocks)]
    for (const blk of doomed) this.blktab.delete(blk)
  }
}

registerClass('wendelin.bigfile.ZBigFile', ZBigFile)

/** Open handles per ZBigFile (zbigfile-handle.ts keeps it). @internal */
export const openHandleCount = new WeakMap<ZBigFile, number>()

/** What reading one block of a ZBigFile depends on. */
export interface BlockDeps {
  /** The zfile, the blktab's root, internal nodes and bucket on the way to the block. */
  path: Oid[]
  /** The block object, or null for a hole. */
  zblk: Oid | null
}

/** Looks block `blk` up: the block object (or null) and the oids the lookup read. */
export function lookupBlock(zfile: ZBigFile, blk: number): { zblk: ZBlk | null; deps: BlockDeps } {
  const blktab = zfile.blktab
  const path: Oid[] = [zfile._p_oid ?? -1n]
  for (const obj of pathTo(blktab, blk)) path.push(obj._p_oid ?? -1n)
  const zblk = blktab.get(blk) ?? null
  return { zblk, deps: { path, zblk: zblk === null ? null : (zblk._p_oid ?? -1n) } }
}

// A load report, as a loader hands it to the owning thread: 64-bit words
//   [snapshot, zblk oid + 1 (0: hole), path oids...]
export interface LoadReport extends BlockDeps {
  snapshot: bigint
}

export function encodeReport(snapshot: bigint, deps: BlockDeps): Uint8Array {
  const words = new BigUint64Array(2 + deps.path.length)
  words[0] = snapshot
  words[1] = deps.zblk === null ? 0n : BigInt.asUintN(64, deps.zblk + 1n)
  for (let i = 0; i < deps.path.length; i++) words[2 + i] = BigInt.asUintN(64, deps.path[i]!)
  return new Uint8Array(words.buffer)
}

export function decodeReport(bytes: Uint8Array): LoadReport {
  const copy = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice()
  const words = new BigUint64Array(copy.buffer, copy.byteOffset, copy.byteLength / 8)
  const path: Oid[] = []
  for (let i = 2; i < words.length; i++) path.push(words[i]!)
  return { snapshot: words[0]!, zblk: words[1] === 0n ? null : words[1]! - 1n, path }
}

