// BigArray: an N-dimensional array over the pages of a file handle, seen through scijs
// `ndarray` views (after wendelin.core's bigarray/__init__.py).
//
// The array's bytes are the file's bytes from 0 on, in C (row-major) or F (column-major) order.
// Nothing is mapped until asked for: A.slice(...) computes the byte range the selected elements
// span, maps just the pages covering it, and returns an ndarray whose strides walk that mapping.
// A mapping lives as long as its view (garbage collection unmaps it) or until released.
import ndarray from 'ndarray'
import type { NdArray } from 'ndarray'
import { MAX_MAPPING_BYTES, type Mapping } from '@wendelin/bigfile'

import {
  type AnyTypedArray,
  type DType,
  type RecordDType,
  type RecordValue,
  type ScalarDType,
  type TypedArrayOf,
  type ValueOf,
  dtypeName,
  isBigIntDType,
  itemsizeOf,
  parseDType,
  scalarSize,
  typedArrayCtor,
} from './dtype.js'

export type Order = 'C' | 'F'

/** What a BigArray maps its pages from: a FileH, or a ZBigFile handle. */
export interface BigArrayFileH {
  readonly blksize: number
  mmap(pgoffset: number, pglen: number): Mapping
  /**
   * Optional: reads bytes [offset, offset + dest.length) (within one page) without bringing the
   * page into memory, when the file can do that cheaply; false when it did not (ZBigFileH.peek).
   */
  peek?(offset: number, dest: Uint8Array): boolean
  /**
   * Optional: writes `src` at `offset` (within one page) without bringing the page into memory,
   * when the file can do that cheaply; false when it did not, changing nothing (ZBigFileH.poke).
   */
  poke?(offset: number, src: Uint8Array): boolean
  /**
   * Optional: the caller is done with pages `range` (FileH.leaveBehind), and how many pages
   * the file's RAM holds: chunks() leaves each window it released behind when the whole walk
   * is wider than that.
   */
  leaveBehind?(range: { pgoffset: number; pglen: number }): void
  readonly ramPages?: number
}

/** A slice of one axis, as Python's start:stop:step (negative values count from the end). */
export interface SliceSpec {
  start?: number | null
  stop?: number | null
  step?: number | null
}

/**
 * The index of one axis: an integer (the axis is dropped), null (the whole axis), a slice
 * object or a tuple [start, stop, step].
 */
export type Index = number | null | SliceSpec | readonly [(number | null)?, (number | null)?, (number | null)?]

/** The data of a record field's view: a typed array when aligned, else a DataView-backed array. */
export type FieldData<S extends ScalarDType> = S extends 'bigint64' | 'biguint64' ? ndarray.Data<bigint> : ndarray.Data<number>

/** The fields of a record view: one ndarray per field, over the same mapping. */
export interface RecordView<R extends RecordDType = RecordDType> {
  readonly shape: number[]
  readonly fields: { readonly [K in keyof R['fields']]: NdArray<FieldData<R['fields'][K]['dtype']>> }
}

/** What A.slice returns: an ndarray for scalar dtypes, field ndarrays for record dtypes. */
export type ViewOf<D extends DType> = D extends ScalarDType ? NdArray<TypedArrayOf<D>> : D extends RecordDType ? RecordView<D> : never

/** A view together with its mapping, released by `release()` or `using`. */
export interface BigArrayView<D extends DType> extends Disposable {
  readonly array: ViewOf<D>
  /** The mapping under the view (null for an empty view). */
  readonly mapping: Mapping | null
  release(): void
}

export interface Chunk<D extends DType> {
  /** The window covers [start, stop) of the major axis. */
  readonly start: number
  readonly stop: number
  readonly array: ViewOf<D>
}

export interface ChunksOptions {
  /** Bytes per window (default 64 MiB, rounded to whole major-axis rows, at least one row). */
  bytes?: number
  /** Rows of the major axis per window (instead of bytes). */
  rows?: number
}

/** Values assignable to a slice: a scalar (or a record), an ndarray, a typed array or a plain array. */
export type Assignable<D extends DType> = ValueOf<D> | NdArray<ndarray.Data<ValueOf<D> & (number | bigint)>> | ArrayLike<ValueOf<D>>

/** The largest copy toArray makes unless asked for more. */
export const DEFAULT_TO_ARRAY_MAX_BYTES = 1 << 30

interface AxisSel {
  start: number
  step: number
  count: number
  keep: boolean
}

/** Mappings behind views handed out, so that BigArray.release(view) can unmap them. */
const mappingOf = new WeakMap<object, Mapping>()

/** @internal */
export function checkShape(shape: readonly number[]): number[] {
  if (!Array.isArray(shape) || shape.length === 0) throw new TypeError('BigArray: shape must be a non-empty array of non-negative integers')
  for (const n of shape) if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`BigArray: shape ${JSON.stringify(shape)}: dimensions must be non-negative integers`)
  return [...shape]
}

/** @internal Checks the array's bytes can be addressed exactly (at most Number.MAX_SAFE_INTEGER). */
export function checkNBytes(shape: readonly number[], itemsize: number): number {
  const nbytes = product(shape) * itemsize
  if (!Number.isSafeInteger(nbytes)) throw new RangeError(`BigArray: shape [${shape}] of ${itemsize}-byte elements is too big: its ${nbytes} bytes exceed Number.MAX_SAFE_INTEGER`)
  return nbytes
}

