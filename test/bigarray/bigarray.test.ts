// BigArray over a file handle: behaviours of wendelin.core's bigarray/tests/test_basic.py
// (shape initialisation, attributes, 1-d and N-d indexing at page edges, resize, append,
// iteration, conversion) and of the TypeScript API (dtypes, records, chunks, ndarray-ops).
import { expect } from 'chai'
import ndarray from 'ndarray'
import type { NdArray } from 'ndarray'
import ops from 'ndarray-ops'

import { FileBigFile, FileH, MAX_MAPPING_BYTES, PatternBigFile, virtmemStats } from '@wendelin/bigfile'
import { BigArray, UnsupportedDTypeError, recordDType, releaseView, type Index, type SliceSpec } from '@wendelin/bigarray'

import { PS, cleanup, fileH, ram } from './helpers.js'

type Num = NdArray<ndarray.Data<number>>

/** The values of an ndarray in C order of its shape. */
function list(a: { shape: number[]; get(...i: number[]): number | bigint }): Array<number | bigint> {
  const out: Array<number | bigint> = []
  const rec = (prefix: number[]) => {
    if (prefix.length === a.shape.length) {
      out.push(a.get(...prefix))
      return
    }
    for (let i = 0; i < a.shape[prefix.length]!; i++) rec([...prefix, i])
  }
  rec([])
  return out
}

/** Python's range(n)[slice], written out the long way (an independent reference). */
function pyIndices(n: number, ix: Index): number[] | number {
  if (typeof ix === 'number') return ix < 0 ? ix + n : ix
  const all = Array.from({ length: n }, (_, i) => i)
  if (ix === null) return all
  let start: number | null | undefined, stop: number | null | undefined, step: number | null | undefined
  if (Array.isArray(ix)) [start, stop, step] = ix as [number?, number?, number?]
  else ({ start, stop, step } = ix as SliceSpec)
  const s = step ?? 1
  const norm = (v: number) => (v < 0 ? v + n : v)
  const out: number[] = []
  if (s > 0) {
    const a = start == null ? 0 : norm(start)
    const b = stop == null ? n : norm(stop)
    for (let i = a; i < b; i += s) if (i >= 0 && i < n) out.push(i)
  } else {
    const a = start == null ? n - 1 : norm(start)
    const b = stop == null ? -1 : stop < 0 && stop + n < 0 ? -1 : norm(stop)
    for (let i = a; i > b; i += s) if (i >= 0 && i < n) out.push(i)
  }
  return out
}

/** Expected values of A[index] for an array whose element at flat byte offset k is value(k). */
function expected(shape: number[], strides: number[], index: Index[], value: (off: number) => number): number[] {
  const per = shape.map((n, k) => pyIndices(n, index[k] ?? null))
  const out: number[] = []
  const rec = (k: number, off: number) => {
    if (k === shape.length) {
      out.push(value(off))
      return
    }
    const p = per[k]!
    if (typeof p === 'number') rec(k + 1, off + p * strides[k]!)
    else for (const i of p) rec(k + 1, off + i * strides[k]!)
  }
  rec(0, 0)
  return out
}

