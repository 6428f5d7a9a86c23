// ZBigArray: a BigArray stored in the database (after wendelin.core's bigarray/array_zodb.py).
// The persistent object keeps the shape, dtype and order; its data is a ZBigFile it owns. The
// file's handle is opened lazily (or with za.open({ram})) and follows the transactions of the
// array's connection: data and shape change together at commit, abort throws both away, and a
// change made in another connection is seen at the next transaction boundary.
import type { NdArray } from 'ndarray'
import type ndarray from 'ndarray'
import { ZBigFile, defaultRAM, DEFAULT_PAGE_SIZE, type RAM, type ZBigFileFormat, type ZBigFileH } from '@wendelin/bigfile'
import { Connection, ConnectionStateError, Persistent, ReadOnlyHistoryError, idToHex, registerClass } from '@wendelin/zodb'

import {
  BigArray,
  appendTo,
  checkShape,
  zeroBytes,
  type Assignable,
  type BigArrayLike,
  type BigArrayView,
  type Chunk,
  type ChunksOptions,
  type Index,
  type Order,
  type ViewOf,
} from './bigarray.js'
import { type DType, type ValueOf, dtypeToJSON, itemsizeOf, parseDType } from './dtype.js'

export interface ZBigArrayOptions {
  order?: Order
  /** Block size of the ZBigFile = page size of the RAM that maps it (default 2 MiB). */
  blksize?: number
  /** Block format of the ZBigFile (default 'auto'). */
  format?: ZBigFileFormat
}

/** Handles of open arrays (kept outside the object: a ghost drops its attributes). */
const handles = new WeakMap<ZBigArray<DType>, ZBigFileH>()
/** BigArray views of the current shape, per array. */
const arrays = new WeakMap<ZBigArray<DType>, { key: string; array: BigArray<DType>; fh: ZBigFileH }>()
/**
 * Bytes truncated away in the current transaction: the handle may still load them from its
 * snapshot (the truncation is not committed yet), so growing over them writes zeros.
 */
const truncated = new WeakMap<ZBigArray<DType>, { txn: object; from: number; to: number }>()

function product(a: readonly number[]): number {
  let p = 1
  for (const x of a) p *= x
  return p
}

export class ZBigArray<D extends DType = DType> extends Persistent implements BigArrayLike<D> {
  /** Stored state (numpy-like names of wendelin.core's ZBigArray). */
  _shape: number[]
  _dtype: ReturnType<typeof dtypeToJSON>
  _order: Order
  zfile: ZBigFile

  constructor(shape: readonly number[], dtype: D, options: ZBigArrayOptions = {}) {
    super()
    const blksize = options.blksize ?? DEFAULT_PAGE_SIZE
    // validates shape, dtype, order and blksize the way a BigArray does
    const probe = new BigArray(shape, dtype, { blksize, mmap: () => { throw new Error('unreachable') } }, options.order ? { order: options.order } : {})
    this._shape = probe.shape
    this._dtype = dtypeToJSON(probe.dtype)
    this._order = probe.order
    this.zfile = new ZBigFile(blksize, options.format ? { format: options.format } : {})
  }

  /**
   * Opens the array's file handle with `ram` (its page size must be the blksize). Without it,
   * the first access opens one on the shared default RAM of that page size.
   */
  open(options: { ram?: RAM } = {}): ZBigFileH {
    const h = handles.get(this)
    if (h && !h.closed) {
      if (options.ram) throw new Error('ZBigArray.open: the array is open already; close() it first to use another RAM')
      return h
    }
    if (!(this._p_jar instanceof Connection)) throw new TypeError('ZBigArray: the array must belong to a connection first (store it in an object of the connection, or conn.add(array))')
    // Before the close callback below: a closed connection would keep it for its next user.
    if (!this._p_jar.opened) throw new ConnectionStateError('ZBigArray.open: the connection of the array is closed')
    const zfile = this.zfile
    if (zfile._p_jar === null) this._p_jar.add(zfile)
    // Before the handle's own callback: the page get/set keep mapped must not keep the handle
    // open past its connection (it closes with it when no mapping is left).
    this._p_jar.onCloseCallback(() => arrays.get(this)?.array.releaseMappings())
    const fh = zfile.open({ ram: options.ram ?? defaultRAM(zfile.blksize) })
    handles.set(this, fh)
    return fh
  }

  /** The open file handle (opened on first use). */
  get fileh(): ZBigFileH {
    return this.open()
  }

  /** Closes the file handle (views must be released first; commit or abort first). */
  close(): void {
    const h = handles.get(this)
    arrays.get(this)?.array.releaseMappings()
    arrays.delete(this)
    if (h && !h.closed) {
      h.close()
    }
    handles.delete(this)
  }

  [Symbol.dispose](): void {
    this.close()
  }