function product(a: readonly number[]): number {
  let p = 1
  for (const x of a) p *= x
  return p
}

/** Byte strides of a contiguous array of `shape` in `order`. */
export function contiguousStrides(shape: readonly number[], itemsize: number, order: Order): number[] {
  const st = new Array<number>(shape.length)
  let s = itemsize
  if (order === 'C') {
    for (let k = shape.length - 1; k >= 0; k--) {
      st[k] = s
      s *= shape[k]!
    }
  } else {
    for (let k = 0; k < shape.length; k++) {
      st[k] = s
      s *= shape[k]!
    }
  }
  return st
}

function normalizeAxis(ix: Index | undefined, n: number, axis: number): AxisSel {
  if (ix === undefined || ix === null) return { start: 0, step: 1, count: n, keep: true }
  if (typeof ix === 'number') {
    if (!Number.isInteger(ix)) throw new TypeError(`BigArray: index ${ix} on axis ${axis} is not an integer`)
    const i = ix < 0 ? ix + n : ix
    if (i < 0 || i >= n) throw new RangeError(`BigArray: index ${ix} is out of bounds for axis ${axis} with size ${n}`)
    return { start: i, step: 1, count: 1, keep: false }
  }
  let start: number | null | undefined, stop: number | null | undefined, step: number | null | undefined
  if (Array.isArray(ix)) [start, stop, step] = ix as [number?, number?, number?]
  else ({ start, stop, step } = ix as SliceSpec)
  const st = step ?? 1
  if (!Number.isInteger(st) || st === 0) throw new RangeError(`BigArray: slice step on axis ${axis} must be a non-zero integer`)
  for (const v of [start, stop]) if (v !== null && v !== undefined && !Number.isInteger(v)) throw new TypeError(`BigArray: slice bound ${v} on axis ${axis} is not an integer`)
  let a: number, b: number, count: number
  if (st > 0) {
    a = start == null ? 0 : start < 0 ? Math.max(0, start + n) : Math.min(start, n)
    b = stop == null ? n : stop < 0 ? Math.max(0, stop + n) : Math.min(stop, n)
    count = b > a ? Math.ceil((b - a) / st) : 0
  } else {
    a = start == null ? n - 1 : start < 0 ? Math.max(-1, start + n) : Math.min(start, n - 1)
    b = stop == null ? -1 : stop < 0 ? Math.max(-1, stop + n) : Math.min(stop, n - 1)
    count = a > b ? Math.ceil((a - b) / -st) : 0
  }
  return { start: count > 0 ? a : 0, step: st, count, keep: true }
}