describe('BigArray', () => {
  afterEach(() => cleanup())

  it('initialises its shape and refuses a bad one', () => {
    const fh = fileH()
    expect(new BigArray([1, 4, 3], 'float64', fh).shape).to.deep.equal([1, 4, 3])
    expect(new BigArray([42], 'float64', fh).shape).to.deep.equal([42])
    expect(() => new BigArray([], 'float64', fh)).to.throw(TypeError)
    expect(() => new BigArray([2, -1], 'float64', fh)).to.throw(TypeError)
    expect(() => new BigArray([2.5], 'float64', fh)).to.throw(TypeError)
  })

  it('has the ndarray attributes, in C and F order', () => {
    const fh = fileH()
    const A = new BigArray([10, 3], 'int32', fh)
    expect(A.strides).to.deep.equal([12, 4])
    expect(A.dtype).to.equal('int32')
    expect(A.size).to.equal(30)
    expect(A.length).to.equal(10)
    expect(A.itemsize).to.equal(4)
    expect(A.nbytes).to.equal(120)
    expect(A.ndim).to.equal(2)
    expect(A.shape).to.deep.equal([10, 3])
    expect(A.order).to.equal('C')
    const B = new BigArray([10, 3], 'int32', fh, { order: 'F' })
    expect(B.strides).to.deep.equal([4, 40])
    expect(B.length).to.equal(3) // the major axis, as wendelin.core
    expect(B.nbytes).to.equal(120)
    expect(B.order).to.equal('F')
    expect(() => new BigArray([3], 'float64', fh, { order: 'X' as 'C' })).to.throw(TypeError, /order/)
  })

  it('supports every scalar dtype and refuses others clearly', () => {
    const fh = fileH()
    const cases: Array<[ConstructorParameters<typeof BigArray>[1], number | bigint, Function]> = [
      ['int8', -5, Int8Array],
      ['uint8', 250, Uint8Array],
      ['uint8-clamped', 255, Uint8ClampedArray],
      ['int16', -300, Int16Array],
      ['uint16', 60000, Uint16Array],
      ['int32', -70000, Int32Array],
      ['uint32', 4000000000, Uint32Array],
      ['float32', 1.5, Float32Array],
      ['float64', Math.PI, Float64Array],
      ['bigint64', -(1n << 62n), BigInt64Array],
      ['biguint64', 1n << 63n, BigUint64Array],
    ]
    for (const [dt, v, Ctor] of cases) {
      const A = new BigArray([PS], dt, fh)
      A.set(7, v)
      expect(A.get(7), String(dt)).to.equal(v)
      const view = A.slice([0, 8]) as NdArray<ndarray.Data<number | bigint>>
      expect(view.data).to.be.instanceOf(Ctor)
      expect(view.get(7)).to.equal(v)
      releaseView(view)
    }
    const U = new BigArray([4], 'uint8-clamped', fh)
    U.set(0, 300)
    U.set(1, -5)
    U.set(2, 2.5) // as Uint8ClampedArray: half to even
    expect([U.get(0), U.get(1), U.get(2)]).to.deep.equal([255, 0, 2])
    expect(() => new BigArray([4], 'complex128' as 'float64', fh)).to.throw(UnsupportedDTypeError, /complex128/)
    expect(() => new BigArray([4], 'float64', fh).set(0, 1n as unknown as number)).to.throw(TypeError, /bigint/)
  })

  it('indexes 1-d: ranges, steps, negative steps, integers, out of range', () => {
    const fh = fileH()
    const A = new BigArray([10 * PS], 'uint8', fh)
    // wendelin's test: the array is zeros until written
    expect(list(A.slice([0, 5]) as Num)).to.deep.equal([0, 0, 0, 0, 0])
    const whole = A.slice() as Num
    for (let i = 0; i < 10 * PS; i++) whole.set(i, (i * 7) & 0xff)
    releaseView(whole)
    const value = (off: number) => ((off * 7) & 0xff)
    const n = 10 * PS
    const indices: Index[] = [
      null, [0, 1], [1, 2], [PS - 1, PS + 1], [PS - 3, 2 * PS + 3], [PS, 2 * PS], [null, null, -1], [PS + 1, PS - 2, -1],
      [2 * PS, null, -PS + 1], [null, null, PS - 1], [-3, null], [null, -n - 5], [n + 10, null], [5, 2], [5, 2, -1], { start: 3, step: 1000 },
    ]
    for (const ix of indices) {
      const v = A.slice(ix) as Num
      const want = expected([n], [1], [ix], value)
      expect(v.shape, JSON.stringify(ix)).to.deep.equal([want.length])
      expect(list(v), JSON.stringify(ix)).to.deep.equal(want)
    }
    expect(A.slice(PS).shape).to.deep.equal([]) // an integer drops the axis
    expect(A.get(PS)).to.equal(value(PS))
    expect(A.get(-1)).to.equal(value(n - 1))
    expect(() => A.get(n)).to.throw(RangeError, /out of bounds/)
    expect(() => A.slice(-n - 1)).to.throw(RangeError, /out of bounds/)
    expect(() => A.slice([0, 1, 0])).to.throw(RangeError, /step/)
    expect(() => A.slice(null, null)).to.throw(RangeError, /too many/)
  })

  it('maps only the pages a view needs', () => {
    const fh = fileH()
    const A = new BigArray([100 * PS], 'uint8', fh)
    using v = A.view([5 * PS - 1, 6 * PS + 1])
    expect(v.mapping!.byteLength).to.equal(3 * PS)
    using w = A.view([10 * PS, 11 * PS])
    expect(w.mapping!.byteLength).to.equal(PS)
    using r = A.view([20 * PS + 5, 10 * PS - 5, -PS]) // pages 10..20 backwards
    expect(r.mapping!.byteLength).to.equal(11 * PS)
    using e = A.view([7, 7])
    expect(e.mapping).to.equal(null)
    expect((e.array as Num).size).to.equal(0)
  })

  it('indexes at page edges (rows across pages)', () => {
    for (const cols of [PS - 1, PS + 1]) {
      const fh = fileH()
      const A = new BigArray([10, cols], 'uint8', fh)
      const flat = A.slice() as Num
      // as wendelin's test: data = arange(uint32) seen as bytes
      const u32 = new Uint32Array(Math.ceil((10 * cols) / 4))
      for (let i = 0; i < u32.length; i++) u32[i] = i
      const bytes = new Uint8Array(u32.buffer)
      for (let i = 0; i < 10; i++) for (let j = 0; j < cols; j++) flat.set(i, j, bytes[i * cols + j]!)
      releaseView(flat)
      const value = (off: number) => bytes[off]!
      for (const ix of [[0], [1], [[1, 2]], [[1, 2, -1]], [[1, 0]], [[1, 0, -1]], [[0, 1]], [[0, 1, -1]]] as Index[][]) {
        const want = expected([10, cols], [cols, 1], ix, value)
        expect(list(A.slice(...ix) as Num), `${cols} ${JSON.stringify(ix)}`).to.deep.equal(want)
      }
    }
  })

  it('indexes N-d in C and F order (every combination of :, ints, ranges with steps)', () => {
    const shape = [5, 7, 6]
    for (const order of ['C', 'F'] as const) {
      const fh = fileH(64, 4096)
      const A = new BigArray(shape, 'int32', fh, { order })
      const all = A.slice() as Num
      let k = 0
      for (let i = 0; i < 5; i++) for (let j = 0; j < 7; j++) for (let l = 0; l < 6; l++) all.set(i, j, l, 1000 * i + 10 * j + l + (k++ & 0))
      releaseView(all)
      const strides = A.strides
      const value = (off: number) => {
        // invert the byte offset to the logical index
        const idx = [0, 0, 0]
        let rest = off / 4
        const dims = order === 'C' ? [2, 1, 0] : [0, 1, 2]
        for (const d of dims) {
          idx[d] = rest % shape[d]!
          rest = Math.floor(rest / shape[d]!)
        }
        return 1000 * idx[0]! + 10 * idx[1]! + idx[2]!
      }
      const variants = (n: number): Index[] => [null, 0, -1, Math.floor(n / 2), [1, -1], [Math.floor(n / 4) + 1, Math.floor((n * 3) / 4) - 1, 2], [null, null, -2], [-1, 0, -3]]
      let cases = 0
      for (const a of variants(5)) for (const b of variants(7)) for (const c of variants(6)) {
        const ix = [a, b, c]
        const got = A.slice(...ix) as Num
        expect(list(got), `${order} ${JSON.stringify(ix)}`).to.deep.equal(expected(shape, strides, ix, value))
        releaseView(got)
        cases++
      }
      expect(cases).to.equal(512)
      expect(A.get(4, 6, 5)).to.equal(4065)
      A.set(1, 2, 3, -1)
      expect((A.slice(1, null, 3) as Num).get(2)).to.equal(-1)
    }
  })

  it('assigns a scalar, an ndarray, a typed array and a plain array to slices', () => {
    const fh = fileH()
    const A = new BigArray([4, PS / 4 + 3], 'float64', fh)
    const cols = PS / 4 + 3
    A.assign(1.5, 1)
    expect(list(A.slice(1, [0, 3]) as Num)).to.deep.equal([1.5, 1.5, 1.5])
    expect(A.get(0, cols - 1)).to.equal(0)
    expect(A.get(2, 0)).to.equal(0)
    A.assign(new Float64Array([1, 2, 3, 4]), [0, 4], cols - 1) // a column across pages
    expect([0, 1, 2, 3].map((i) => A.get(i, cols - 1))).to.deep.equal([1, 2, 3, 4])
    A.assign([9, 8, 7], 3, [2, null, -1]) // reversed: elements 2, 1, 0
    expect([0, 1, 2].map((j) => A.get(3, j))).to.deep.equal([7, 8, 9])
    const src = ndarray(new Float64Array([1, 2, 3, 4, 5, 6]), [2, 3])
    A.assign(src, [1, 3], [10, 13])
    expect(list(A.slice([1, 3], [10, 13]) as Num)).to.deep.equal([1, 2, 3, 4, 5, 6])
    A.assign(src.transpose(1, 0), [0, 3], [20, 22])
    expect(list(A.slice([0, 3], [20, 22]) as Num)).to.deep.equal([1, 4, 2, 5, 3, 6])
    expect(() => A.assign(src, [0, 3], [0, 2])).to.throw(RangeError, /shape/)
    expect(() => A.assign(new Float64Array(5), 0, [0, 4])).to.throw(RangeError, /5 values/)
    const I = new BigArray([10], 'bigint64', fh)
    I.assign(5n, [2, 5])
    expect([...I]).to.deep.equal([0n, 0n, 5n, 5n, 5n, 0n, 0n, 0n, 0n, 0n])
  })

  it('views work with ndarray-ops without copies', () => {
    const fh = fileH()
    const A = new BigArray([3 * PS], 'float64', fh)
    const v = A.slice() as NdArray<Float64Array>
    ops.assigns(v, 2)
    expect(A.get(3 * PS - 1)).to.equal(2)
    ops.addseq(A.slice([PS, 2 * PS]) as NdArray<Float64Array>, 1)
    expect(ops.sum(v)).to.equal(2 * 3 * PS + PS)
    expect(A.get(PS)).to.equal(3)
    expect(ops.sup(A.slice([null, null, -7]) as NdArray<Float64Array>)).to.equal(3)
    // the view is memory of the file handle: the file sees the change once written out
    expect(fh.dirtyPages().length).to.be.greaterThan(0)
  })

  it('record dtypes: fields are strided views where aligned, DataView-backed otherwise', () => {
    const fh = fileH()
    const rec = recordDType([['t', 'float64'], ['id', 'int32'], ['flag', 'uint8']]) // 13 bytes, packed
    expect(rec.itemsize).to.equal(13)
    const aligned = recordDType({ t: { dtype: 'float64', offset: 0 }, id: { dtype: 'int32', offset: 8 }, n: { dtype: 'bigint64', offset: 16 } }, { itemsize: 24 })
    const A = new BigArray([PS], aligned, fh)
    const v = A.slice([10, 20])
    expect(v.fields.t!.data).to.be.instanceOf(Float64Array)
    expect(v.fields.t!.stride).to.deep.equal([3])
    expect(v.fields.id!.data).to.be.instanceOf(Int32Array)
    ops.assigns(v.fields.t as NdArray<Float64Array>, 0.25)
    v.fields.id!.set(3, 77)
    v.fields.n!.set(4, 5n as unknown as number)
    expect(A.get(13)).to.deep.equal({ t: 0.25, id: 77, n: 0n })
    expect(A.get(14)).to.deep.equal({ t: 0.25, id: 0, n: 5n })
    A.set(PS - 1, { t: -1, id: 9, n: 3n })
    expect(A.get(PS - 1)).to.deep.equal({ t: -1, id: 9, n: 3n })
    const B = new BigArray([PS], rec, fh)
    B.assign({ id: 42, flag: 1 }, [PS - 10, null, 2]) // records straddle pages
    const w = B.slice([PS - 10, PS])
    expect(w.fields.t!.data).not.to.be.instanceOf(Float64Array) // 13-byte stride: not aligned
    expect(list(w.fields.id!)).to.deep.equal([42, 0, 42, 0, 42, 0, 42, 0, 42, 0])
    w.fields.t!.set(1, 2.5)
    expect(B.get(PS - 9)).to.deep.equal({ t: 2.5, id: 0, flag: 0 })
    const copy = B.toArray()
    expect(copy.fields.flag!.get(PS - 2)).to.equal(1)
    expect(() => B.assign(5 as never)).to.throw(TypeError, /record/)
  })

  it('refuses a view larger than one mapping can hold, and chunks walk it', () => {
    const file = new PatternBigFile({ blksize: 2 << 20, noop: true })
    const fh = new FileH(file, { ram: ram(8, 2 << 20) })
    try {
      const n = Math.ceil((MAX_MAPPING_BYTES + (4 << 20)) / 8)
      const A = new BigArray([n], 'float64', fh)
      expect(() => A.slice()).to.throw(RangeError, /MAX_MAPPING_BYTES/)
      // chunks: every window within the limit, together covering the array once
      let covered = 0
      let windows = 0
      for (const c of A.chunks({ bytes: 1 << 30 })) {
        expect(c.start).to.equal(covered)
        covered = c.stop
        windows++
        expect((c.array as Num).size).to.equal(c.stop - c.start)
      }
      expect(covered).to.equal(n)
      expect(windows).to.equal(Math.ceil(n / ((1 << 30) / 8)))
      expect(fh.liveMappings()).to.have.length(0)
      expect(A.slice([n - 2, n]).shape).to.deep.equal([2])
    } finally {
      for (const m of fh.liveMappings()) m.unmap()
      fh.close()
    }
  })

  it('chunks leave each window they released behind when the walk is wider than the RAM: a few frames in all, windows read twice load once, a narrower walk is cached', () => {
    for (const [ramPages, cached] of [[4, false], [32, true]] as const) {
      const fh = new FileH(new PatternBigFile({ blksize: PS }), { ram: ram(ramPages) })
      const A = new BigArray([16 * PS], 'uint8', fh)
      const s0 = virtmemStats()
      let pages = 0
      for (const c of A.chunks({ bytes: 2 * PS })) {
        for (let k = 0; k < 2; k++) {
          // each window read twice (a mean, then a variance), both of its pages
          expect([c.array.get(7), c.array.get(PS + 7)]).to.deep.equal([100 + pages, 101 + pages]) // block k reads as 100 + k
        }
        pages += 2
      }
      expect(pages).to.equal(16)
      const recycled = virtmemStats().recycledLeftBehind - s0.recycledLeftBehind
      expect(virtmemStats().loads - s0.loads).to.equal(16) // every page once
      if (cached) {
        expect([recycled, fh.ram.stats().bytesInUse / PS]).to.deep.equal([0, 16])
      } else {
        expect(recycled).to.be.at.least(10)
        expect(fh.ram.stats().bytesPeak / PS).to.be.at.most(4)
      }
      A.releaseMappings()
      fh.close()
    }
  })

  it('toArray of a record dtype walks each window once per field without loading it again', () => {
    const fh = new FileH(new PatternBigFile({ blksize: PS }), { ram: ram(24) })
    const A = new BigArray([2 * PS], recordDType([['a', 'uint32'], ['b', 'uint32']]), fh) // 16 pages, narrower than the RAM
    const s0 = virtmemStats()
    A.toArray()
    expect(virtmemStats().loads - s0.loads).to.equal(16)
    expect(virtmemStats().recycledLeftBehind - s0.recycledLeftBehind).to.equal(0)
    A.releaseMappings()
    fh.close()
  })

  it('chunks walk C and F arrays along the major axis and toArray copies with a size guard', () => {
    const fh = fileH()
    const C = new BigArray([7, 5], 'int16', fh)
    for (let i = 0; i < 7; i++) C.assign(i, i)
    const rows: Array<[number, number]> = []
    let sum = 0
    for (const c of C.chunks({ rows: 3 })) {
      rows.push([c.start, c.stop])
      sum += ops.sum(c.array as NdArray<Int16Array>)
    }
    expect(rows).to.deep.equal([[0, 3], [3, 6], [6, 7]])
    expect(sum).to.equal(5 * (0 + 1 + 2 + 3 + 4 + 5 + 6))
    const F = new BigArray([5, 7], 'int16', fileH(), { order: 'F' })
    for (let j = 0; j < 7; j++) F.assign(j, null, j)
    const wins = [...F.chunks({ rows: 4 })].map((c) => [c.start, c.stop, ...(c.array as Num).shape])
    expect(wins).to.deep.equal([[0, 4, 5, 4], [4, 7, 5, 3]])
    const copy = F.toArray() as Num
    expect(copy.shape).to.deep.equal([5, 7])
    expect(copy.data).to.be.instanceOf(Int16Array)
    expect(copy.get(3, 6)).to.equal(6)
    expect(copy.stride).to.deep.equal([7, 1]) // a C-ordered copy
    expect(() => F.toArray({ maxBytes: 10 })).to.throw(RangeError, /maxBytes/)
  })

  it('iterates the first axis and converts to a plain array', () => {
    const fh = fileH()
    const A = new BigArray([3, 2], 'uint16', fh)
    A.assign([1, 2, 3, 4, 5, 6])
    const rows = [...A].map((r) => list(r as Num))
    expect(rows).to.deep.equal([[1, 2], [3, 4], [5, 6]])
    const B = new BigArray([4], 'float32', fh)
    B.assign([0.5, 1.5, 2.5, 3.5])
    expect([...B]).to.deep.equal([0.5, 1.5, 2.5, 3.5])
    expect(Array.from((B.toArray() as NdArray<Float32Array>).data)).to.deep.equal([0.5, 1.5, 2.5, 3.5])
  })

  it('resizes along the major axis: growing reads zeros, shrinking drops the tail', () => {
    const fh = fileH()
    const A = new BigArray([10, 3], 'uint8', fh)
    A.assign(7)
    A.resize([20, 3])
    expect(A.shape).to.deep.equal([20, 3])
    expect(list(A.slice([8, 12], 0) as Num)).to.deep.equal([7, 7, 0, 0])
    A.resize([5, 3])
    expect(() => A.get(5, 0)).to.throw(RangeError)
    A.resize([10, 3])
    expect(list(A.slice([3, 7], 2) as Num)).to.deep.equal([7, 7, 0, 0])
    expect(() => A.resize([10, 4])).to.throw(RangeError, /major axis/)
    const F = new BigArray([3, 10], 'uint8', fileH(), { order: 'F' })
    F.assign(1)
    F.resize([3, 12])
    expect(list(F.slice(2, [8, 12]) as Num)).to.deep.equal([1, 1, 0, 0])
    expect(() => F.resize([4, 12])).to.throw(RangeError, /major axis/)
    // wendelin's test: a big array can resize past what memory holds (no copying)
    const B = new BigArray([PS], 'uint8', fh)
    B.resize([1e12])
    expect(B.get(1e12 - 1)).to.equal(0)
  })

  it('appends along the major axis, and rolls the resize back on a bad value', () => {
    const fh = fileH()
    const A = new BigArray([0], 'int32', fh)
    A.append([1, 2, 3])
    A.append(new Int32Array([4]))
    A.append(ndarray(new Int32Array([5, 6]), [2]))
    expect([...A]).to.deep.equal([1, 2, 3, 4, 5, 6])
    const M = new BigArray([2, 3], 'float64', fileH(16, PS))
    M.append(ndarray(new Float64Array([1, 2, 3, 4, 5, 6]), [2, 3]))
    expect(M.shape).to.deep.equal([4, 3])
    expect(list(M.slice(3) as Num)).to.deep.equal([4, 5, 6])
    expect(() => M.append(ndarray(new Float64Array(4), [2, 2]))).to.throw(RangeError, /major axis/)
    expect(() => M.append([1, 2])).to.throw(RangeError, /whole rows/)
    expect(() => M.append([1, 2, 'x' as unknown as number])).to.not.throw() // numbers coerced by the typed array
    expect(M.shape).to.deep.equal([5, 3])
    const F = new BigArray([2, 0], 'uint8', fileH(), { order: 'F' })
    F.append(ndarray(new Uint8Array([1, 2, 3, 4]), [2, 2]))
    expect(F.shape).to.deep.equal([2, 2])
    expect(list(F.slice() as Num)).to.deep.equal([1, 2, 3, 4])
    const Bg = new BigArray([1], 'bigint64', fh)
    expect(() => Bg.append([1 as unknown as bigint])).to.throw(TypeError)
    expect(Bg.shape).to.deep.equal([1]) // rolled back
  })

  it('releases mappings: explicitly, with using, and when a view is garbage collected', async () => {
    const fh = fileH()
    const A = new BigArray([8 * PS], 'uint8', fh)
    const v = A.slice([0, PS]) as Num
    expect(fh.liveMappings()).to.have.length(1)
    releaseView(v)
    expect(fh.liveMappings()).to.have.length(0)
    expect(v.data.length).to.equal(0) // detached
    {
      using w = A.view()
      expect(fh.liveMappings()).to.have.length(1)
      expect((w.array as Num).size).to.equal(8 * PS)
    }
    expect(fh.liveMappings()).to.have.length(0)
    ;(() => {
      for (let i = 0; i < 4; i++) (A.slice([i * PS, (i + 1) * PS]) as Num).set(0, 1)
    })()
    const gc = (globalThis as { gc?: () => void }).gc
    expect(gc, 'run with --expose-gc').to.be.a('function')
    // (liveMappings() derefs weak references, which keeps them alive until the job ends: yield first)
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setImmediate(r))
      gc!()
      await new Promise((r) => setTimeout(r, 5))
      if (fh.liveMappings().length === 0) break
    }
    expect(fh.liveMappings()).to.have.length(0)
    expect(A.get(3 * PS)).to.equal(1)
    // get/set keep the element's page mapped until the job ends: nearby elements reuse it
    const first = fh.liveMappings()
    expect(first).to.have.length(1)
    A.set(3 * PS + 1, 2)
    expect(A.get(3 * PS + 1)).to.equal(2)
    expect(fh.liveMappings()).to.deep.equal(first)
    expect(A.get(0)).to.equal(1) // another page: the previous one is unmapped
    expect(fh.liveMappings()).to.have.length(1)
    expect(first[0]!.isLive).to.equal(false)
    await Promise.resolve()
    expect(fh.liveMappings()).to.have.length(0)
    A.get(5)
    A.releaseMappings()
    expect(fh.liveMappings()).to.have.length(0)
  })

  it('works over a plain file: data written through views is in the file after writeout', () => {
    const fh = fileH()
    const A = new BigArray([PS / 8 * 3], 'float64', fh)
    A.assign(0.5, [PS / 8 - 1, PS / 8 + 1])
    fh.dirtyWriteout()
    // a second handle on the same file sees the bytes
    const file = fh.file as FileBigFile
    const fh2 = new FileH(file, { ram: ram(8) })
    try {
      const B = new BigArray([PS / 8 * 3], 'float64', fh2)
      expect(list(B.slice([PS / 8 - 2, PS / 8 + 2]) as Num)).to.deep.equal([0, 0.5, 0.5, 0])
    } finally {
      for (const m of fh2.liveMappings()) m.unmap()
      fh2.close()
    }
  })
})