  get shape(): number[] {
    return [...this._shape]
  }
  get strides(): number[] {
    return arrayOf(this).strides
  }
  get ndim(): number {
    return this._shape.length
  }
  get size(): number {
    return product(this._shape)
  }
  get itemsize(): number {
    return itemsizeOf(parseDType(this._dtype))
  }
  get nbytes(): number {
    return this.size * this.itemsize
  }
  get dtype(): D {
    return parseDType(this._dtype) as D
  }
  /** 'C' or 'F' ('C' for a stored array without `_order`, as wendelin.core's older arrays). */
  get order(): Order {
    return this._order ?? 'C'
  }
  /** Length of the major axis (axis 0 in C order, the last axis in F order). */
  get length(): number {
    return this._shape[this.order === 'C' ? 0 : this._shape.length - 1]!
  }
  get blksize(): number {
    return this.zfile.blksize
  }

  slice(...index: Index[]): ViewOf<D> {
    return arrayOf(this).slice(...index)
  }
  view(...index: Index[]): BigArrayView<D> {
    return arrayOf(this).view(...index)
  }
  get(...index: number[]): ValueOf<D> {
    return arrayOf(this).get(...index)
  }
  set(...args: [...number[], ValueOf<D>]): void {
    refuseHistorical(this, 'set an element of')
    arrayOf(this).set(...args)
  }
  /** Unmaps the page(s) get/set keep mapped until the end of the current job. */
  releaseMappings(): void {
    arrays.get(this)?.array.releaseMappings()
  }
  assign(value: Assignable<D>, ...index: Index[]): void {
    refuseHistorical(this, 'assign to')
    arrayOf(this).assign(value, ...index)
  }
  chunks(options?: ChunksOptions): Generator<Chunk<D>, void, undefined> {
    return arrayOf(this).chunks(options)
  }
  toArray(options?: { maxBytes?: number }): ViewOf<D> {
    return arrayOf(this).toArray(options)
  }
  [Symbol.iterator](): Iterator<ValueOf<D> | ViewOf<D>> {
    return arrayOf(this)[Symbol.iterator]()
  }

  /**
   * Changes the major axis, in the current transaction. Shrinking truncates the file's blocks
   * past the new end (and zeroes the tail of the last one); growing reads as zeros.
   */
  resize(shape: readonly number[]): void {
    refuseHistorical(this, 'resize')
    const newShape = checkShape(shape)
    const array = arrayOf(this)
    array.releaseMappings()
    array._checkResize(newShape)
    const fh = this.fileh
    const bs = this.zfile.blksize
    const itemsize = array.itemsize
    const oldBytes = array.nbytes
    const newBytes = product(newShape) * itemsize
    const txn = currentTransaction(this)
    if (newBytes < oldBytes) {
      const nblocks = Math.ceil(newBytes / bs)
      const tailEnd = Math.min(oldBytes, nblocks * bs)
      if (tailEnd > newBytes) zeroBytes(fh, newBytes, tailEnd)
      this.zfile.truncate(nblocks)
      const oldBlocks = Math.ceil(oldBytes / bs)
      for (let pg = nblocks; pg < oldBlocks; pg++) if (fh.pageState(pg) !== 'empty') fh.fileh.invalidatePage(pg)
      const prev = truncated.get(this)
      const to = Math.max(oldBlocks * bs, prev && prev.txn === txn ? prev.to : 0)
      truncated.set(this, { txn, from: nblocks * bs, to })
    }
    this._shape = [...newShape]
    if (newBytes > oldBytes) {
      const t = truncated.get(this)
      if (t && t.txn === txn) {
        const from = Math.max(oldBytes, t.from)
        const to = Math.min(newBytes, t.to)
        if (to > from) zeroBytes(fh, from, to)
      }
    }
  }

  append(values: NdArray<ndarray.Data<number | bigint>> | ArrayLike<ValueOf<D>>): void {
    refuseHistorical(this, 'append to')
    appendTo(this, values)
  }


  override toString(): string {
    return `ZBigArray(shape=[${this._shape}], dtype=${JSON.stringify(this._dtype)}, order=${this._order})`
  }
}

registerClass('wendelin.bigarray.ZBigArray', ZBigArray)

// (Module functions rather than private methods: objects loaded from the database are made
// without running the constructor, so they have no private fields.)

/** The BigArray of the current state (the shape may change at any transaction boundary). */
function arrayOf<D extends DType>(za: ZBigArray<D>): BigArray<D> {
  const fh = za.fileh
  const key = za._shape.join(',')
  const cached = arrays.get(za)
  if (cached && cached.key === key && cached.fh === fh) return cached.array as BigArray<D>
  cached?.array.releaseMappings()
  const array = new BigArray(za._shape, parseDType(za._dtype) as D, fh, { order: za.order })
  arrays.set(za, { key, array, fh })
  return array
}

/**
 * A historical connection's objects cannot change (ZODB refuses at the change): neither can its
 * arrays. Checked before anything is written: the data pages would take the write silently and
 * show it, and the commit would fail only later.
 */
function refuseHistorical(za: ZBigArray<DType>, what: string): void {
  const jar = za._p_jar
  if (jar instanceof Connection && jar.historical) {
    throw new ReadOnlyHistoryError(`cannot ${what} ${za.toString()}: it was read by a historical connection (before 0x${idToHex(jar.before)})`)
  }
}

function currentTransaction(za: ZBigArray<DType>): object {
  const jar = za._p_jar
  if (!(jar instanceof Connection)) throw new TypeError('ZBigArray: the array must belong to a connection')
  return jar.transactionManager.get()
}