/** A DataView-backed array for record fields whose layout does not allow a typed view. */
class FieldArray<T extends number | bigint> implements ndarray.GenericArray<T> {
  readonly #dv: DataView
  readonly #get: (i: number) => T
  readonly #set: (i: number, v: T) => void
  constructor(buffer: ArrayBuffer, dtype: ScalarDType) {
    const dv = (this.#dv = new DataView(buffer))
    switch (dtype) {
      case 'int8': this.#get = (i) => dv.getInt8(i) as T; this.#set = (i, v) => dv.setInt8(i, v as number); break
      case 'uint8': this.#get = (i) => dv.getUint8(i) as T; this.#set = (i, v) => dv.setUint8(i, v as number); break
      case 'uint8-clamped': this.#get = (i) => dv.getUint8(i) as T; this.#set = (i, v) => dv.setUint8(i, clampUint8(v as number)); break
      case 'int16': this.#get = (i) => dv.getInt16(i, true) as T; this.#set = (i, v) => dv.setInt16(i, v as number, true); break
      case 'uint16': this.#get = (i) => dv.getUint16(i, true) as T; this.#set = (i, v) => dv.setUint16(i, v as number, true); break
      case 'int32': this.#get = (i) => dv.getInt32(i, true) as T; this.#set = (i, v) => dv.setInt32(i, v as number, true); break
      case 'uint32': this.#get = (i) => dv.getUint32(i, true) as T; this.#set = (i, v) => dv.setUint32(i, v as number, true); break
      case 'float32': this.#get = (i) => dv.getFloat32(i, true) as T; this.#set = (i, v) => dv.setFloat32(i, v as number, true); break
      case 'float64': this.#get = (i) => dv.getFloat64(i, true) as T; this.#set = (i, v) => dv.setFloat64(i, v as number, true); break
      case 'bigint64': this.#get = (i) => dv.getBigInt64(i, true) as T; this.#set = (i, v) => dv.setBigInt64(i, v as bigint, true); break
      case 'biguint64': this.#get = (i) => dv.getBigUint64(i, true) as T; this.#set = (i, v) => dv.setBigUint64(i, v as bigint, true); break
    }
  }
  get length(): number {
    return this.#dv.byteLength
  }
  get(i: number): T {
    return this.#get(i)
  }
  set(i: number, v: T): void {
    this.#set(i, v)
  }
}

/** Walks every index of `shape` in C order, calling fn with the running offsets of two strided layouts. */
function walk2(shape: readonly number[], aOff: number, aSt: readonly number[], bOff: number, bSt: readonly number[], fn: (a: number, b: number) => void): void {
  const nd = shape.length
  if (nd === 0) {
    fn(aOff, bOff)
    return
  }
  for (const n of shape) if (n === 0) return
  const idx = new Array<number>(nd).fill(0)
  const last = nd - 1
  const nLast = shape[last]!
  const asl = aSt[last]!
  const bsl = bSt[last]!
  for (;;) {
    let a = aOff
    let b = bOff
    for (let i = 0; i < nLast; i++, a += asl, b += bsl) fn(a, b)
    let k = last - 1
    while (k >= 0) {
      idx[k]!++
      aOff += aSt[k]!
      bOff += bSt[k]!
      if (idx[k]! < shape[k]!) break
      aOff -= aSt[k]! * shape[k]!
      bOff -= bSt[k]! * shape[k]!
      idx[k] = 0
      k--
    }
    if (k < 0) return
  }
}

function isNdArray(v: unknown): v is NdArray<ndarray.Data<number | bigint>> {
  return v !== null && typeof v === 'object' && Array.isArray((v as NdArray).shape) && Array.isArray((v as NdArray).stride) && typeof (v as NdArray).offset === 'number' && 'data' in (v as object)
}

function elementGetter(data: unknown): (i: number) => number | bigint {
  const g = data as { get?: (i: number) => number | bigint }
  if (typeof g.get === 'function' && !ArrayBuffer.isView(data)) return (i) => g.get!(i)
  const arr = data as ArrayLike<number | bigint>
  return (i) => arr[i]!
}

function elementSetter(data: unknown): (i: number, v: number | bigint) => void {
  const g = data as { set?: (i: number, v: number | bigint) => void }
  if (typeof g.set === 'function' && !ArrayBuffer.isView(data)) return (i, v) => g.set!(i, v)
  const arr = data as { [i: number]: number | bigint }
  return (i, v) => {
    arr[i] = v
  }
}

/**
 * Copies `src` (an ndarray, a typed array or plain array in C order of `dst`'s shape, or a
 * scalar) into the ndarray `dst`.
 */
export function assignInto(dst: NdArray<ndarray.Data<number | bigint>>, src: unknown): void {
  const set = elementSetter(dst.data)
  if (typeof src === 'number' || typeof src === 'bigint') {
    if (ArrayBuffer.isView(dst.data) && isContiguousC(dst.shape, dst.stride)) {
      const ta = dst.data as unknown as { fill(v: number | bigint, a: number, b: number): void }
      ta.fill(src, dst.offset, dst.offset + dst.size)
      return
    }
    walk2(dst.shape, dst.offset, dst.stride, 0, dst.shape.map(() => 0), (a) => set(a, src))
    return
  }
  if (isNdArray(src)) {
    if (src.shape.length !== dst.shape.length || src.shape.some((n, k) => n !== dst.shape[k])) {
      throw new RangeError(`BigArray: cannot assign an array of shape [${src.shape}] to a view of shape [${dst.shape}]`)
    }
    const get = elementGetter(src.data)
    walk2(dst.shape, dst.offset, dst.stride, src.offset, src.stride, (a, b) => set(a, get(b)))
    return
  }
  if (src !== null && typeof src === 'object' && typeof (src as ArrayLike<unknown>).length === 'number') {
    const arr = src as ArrayLike<number | bigint>
    if (arr.length !== dst.size) throw new RangeError(`BigArray: cannot assign ${arr.length} values to a view of ${dst.size} elements (shape [${dst.shape}])`)
    if (ArrayBuffer.isView(dst.data) && ArrayBuffer.isView(arr) && isContiguousC(dst.shape, dst.stride) && sameKind(dst.data, arr)) {
      ;(dst.data as unknown as { set(a: ArrayLike<number | bigint>, o: number): void }).set(arr, dst.offset)
      return
    }
    walk2(dst.shape, dst.offset, dst.stride, 0, contiguousStrides(dst.shape, 1, 'C'), (a, b) => set(a, arr[b]!))
    return
  }
  throw new TypeError(`BigArray: cannot assign ${typeof src} to a view`)
}

function sameKind(a: ArrayBufferView, b: ArrayBufferView): boolean {
  const big = (x: ArrayBufferView) => x instanceof BigInt64Array || x instanceof BigUint64Array
  return big(a) === big(b)
}

function isContiguousC(shape: readonly number[], stride: readonly number[]): boolean {
  let s = 1
  for (let k = shape.length - 1; k >= 0; k--) {
    if (shape[k] !== 1 && stride[k] !== s) return false
    s *= shape[k]!
  }
  return true
}

/** Unmaps the mapping under a view made by BigArray.slice (it becomes empty). Idempotent. */
export function releaseView(view: NdArray<ndarray.Data<number | bigint>> | { readonly fields: object }): void {
  const key = 'fields' in view ? view : view.data
  const m = mappingOf.get(key as object)
  if (m && m.isLive) m.unmap()
}

export interface BigArrayOptions {
  order?: Order
}

/** The operations BigArray and ZBigArray share. */
export interface BigArrayLike<D extends DType> extends Iterable<ValueOf<D> | ViewOf<D>> {
  readonly shape: number[]
  readonly strides: number[]
  readonly ndim: number
  readonly size: number
  readonly itemsize: number
  readonly nbytes: number
  readonly dtype: D
  readonly order: Order
  readonly length: number
  slice(...index: Index[]): ViewOf<D>
  view(...index: Index[]): BigArrayView<D>
  get(...index: number[]): ValueOf<D>
  set(...args: [...number[], ValueOf<D>]): void
  releaseMappings(): void
  assign(value: Assignable<D>, ...index: Index[]): void
  chunks(options?: ChunksOptions): Generator<Chunk<D>, void, undefined>
  toArray(options?: { maxBytes?: number }): ViewOf<D>
  resize(newShape: readonly number[]): void
  append(values: NdArray<ndarray.Data<number | bigint>> | ArrayLike<ValueOf<D>>): void
}

/** get() reads a page that is not in memory without loading it at most this many times. */
const PEEKS_BEFORE_LOAD = 32
/** Pages whose peeks get() counts (the counts start again beyond). */
const MAX_PEEK_COUNTS = 1 << 16

export class BigArray<D extends DType = DType> implements BigArrayLike<D> {
  readonly #dtype: D
  readonly #itemsize: number
  readonly #order: Order
  readonly #fileh: BigArrayFileH
  #shape: number[]
  #stridesB: number[]
  #nbytes: number

