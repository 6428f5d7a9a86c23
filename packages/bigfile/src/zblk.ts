// Block objects of a ZBigFile: how one block's bytes are kept in the database.
//
//   ZBlk0  one object holding the block, trailing zeros trimmed. Reading a block is one
//          record; changing one byte rewrites the whole block.
//   ZBlk1  the block cut into 4 KiB chunks, each a ZData object in an integer B-tree keyed by
//          chunk number. Only changed chunks are rewritten; all-zero chunks are not stored.
//          Any change also touches the ZBlk1 object itself (a tiny record), so that "this
//          block changed" is always a change of the block object: invalidation needs to look
//          at one oid per block, whatever the chunk tree did.
//
// The 'auto' choice (see chooseFormat) stores a block as ZBlk1 when at most a quarter of its
// chunks differ from what is stored (small changes, small appends) and as ZBlk0 otherwise
// (blocks filled or rewritten in bulk). Measured in bench/zbigfile.bench.js: an 8-byte change
// commits ~12x faster as ZBlk1 and grows the database by ~4.8 KB instead of 2 MiB; a bulk
// write runs at raw-blob speed as ZBlk0 and slower as ZBlk1 (512 records per block).
import { IOBTree } from '@wendelin/btrees'
import { GHOST, OWN_RECORD, Persistent, bytesRecord, bytesRecordPrefix, decodeRaw, registerClass, type Oid, type Storage, type Tid } from '@wendelin/zodb'


export const CHUNK_SIZE = 4096

export type ZBlkFormat = 'ZBlk0' | 'ZBlk1'
export type ZBigFileFormat = ZBlkFormat | 'auto'
export const ZBLK_FORMATS: readonly ZBigFileFormat[] = ['ZBlk0', 'ZBlk1', 'auto']

/** Length of `data` without its trailing zero bytes. */
export function trimmedLength(data: Uint8Array): number {
  // Word-wise from the end: blocks are mostly either full or mostly zero.
  let n = data.length
  while (n > 0 && (n & 7) !== 0 && data[n - 1] === 0) n--
  if ((n & 7) === 0 && data.byteOffset % 8 === 0) {
    const words = new Float64Array(data.buffer, data.byteOffset, n >>> 3)
    let w = words.length
    // Float64 compare: 0 and -0 both compare equal to 0; -0 has a non-zero byte, so check bits.
    while (w > 0 && words[w - 1] === 0 && !Object.is(words[w - 1], -0)) w--
    n = w * 8
  }
  while (n > 0 && data[n - 1] === 0) n--
  return n
}

function isZero(data: Uint8Array): boolean {
  return trimmedLength(data) === 0
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}

/**
 * A record made of `prefix` followed by the first `n` bytes of the page being stored, without
 * copying the page (FileH.frameRecord), or null where that cannot be done. Its bytes are the
 * page's only until the commit that stores it ends: the block object viewing them must be
 * released then (ZBigFileH does, at its boundary; see isPageRecord).
 */
export type PageRecord = (prefix: Uint8Array, n: number) => Uint8Array | null

/** A block object: fills a block from the database, or takes a block's new bytes. */
export abstract class ZBlk extends Persistent {
  /** Fills all of `dest` (one block) with the block's bytes. */
  abstract loadInto(dest: Uint8Array): void
  /**
   * Stores `src` (one block) as the block's new content. `differs` (optional): per chunk, 0
   * when it is known to equal what this block stores. `overPage` (optional, ZBlk0 only): gives
   * the record over the page `src` views (see PageRecord) instead of a copy.
   */
  abstract storeFrom(src: Uint8Array, differs?: Uint8Array, overPage?: PageRecord): void
  abstract get format(): ZBlkFormat
  /**
   * Fills `dest` with the block's bytes as of the snapshot before `before` in `storage` (the
   * storage and snapshot of this object's connection). Returns true when it read them without
   * loading the object (which then stays a ghost), false when it loaded the object.
   */
  loadFrom(storage: Storage, before: Tid, dest: Uint8Array): boolean {
    void storage
    void before
    this.loadInto(dest)
    return false
  }
  /** Drops the loaded bytes (the object becomes a ghost) when nothing changed them. */
  release(): void {
    this._p_deactivate()
  }
  /**
   * The file replaced this block object with another (a change of format): it is changed too,
   * with a small record, so that a transaction that changed it concurrently conflicts with the
   * replacement, in either commit order, instead of one of the two writes being lost.
   */
  abstract retire(): void
}

const ZBLK0_CLASS = 'wendelin.bigfile.ZBlk0'