  constructor(shape: readonly number[], dtype: D, fileh: BigArrayFileH, options: BigArrayOptions = {}) {
    this.#shape = checkShape(shape)
    this.#dtype = parseDType(dtype) as D
    this.#itemsize = itemsizeOf(this.#dtype)
    const order = options.order ?? 'C'
    if (order !== 'C' && order !== 'F') throw new TypeError(`BigArray: order must be 'C' or 'F', not ${JSON.stringify(order)}`)
    this.#order = order
    this.#fileh = fileh
    if (typeof this.#dtype === 'string' && fileh.blksize % this.#itemsize !== 0) throw new RangeError(`BigArray: blksize ${fileh.blksize} is not a multiple of the itemsize ${this.#itemsize}`)
    this.#stridesB = contiguousStrides(this.#shape, this.#itemsize, order)
    this.#nbytes = checkNBytes(this.#shape, this.#itemsize)
  }

  // --- attributes -------------------------------------------------------------------------------

  get shape(): number[] {
    return [...this.#shape]
  }
  /** Byte strides (as numpy's). */
  get strides(): number[] {
    return [...this.#stridesB]
  }
  get ndim(): number {
    return this.#shape.length
  }
  get size(): number {
    return product(this.#shape)
  }
  get itemsize(): number {
    return this.#itemsize
  }
  get nbytes(): number {
    return this.#nbytes
  }
  get dtype(): D {
    return this.#dtype
  }
  get order(): Order {
    return this.#order
  }
  /** Length of the major axis (axis 0 in C order, the last axis in F order; as wendelin.core). */
  get length(): number {
    return this.#shape[this.majorAxis]!
  }
  get fileh(): BigArrayFileH {
    return this.#fileh
  }
  /** The axis resize and append change: 0 in C order, the last in F order. */
  get majorAxis(): number {
    return this.#order === 'C' ? 0 : this.#shape.length - 1
  }

  toString(): string {
    return `BigArray(shape=[${this.#shape}], dtype=${dtypeName(this.#dtype)}, order=${this.#order})`
  }

  // --- views ------------------------------------------------------------------------------------

  /**
   * An ndarray over the selected elements, backed by a mapping of just the pages they span.
   * `A.slice(2)` → row 2; `A.slice([10, 20], null)`; `A.slice([null, null, -1])` → reversed.
   */
  slice(...index: Index[]): ViewOf<D> {
    return this.#makeView(index).array
  }

  /** As slice, with the mapping: release it with `view.release()` or `using`. */
  view(...index: Index[]): BigArrayView<D> {
    return this.#makeView(index)
  }

  /** Unmaps the mapping under a view (the view becomes empty). */
  static release(view: NdArray<ndarray.Data<number | bigint>> | { readonly fields: object }): void {
    releaseView(view)
  }

  #select(index: readonly Index[]): AxisSel[] {
    const nd = this.#shape.length
    if (index.length > nd) throw new RangeError(`BigArray: too many indices (${index.length}) for an array of ${nd} dimensions`)
    const sel: AxisSel[] = []
    for (let k = 0; k < nd; k++) sel.push(normalizeAxis(index[k], this.#shape[k]!, k))
    return sel
  }

  #makeView(index: readonly Index[]): BigArrayView<D> {
    const sel = this.#select(index)
    const shape: number[] = []
    for (const s of sel) if (s.keep) shape.push(s.count)
    const empty = sel.some((s) => s.count === 0)
    const bs = this.#fileh.blksize
    let mapping: Mapping | null = null
    let buffer: ArrayBuffer
    let base = 0 // byte offset of the first element inside `buffer`
    const byteStrides: number[] = []
    for (let k = 0; k < sel.length; k++) if (sel[k]!.keep) byteStrides.push(sel[k]!.step * this.#stridesB[k]!)
    if (empty) {
      buffer = new ArrayBuffer(0)
    } else {
      let first = 0
      let lo = 0
      let hi = 0
      for (let k = 0; k < sel.length; k++) {
        const s = sel[k]!
        const st = this.#stridesB[k]!
        first += s.start * st
        const span = (s.count - 1) * s.step * st
        if (span < 0) lo += span
        else hi += span
      }
      lo += first
      hi += first + this.#itemsize
      const pglo = Math.floor(lo / bs)
      const pghi = Math.ceil(hi / bs)
      const bytes = (pghi - pglo) * bs
      if (bytes > MAX_MAPPING_BYTES) {
        throw new RangeError(
          `BigArray: this view spans ${bytes} bytes of pages, more than one mapping can hold (MAX_MAPPING_BYTES = ${MAX_MAPPING_BYTES}); take smaller slices or walk the array with A.chunks()`,
        )
      }
      mapping = this.#fileh.mmap(pglo, pghi - pglo)
      buffer = mapping.buffer
      base = first - pglo * bs
    }
    const array = this.#wrap(buffer, base, shape, byteStrides)
    if (mapping !== null) mappingOf.set(('fields' in (array as object) ? array : (array as NdArray).data) as object, mapping)
    const m = mapping
    return {
      array,
      mapping: m,
      release() {
        if (m !== null && m.isLive) m.unmap()
      },
      [Symbol.dispose]() {
        if (m !== null && m.isLive) m.unmap()
      },
    }
  }

  /** ndarray(s) over `buffer` for elements at byte `base` with byte strides. */
  #wrap(buffer: ArrayBuffer, base: number, shape: number[], byteStrides: number[]): ViewOf<D> {
    const dt = this.#dtype
    if (typeof dt === 'string') {
      const size = scalarSize(dt)
      const Ctor = typedArrayCtor(dt)
      const data = new Ctor(buffer)
      return ndarray(data as ndarray.Data<number>, shape, byteStrides.map((s) => s / size), base / size) as unknown as ViewOf<D>
    }
    const fields: Record<string, NdArray<ndarray.Data<number> | ndarray.Data<bigint>>> = {}
    const rec = dt as RecordDType
    for (const [name, f] of Object.entries(rec.fields)) {
      const size = scalarSize(f.dtype)
      const off = base + f.offset
      if (off % size === 0 && byteStrides.every((s) => s % size === 0) && buffer.byteLength % size === 0) {
        const Ctor = typedArrayCtor(f.dtype)
        fields[name] = ndarray(new Ctor(buffer) as ndarray.Data<number>, shape, byteStrides.map((s) => s / size), off / size)
      } else {
        // unaligned field: a generic array addressed in bytes
        const data = isBigIntDType(f.dtype) ? new FieldArray<bigint>(buffer, f.dtype) : new FieldArray<number>(buffer, f.dtype)
        fields[name] = ndarray(data as ndarray.GenericArray<number>, shape, [...byteStrides], off)
      }
    }
    return { shape, fields } as unknown as ViewOf<D>
  }

  // --- single elements --------------------------------------------------------------------------

  #elementOffset(index: readonly number[]): number {
    const nd = this.#shape.length
    if (index.length !== nd) throw new RangeError(`BigArray: get/set need ${nd} indices, got ${index.length}`)
    let off = 0
    for (let k = 0; k < nd; k++) {
      if (typeof index[k] !== 'number') throw new TypeError(`BigArray: get/set index ${String(index[k])} on axis ${k} is not an integer`)
      const s = normalizeAxis(index[k]!, this.#shape[k]!, k)
      off += s.start * this.#stridesB[k]!
    }
    return off
  }

  /**
   * Reads one element (a record as a plain object). The page(s) it lives on stay mapped until
   * the current job ends (a microtask unmaps them), so a loop of get/set on nearby elements
   * maps once; `releaseMappings()` unmaps them at once.
   */
  get(...index: number[]): ValueOf<D> {
    const off = this.#elementOffset(index)
    const fileh = this.#fileh
    if (fileh.peek !== undefined) {
      // A page not in memory is read without loading it where the file can (a ZBlk1 block: one
      // 4 KiB chunk instead of 2 MiB) — unless the previous get peeked into the same page: a
      // walk over nearby elements maps (loads) the page once instead.
      const bs = fileh.blksize
      const pg = Math.floor(off / bs)
      const c = this.#cached
      const mapped = c !== null && pg >= c.pg && pg < c.pg + c.len && c.m.isLive
      if (!mapped && pg !== this.#lastPeek && Math.floor((off + this.#itemsize - 1) / bs) === pg) {
        // ...and once a page was peeked into PEEKS_BEFORE_LOAD times, it is loaded: on an array
        // whose pages get many scattered reads, loading each once costs less than reading
        // chunks again and again (a ZBlk1 block load costs ~60 cold chunk reads).
        const peeks = this.#peeks.get(pg) ?? 0
        const scratch = (this.#scratch ??= new Uint8Array(this.#itemsize))
        if (peeks < PEEKS_BEFORE_LOAD && fileh.peek(off, scratch)) {
          if (this.#peeks.size >= MAX_PEEK_COUNTS) this.#peeks.clear()
          this.#peeks.set(pg, peeks + 1)
          this.#lastPeek = pg
          return this.#read((this.#scratchView ??= new DataView(scratch.buffer)), 0)
        }
      }
      this.#lastPeek = -1
    }
    const c = this.#elementPages(off)
    return this.#read(c.dv, off - c.pg * this.#fileh.blksize)
  }

  /** The page the last get() peeked into (-1: none). */
  #lastPeek = -1
  /** How many times get() peeked into each page. */
  readonly #peeks = new Map<number, number>()
  #scratch: Uint8Array | null = null
  #scratchView: DataView | null = null
  /** The page the last set() wrote into without mapping it (-1: none). */
  #lastPoke = -1
  #pokeScratch: Uint8Array | null = null
  #pokeView: DataView | null = null

  /**
   * Writes one element: `A.set(i, j, value)`. A page not in memory is written without loading
   * it where the file can (a ZBlk1 block: its one 4 KiB chunk) — unless the previous set wrote
   * into the same page that way: a walk over nearby elements maps (loads) the page once instead.
   */
  set(...args: [...number[], ValueOf<D>]): void {
    const value = args[args.length - 1] as ValueOf<D>
    const off = this.#elementOffset(args.slice(0, -1) as number[])
    const fileh = this.#fileh
    const dt = this.#dtype
    if (fileh.poke !== undefined && typeof dt === 'string') {
      const bs = fileh.blksize
      const pg = Math.floor(off / bs)
      const c = this.#cached
      const mapped = c !== null && pg >= c.pg && pg < c.pg + c.len && c.m.isLive
      if (!mapped && pg !== this.#lastPoke && Math.floor((off + this.#itemsize - 1) / bs) === pg) {
        const scratch = (this.#pokeScratch ??= new Uint8Array(this.#itemsize))
        writeScalar((this.#pokeView ??= new DataView(scratch.buffer)), 0, dt, value as number | bigint)
        if (fileh.poke(off, scratch)) {
          this.#lastPoke = pg
          return
        }
      }
      this.#lastPoke = -1
    }
    const c = this.#elementPages(off)
    this.#write(c.dv, off - c.pg * this.#fileh.blksize, value)
  }

  /** Unmaps the page(s) get/set keep mapped until the end of the current job. */
  releaseMappings(): void {
    const c = this.#cached
    this.#cached = null
    if (c !== null && c.m.isLive) c.m.unmap()
  }

  #cached: { pg: number; len: number; m: Mapping; dv: DataView } | null = null
  #releaseQueued = false

  #elementPages(off: number): { pg: number; dv: DataView } {
    const bs = this.#fileh.blksize
    const pg = Math.floor(off / bs)
    const last = Math.floor((off + this.#itemsize - 1) / bs)
    const c = this.#cached
    if (c !== null && pg >= c.pg && last < c.pg + c.len && c.m.isLive) return c
    this.releaseMappings()
    const m = this.#fileh.mmap(pg, last - pg + 1)
    const fresh = { pg, len: last - pg + 1, m, dv: new DataView(m.buffer) }
    this.#cached = fresh
    if (!this.#releaseQueued) {
      this.#releaseQueued = true
      queueMicrotask(() => {
        this.#releaseQueued = false
        this.releaseMappings()
      })
    }
    return fresh
  }

  #read(dv: DataView, at: number): ValueOf<D> {
    const dt = this.#dtype
    if (typeof dt === 'string') return readScalar(dv, at, dt) as ValueOf<D>
    const out: RecordValue = {}
    for (const [name, f] of Object.entries((dt as RecordDType).fields)) out[name] = readScalar(dv, at + f.offset, f.dtype)
    return out as ValueOf<D>
  }

  #write(dv: DataView, at: number, value: ValueOf<D>): void {
    const dt = this.#dtype
    if (typeof dt === 'string') {
      writeScalar(dv, at, dt, value as number | bigint)
      return
    }
    if (value === null || typeof value !== 'object') throw new TypeError('BigArray: a record element is set from an object of its fields')
    const rec = value as RecordValue
    for (const [name, f] of Object.entries((dt as RecordDType).fields)) if (name in rec) writeScalar(dv, at + f.offset, f.dtype, rec[name]!)
  }

  // --- assignment, walking, copies --------------------------------------------------------------

  /**
   * Assigns to the selected elements: a scalar (a record object for record dtypes), an ndarray
   * of the view's shape, or a typed/plain array of the view's size in C order of the view.
   */
  assign(value: Assignable<D>, ...index: Index[]): void {
    using v = this.view(...index)
    const arr = v.array
    // A source view over the same pages (A.assign(A.slice([0, n - 1]), [1, n])) is copied
    // first, as numpy does for overlapping memory: the walk would read what it already wrote.
    if (isNdArray(value) && v.mapping !== null) {
      const src = mappingOf.get(value.data as object)
      const dst = v.mapping
      if (src !== undefined && src.isLive && src.fileh === dst.fileh && src.pgoffset < dst.pgoffset + dst.pglen && dst.pgoffset < src.pgoffset + src.pglen) {
        const Ctor = (value.data as unknown as { constructor: new (n: number) => ndarray.Data<number | bigint> }).constructor
        const copy = ndarray(new Ctor(value.size), value.shape.slice())
        assignInto(copy, value)
        value = copy as unknown as Assignable<D>
      }
    }
    if ('fields' in (arr as object)) {
      const rv = arr as unknown as RecordView
      if (value === null || typeof value !== 'object' || isNdArray(value) || typeof (value as ArrayLike<unknown>).length === 'number') {
        throw new TypeError('BigArray: a record view is assigned a record object ({field: value}); assign arrays to its field views')
      }
      for (const [name, fv] of Object.entries(rv.fields) as Array<[string, NdArray<ndarray.Data<number | bigint>>]>) {
        const x = (value as RecordValue)[name]
        if (x !== undefined) assignInto(fv, x)
      }
      return
    }
    assignInto(arr as NdArray<ndarray.Data<number | bigint>>, value)
  }

  /**
   * Walks the array in windows along its major axis (0 in C order, the last axis in F order),
   * each one mapping of at most `bytes` (default 64 MiB). A window is unmapped when the walk
   * moves on: copy what you keep.
   */
  *chunks(options: ChunksOptions = {}): Generator<Chunk<D>, void, undefined> {
    const M = this.majorAxis
    const n = this.#shape[M]!
    const rowBytes = (this.#nbytes / Math.max(1, n)) || this.#itemsize * product(this.#shape.filter((_, k) => k !== M))
    let rows = options.rows ?? Math.floor((options.bytes ?? 64 * 1024 * 1024) / Math.max(1, rowBytes))
    // a window plus the partial pages at both ends must fit in one mapping
    rows = Math.max(1, Math.min(rows, Math.floor((MAX_MAPPING_BYTES - 2 * this.#fileh.blksize) / Math.max(1, rowBytes))))
    // A walk over more pages than the file's RAM holds: each window released is left behind
    // (its pages' frames go to the windows ahead before new memory; see FileH.leaveBehind).
    const bs = this.#fileh.blksize
    const wide = this.#fileh.leaveBehind !== undefined && this.#fileh.ramPages !== undefined && Math.ceil(this.#nbytes / bs) > this.#fileh.ramPages
    for (let start = 0; start < n; start += rows) {
      const stop = Math.min(n, start + rows)
      const index: Index[] = this.#shape.map(() => null)
      index[M] = [start, stop]
      const v = this.view(...index)
      try {
        yield { start, stop, array: v.array }
      } finally {
        v.release()
        if (wide && v.mapping !== null) this.#fileh.leaveBehind!({ pgoffset: v.mapping.pgoffset, pglen: v.mapping.pglen })
      }
    }
  }

  /** Copies the whole array into memory (C order): refused above `maxBytes` (default 1 GiB). */
  toArray(options: { maxBytes?: number } = {}): ViewOf<D> {
    const max = options.maxBytes ?? DEFAULT_TO_ARRAY_MAX_BYTES
    if (this.#nbytes > max) throw new RangeError(`BigArray.toArray: the array has ${this.#nbytes} bytes, more than maxBytes ${max}; walk it with chunks() or pass a larger maxBytes`)
    const shape = this.shape
    const dt = this.#dtype
    const M = this.majorAxis
    const makeDest = (d: ScalarDType) => ndarray(new (typedArrayCtor(d))(product(shape)) as ndarray.Data<number>, shape)
    const copyChunk = (dest: NdArray<ndarray.Data<number | bigint>>, c: { start: number; stop: number }, src: NdArray<ndarray.Data<number | bigint>>) => {
      const lo = shape.map((_, k) => (k === M ? c.start : 0))
      const hi = shape.map((n, k) => (k === M ? c.stop - c.start : n))
      assignInto(dest.lo(...lo).hi(...hi), src)
    }
    if (typeof dt === 'string') {
      const dest = makeDest(dt)
      for (const c of this.chunks()) copyChunk(dest, c, c.array as NdArray<ndarray.Data<number | bigint>>)
      return dest as unknown as ViewOf<D>
    }
    const rec = dt as RecordDType
    const fields: Record<string, NdArray<ndarray.Data<number> | ndarray.Data<bigint>>> = {}
    for (const [name, f] of Object.entries(rec.fields)) fields[name] = makeDest(f.dtype)
    for (const c of this.chunks()) {
      const rv = c.array as unknown as { fields: Record<string, NdArray<ndarray.Data<number | bigint>>> }
      for (const name of Object.keys(fields)) copyChunk(fields[name]!, c, rv.fields[name]!)
    }
    return { shape, fields } as unknown as ViewOf<D>
  }

  /** Iterates the first axis: elements of a 1-d array, else views of each row (as numpy). */
  *[Symbol.iterator](): Iterator<ValueOf<D> | ViewOf<D>> {
    const n = this.#shape[0]!
    for (let i = 0; i < n; i++) yield this.#shape.length === 1 ? this.get(i) : this.slice(i)
  }

  // --- resize / append --------------------------------------------------------------------------

  /**
   * Changes the size of the major axis (the other axes stay). Growing reads as zeros;
   * shrinking zeroes the bytes past the new end in the file handle (a plain BigArray cannot
   * give blocks back; ZBigArray truncates the file's blocks).
   */
  resize(newShape: readonly number[]): void {
    const next = checkShape(newShape)
    this.#checkResize(next)
    const oldBytes = this.#nbytes
    const newBytes = product(next) * this.#itemsize
    this.releaseMappings()
    if (newBytes < oldBytes) zeroBytes(this.#fileh, newBytes, oldBytes)
    this._setShape(next)
  }

  /** Checks a new shape differs from the current one at most along the major axis. @internal */
  #checkResize(next: readonly number[]): void {
    const M = this.majorAxis
    if (next.length !== this.#shape.length || next.some((n, k) => k !== M && n !== this.#shape[k])) {
      throw new RangeError(`BigArray.resize: only the major axis (${M}, order ${this.#order}) can change: [${this.#shape}] → [${next}]`)
    }
    checkNBytes(next, this.#itemsize)
  }

  /** @internal */
  _checkResize(next: readonly number[]): void {
    this.#checkResize(next)
  }

  /** @internal: sets the shape without touching the data. */
  _setShape(next: readonly number[]): void {
    this.#shape = [...next]
    this.#stridesB = contiguousStrides(this.#shape, this.#itemsize, this.#order)
    this.#nbytes = product(this.#shape) * this.#itemsize
  }

  /**
   * Appends along the major axis: values of the same shape except that axis (a typed or plain
   * array is taken as whole rows, in C order of the appended part).
   */
  append(values: NdArray<ndarray.Data<number | bigint>> | ArrayLike<ValueOf<D>>): void {
    appendTo(this, values)
  }
}

/** append() for BigArray and ZBigArray: resize, then assign the tail (resize back on error). */
export function appendTo<D extends DType>(a: BigArrayLike<D>, values: NdArray<ndarray.Data<number | bigint>> | ArrayLike<ValueOf<D>>): void {
  const shape = a.shape
  const M = a.order === 'C' ? 0 : shape.length - 1
  let delta: number
  if (isNdArray(values)) {
    if (values.shape.length !== shape.length || values.shape.some((n, k) => k !== M && n !== shape[k])) {
      throw new RangeError(`BigArray.append: all the input array dimensions except for the major axis must match exactly ([${values.shape}] onto [${shape}])`)
    }
    delta = values.shape[M]!
  } else {
    const row = product(shape.filter((_, k) => k !== M))
    if (row === 0 || values.length % row !== 0) throw new RangeError(`BigArray.append: ${values.length} values are not whole rows of ${row} elements`)
    delta = values.length / row
  }
  if (delta === 0) return
  const n = shape[M]!
  const grown = [...shape]
  grown[M] = n + delta
  a.resize(grown)
  try {
    const index: Index[] = shape.map(() => null)
    index[M] = [n, n + delta]
    a.assign(values as Assignable<D>, ...index)
  } catch (error) {
    a.resize(shape)
    throw error
  }
}

/** Writes zeros over bytes [from, to) of a file handle, a window at a time. */
export function zeroBytes(fileh: BigArrayFileH, from: number, to: number): void {
  const bs = fileh.blksize
  const windowPages = Math.max(1, Math.floor((64 * 1024 * 1024) / bs))
  let pos = from
  while (pos < to) {
    const pg = Math.floor(pos / bs)
    const pgEnd = Math.min(Math.ceil(to / bs), pg + windowPages)
    const m = fileh.mmap(pg, pgEnd - pg)
    try {
      const end = Math.min(to, pgEnd * bs)
      new Uint8Array(m.buffer).fill(0, pos - pg * bs, end - pg * bs)
      pos = end
    } finally {
      m.unmap()
    }
  }
}

const clampScratch = new Uint8ClampedArray(1)
/** A number as Uint8ClampedArray stores it (rounding half to even). */
function clampUint8(v: number): number {
  clampScratch[0] = v
  return clampScratch[0]!
}

function readScalar(dv: DataView, at: number, d: ScalarDType): number | bigint {
  switch (d) {
    case 'int8': return dv.getInt8(at)
    case 'uint8':
    case 'uint8-clamped': return dv.getUint8(at)
    case 'int16': return dv.getInt16(at, true)
    case 'uint16': return dv.getUint16(at, true)
    case 'int32': return dv.getInt32(at, true)
    case 'uint32': return dv.getUint32(at, true)
    case 'float32': return dv.getFloat32(at, true)
    case 'float64': return dv.getFloat64(at, true)
    case 'bigint64': return dv.getBigInt64(at, true)
    case 'biguint64': return dv.getBigUint64(at, true)
  }
}

function writeScalar(dv: DataView, at: number, d: ScalarDType, v: number | bigint): void {
  if (isBigIntDType(d) !== (typeof v === 'bigint')) throw new TypeError(`BigArray: a ${d} element is set from a ${isBigIntDType(d) ? 'bigint' : 'number'}, not ${typeof v}`)
  switch (d) {
    case 'int8': dv.setInt8(at, v as number); break
    case 'uint8': dv.setUint8(at, v as number); break
    case 'uint8-clamped': dv.setUint8(at, clampUint8(v as number)); break
    case 'int16': dv.setInt16(at, v as number, true); break
    case 'uint16': dv.setUint16(at, v as number, true); break
    case 'int32': dv.setInt32(at, v as number, true); break
    case 'uint32': dv.setUint32(at, v as number, true); break
    case 'float32': dv.setFloat32(at, v as number, true); break
    case 'float64': dv.setFloat64(at, v as number, true); break
    case 'bigint64': dv.setBigInt64(at, v as bigint, true); break
    case 'biguint64': dv.setBigUint64(at, v as bigint, true); break
  }
}

export type { AnyTypedArray }