/**
 * The bytes of a record of `className` whose state is `{data: <Uint8Array or Buffer>}`, as a
 * view into `record` (no copy); null for anything else. (Worth it for 2 MiB ZBlk0 records; for
 * 4 KiB ZData chunks msgpackr's decoding costs more than the object path saves: measured 8.2
 * against 7.0 ms per ZBlk1 block.)
 */
function recordBytes(record: Uint8Array, className: string): Uint8Array | null {
  let raw
  try {
    raw = decodeRaw(record)
  } catch {
    return null
  }
  if (raw.className !== className || !(raw.wire instanceof Map) || raw.wire.size !== 1) return null
  const data = raw.wire.get('data') as { tag?: unknown; value?: unknown } | null | undefined
  // tag 8: a typed array, [kind, bytes] (kind 0: Buffer, 1: Uint8Array)
  if (data === undefined || data === null || data.tag !== 8 || !Array.isArray(data.value)) return null
  const [kind, bytes] = data.value as [unknown, unknown]
  if ((kind !== 0 && kind !== 1) || !(bytes instanceof Uint8Array)) return null
  return bytes
}

/** `dest` := the trimmed block `bytes` followed by zeros (bytes beyond `dest` are cut off). */
function fillPadded(dest: Uint8Array, bytes: Uint8Array): void {
  dest.set(bytes.length <= dest.length ? bytes : bytes.subarray(0, dest.length))
  if (bytes.length < dest.length) dest.fill(0, bytes.length)
}

/** The bytes of persistent `obj` (a ghost holding `{data}`) read from its record, or null. */
function ghostBytes(obj: Persistent, storage: Storage, before: Tid, className: string): Uint8Array | null {
  if (obj._p_state !== GHOST || obj._p_oid === null) return null
  const rev = storage.loadBefore(obj._p_oid, before)
  return rev === null ? null : recordBytes(rev.data, className)
}

export class ZBlk0 extends ZBlk {
  /**
   * The block's bytes without trailing zeros. Replaced, never changed in place: after storeFrom
   * it views the record handed to the storage, which may keep it — or, stored by a handle's
   * commit on a storage that copies records, the page itself (see PageRecord), valid only until
   * that commit ends, when the handle makes this object a ghost again.
   */
  data: Uint8Array = new Uint8Array(0)

  get format(): ZBlkFormat {
    return 'ZBlk0'
  }

  retire(): void {
    this.data = new Uint8Array(0) // nothing reads it any more: no need to write the block again
  }

  loadInto(dest: Uint8Array): void {
    fillPadded(dest, this.data)
  }

  /**
   * A ghost is filled straight from its record: the payload is copied once, from the storage's
   * buffer into `dest`, instead of being decoded into a fresh array first (a copy into fresh
   * memory) and copied again: a loader fills pages a quarter faster in one thread (1.7 -> 2.2 GB/s).
   */
  override loadFrom(storage: Storage, before: Tid, dest: Uint8Array): boolean {
    if (this._p_state === GHOST && this._p_oid !== null && readInto(storage, this._p_oid, before, dest)) return true
    const bytes = ghostBytes(this, storage, before, ZBLK0_CLASS)
    if (bytes === null) return super.loadFrom(storage, before, dest)
    fillPadded(dest, bytes)
    return true
  }

  /**
   * The bytes a ZBlk0 record holds, as a view into `record` (no copy), or null when the record
   * is not the plain ZBlk0 state this class writes (it is then loaded as an object).
   */
  static recordBytes(record: Uint8Array): Uint8Array | null {
    return recordBytes(record, ZBLK0_CLASS)
  }

  /**
   * The block's bytes are copied once, from the page into the record the commit stores (see
   * OWN_RECORD): `data` views them there. Copying them into an array of their own and then into
   * the record touched twice as much fresh memory, whose page faults were most of a bulk
   * commit's time (W-ARR write: 558k faults for 512 MiB).
   */
  storeFrom(src: Uint8Array, differs?: Uint8Array, overPage?: PageRecord): void {
    void differs
    const n = trimmedLength(src)
    if (this._p_oid !== null && sameBytes(this.data, src.subarray(0, n))) return // unchanged: no new revision
    const over = overPage?.(bytesRecordPrefix(ZBLK0_CLASS, 'data', n), n) ?? null
    if (over !== null) {
      // The record over the page itself: no copy of the block at all.
      const bytes = over.subarray(over.length - n)
      pageRecords.add(bytes)
      ownRecords.set(bytes, over)
      this.data = bytes
      return
    }
    const { record, bytes } = bytesRecord(ZBLK0_CLASS, 'data', n)
    bytes.set(src.subarray(0, n))
    ownRecords.set(bytes, record)
    this.data = bytes
  }

  /**
   * Reads bytes [at, at + dest.length) of the block of ghost ZBlk0 `oid` as of the snapshot
   * before `before`, with a range read of its record (the header and the range only). False,
   * `dest` unchanged, when the storage cannot, or the record is not the plain ZBlk0 state with
   * its bytes in a bin 32 (blocks of under 64 KiB of data: loaded whole anyway).
   */
  static readRange(storage: Storage, oid: Oid, before: Tid, at: number, dest: Uint8Array): boolean {
    if (storage.loadBeforeRanges === undefined) return false
    const prefix = zblk0Prefix()
    const parts = storage.loadBeforeRanges(oid, before, [
      [0, prefix.length],
      [prefix.length + at, dest.length],
    ])
    if (parts === null) return false
    const [head, range] = parts as [Uint8Array, Uint8Array]
    const n = dataLength(head)
    if (n === null) return false
    const got = Math.max(0, Math.min(range.length, n - at))
    dest.set(range.subarray(0, got))
    dest.fill(0, got) // past the trimmed data: zeros
    return true
  }

  /** The record storeFrom wrote, while the state is still just the `data` it wrote. */
  [OWN_RECORD](className: string): Uint8Array | null {
    if (className !== ZBLK0_CLASS) return null
    const state = this._p_getState()
    let keys = 0
    for (const _ in state) keys++
    return keys === 1 ? (ownRecords.get(state.data as Uint8Array) ?? null) : null
  }
}

/** A ZBlk0 record's bytes before its data when that is a bin 32 (its 4 length bytes last). */
let zblk0PrefixBytes: Uint8Array | null = null
function zblk0Prefix(): Uint8Array {
  if (zblk0PrefixBytes === null) {
    const n = 0x10000
    const { record } = bytesRecord(ZBLK0_CLASS, 'data', n)
    zblk0PrefixBytes = record.slice(0, record.length - n)
  }
  return zblk0PrefixBytes
}

/**
 * The length of the data of a ZBlk0 record whose first bytes are `head`, when those are the
 * class name, state and tag as storeFrom's records (and the encoder's) write them, then bin 32's
 * marker and its length (the trimmed block's); null for anything else.
 */
function dataLength(head: Uint8Array): number | null {
  const prefix = zblk0Prefix()
  const fixed = prefix.length - 4
  if (head.length !== prefix.length || Buffer.compare(head.subarray(0, fixed), prefix.subarray(0, fixed)) !== 0) return null
  return new DataView(head.buffer, head.byteOffset).getUint32(fixed)
}

/** Header bytes of a block being read into a page (see readInto). */
let headScratch: Uint8Array | null = null

/**
 * Fills `dest` with the block of ghost ZBlk0 `oid` as of the snapshot before `before`, its
 * data read by the storage straight into `dest` (loadBeforeInto: no copy of the 2 MiB record
 * in between). False when the storage cannot, or the record is not the plain ZBlk0 state with
 * its bytes in a bin 32, or is missing: `dest` is then garbage, for the caller to fill.
 */
function readInto(storage: Storage, oid: Oid, before: Tid, dest: Uint8Array): boolean {
  if (storage.loadBeforeInto === undefined) return false
  const prefix = zblk0Prefix()
  const head = (headScratch ??= new Uint8Array(prefix.length))
  const rec = storage.loadBeforeInto(oid, before, [
    [0, head],
    [prefix.length, dest],
  ])
  if (rec === null || rec.length < prefix.length) return false
  const n = dataLength(head)
  if (n === null || rec.length !== prefix.length + n) return false
  if (n < dest.length) dest.fill(0, n) // trimmed: zeros past its end
  return true
}

/** ZBlk0 data that views a page being stored (see PageRecord). */
const pageRecords = new WeakSet<Uint8Array>()

/** Whether `data` (a ZBlk0's) views the page it was stored from (see PageRecord). */
export function isPageRecord(data: Uint8Array): boolean {
  return pageRecords.has(data)
}

/** ZBlk0 data written by storeFrom → the record it is the tail of. */
const ownRecords = new WeakMap<Uint8Array, Uint8Array>()

/** One 4 KiB chunk of a ZBlk1 block. */
export class ZData extends Persistent {
  data: Uint8Array = new Uint8Array(0)
}

export class ZBlk1 extends ZBlk {
  /** Chunk number → chunk; missing chunks are zeros. */
  chunktab: IOBTree<ZData> = new IOBTree<ZData>()
  /** Bumped on every change, so that a changed block is a changed ZBlk1 record. */
  version = 0

  get format(): ZBlkFormat {
    return 'ZBlk1'
  }

  retire(): void {
    this.version = this.version + 1 // its chunks stay as they are
  }

  loadInto(dest: Uint8Array): void {
    dest.fill(0)
    for (const [i, chunk] of this.chunktab.entries()) {
      const at = i * CHUNK_SIZE
      if (at >= dest.length) break
      const data = chunk.data
      dest.set(data.length <= dest.length - at ? data : data.subarray(0, dest.length - at), at)
    }
  }

  storeFrom(src: Uint8Array, differs?: Uint8Array): void {
    const chunktab = this.chunktab
    let changed = false
    const nchunks = Math.ceil(src.length / CHUNK_SIZE)
    for (let i = 0; i < nchunks; i++) {
      if (differs !== undefined && differs[i] === 0) continue // compared already: unchanged
      const bytes = src.subarray(i * CHUNK_SIZE, Math.min(src.length, (i + 1) * CHUNK_SIZE))
      const n = trimmedLength(bytes)
      const old = chunktab.get(i)
      if (n === 0) {
        if (old !== undefined) {
          chunktab.delete(i)
          changed = true
        }
        continue
      }
      if (old !== undefined) {
        if (sameBytes(old.data, bytes.subarray(0, n))) continue
        old.data = bytes.slice(0, n) // the chunk keeps its oid: one record rewritten
      } else {
        const chunk = new ZData()
        chunk.data = bytes.slice(0, n)
        chunktab.set(i, chunk)
      }
      changed = true
    }
    // Chunks past the block (a smaller block size is never used, but be exact).
    for (const i of [...chunktab.keys(nchunks)]) {
      chunktab.delete(i)
      changed = true
    }
    if (changed) this.version = this.version + 1
  }

  override release(): void {
    if (this._p_state !== 0 /* UPTODATE */) return
    for (const chunk of this.chunktab.values()) chunk._p_deactivate()
    this._p_deactivate()
  }

  /** How many chunks are stored (all-zero chunks are not). */
  chunkCount(): number {
    let n = 0
    for (const _ of this.chunktab.keys()) n++
    return n
  }
}

/**
 * Of the chunks of `src`, how many differ from what `old` holds (a hole holds zeros), and how
 * many there are. Loads the old block's content in the caller's connection.
 */
export function changedChunks(old: ZBlk | null, src: Uint8Array): { changed: number; total: number; differs: Uint8Array } {
  const total = Math.ceil(src.length / CHUNK_SIZE)
  const differs = new Uint8Array(total)
  let changed = 0
  if (old === null) {
    for (let i = 0; i < total; i++)
      if (!isZero(src.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE))) {
        differs[i] = 1
        changed++
      }
    return { changed, total, differs }
  }
  if (old instanceof ZBlk1) {
    const chunktab = old.chunktab
    for (let i = 0; i < total; i++) {
      const bytes = src.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE)
      const n = trimmedLength(bytes)
      const chunk = chunktab.get(i)
      if (chunk === undefined ? n !== 0 : !sameBytes(chunk.data, bytes.subarray(0, n))) {
        differs[i] = 1
        changed++
      }
    }
    return { changed, total, differs }
  }
  const data = (old as ZBlk0).data
  for (let i = 0; i < total; i++) {
    const start = i * CHUNK_SIZE
    const a = src.subarray(start, start + CHUNK_SIZE)
    const b = data.subarray(Math.min(start, data.length), Math.min(data.length, start + a.length))
    // Equal when a starts with b and the rest of a is zeros (the record is trimmed).
    if (!(sameBytes(a.subarray(0, b.length), b) && isZero(a.subarray(b.length)))) {
      differs[i] = 1
      changed++
    }
  }
  return { changed, total, differs }
}

/** The 'auto' heuristic: ZBlk1 when at most a quarter of the chunks change, else ZBlk0. */
export const AUTO_ZBLK1_MAX_CHANGED_FRACTION = 0.25

export function chooseFormat(old: ZBlk | null, src: Uint8Array): ZBlkFormat {
  return choose(old, src).format
}

/** chooseFormat, with which chunks differ from the stored block. @internal */
export function choose(old: ZBlk | null, src: Uint8Array): { format: ZBlkFormat; differs: Uint8Array } {
  const { changed, total, differs } = changedChunks(old, src)
  return { format: changed <= total * AUTO_ZBLK1_MAX_CHANGED_FRACTION ? 'ZBlk1' : 'ZBlk0', differs }
}

registerClass(ZBLK0_CLASS, ZBlk0)
registerClass('wendelin.bigfile.ZBlk1', ZBlk1)
registerClass('wendelin.bigfile.ZData', ZData)
