// ZBigArray: behaviours of wendelin.core's bigarray/tests/test_arrayzodb.py — persistence of
// shape, dtype and order, abort/commit/reload, cache minimization, invalidation and isolation
// between connections, data and shape conflicts; and transactional resize/append.
import { expect } from 'chai'
import ndarray from 'ndarray'
import type { NdArray } from 'ndarray'
import ops from 'ndarray-ops'
import path from 'node:path'

import { ZBlk0, ZBlk1, virtmemStats } from '@wendelin/bigfile'
import { ZBigArray, recordDType, releaseView, type DType } from '@wendelin/bigarray'
import { TransactionManager } from '@wendelin/transaction'
import { ConflictError, DB, MemoryStorage, SQLiteStorage, type Connection } from '@wendelin/zodb'

import { PS, cleanup, ram, tmpDir } from './helpers.js'

type Num = NdArray<ndarray.Data<number>>
type Root = Record<string, unknown>

interface Env {
  db: DB
  tm: TransactionManager
  conn: Connection
  root: Root
}

describe('ZBigArray', () => {
  let dbs: DB[] = []
  let arrays: Array<ZBigArray<DType>> = []
  let file = ''

  beforeEach(() => {
    file = path.join(tmpDir(), 'db.sqlite')
  })
  afterEach(() => {
    for (const a of arrays.splice(0)) {
      try {
        a._p_jar && (a._p_jar as Connection).transactionManager.abort()
      } catch {}
      try {
        const fh = a.fileh
        for (const m of fh.fileh.liveMappings()) m.unmap()
        a.close()
      } catch {}
    }
    for (const d of dbs.splice(0)) if (!d.closed) d.close()
    cleanup()
  })

  function open(pages = 64): Env {
    const db = new DB(new SQLiteStorage(file))
    dbs.push(db)
    return connect(db, pages)
  }
  function connect(db: DB, _pages = 64): Env {
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm }) as unknown as Connection
    return { db, tm, conn, root: conn.root as Root }
  }
  /** The array at root[name], opened on a RAM of its own. */
  function arr<A extends ZBigArray<DType>>(env: Env, name: string, pages = 64): A {
    const a = env.root[name] as A
    a.open({ ram: ram(pages) })
    arrays.push(a)
    return a
  }

  it('stores shape, dtype and data; abort drops changes; commit keeps them; cache minimization keeps the array live', () => {
    const n = 16 * PS
    let env = open()
    env.root.zarray = new ZBigArray([n], 'uint8', { blksize: PS })
    env.tm.commit()
    env.db.close()

    env = open()
    let A = arr<ZBigArray<'uint8'>>(env, 'zarray')
    expect(A).to.be.instanceOf(ZBigArray)
    expect(A.shape).to.deep.equal([n])
    expect(A.dtype).to.equal('uint8')
    const a = A.slice() as Num
    expect(ops.any(a)).to.equal(false)
    a.set(1, 1)
    a.set(3, 3)
    a.set(5, 5)
    a.set(n - 1, 99)
    const b = A.slice() as Num
    expect([0, 1, 2, 3, 4, 5].map((i) => b.get(i))).to.deep.equal([0, 1, 0, 3, 0, 5])
    expect(b.get(n - 1)).to.equal(99)
    env.tm.abort()
    expect(ops.any(a)).to.equal(false)
    expect(ops.any(b)).to.equal(false)
    a.set(33, 33)
    a.set(n - 2, 98)
    expect(b.get(33)).to.equal(33)
    expect(b.get(n - 2)).to.equal(98)
    env.tm.commit()
    expect(() => A.close()).to.throw(/mapping\(s\) still live/) // views first
    releaseView(a)
    releaseView(b)
    expect(A.get(33)).to.equal(33) // the page get keeps mapped is released by close
    A.close()
    env.db.close()

    env = open()
    A = arr<ZBigArray<'uint8'>>(env, 'zarray')
    let c = A.slice() as Num
    expect(ops.sum(c)).to.equal(33 + 98)
    expect(c.get(33)).to.equal(33)
    // cache minimization: the array and its file stay live (their handle keeps working)
    env.conn.cacheMinimize()
    c.set(n - 1, 99)
    env.tm.commit()
    releaseView(c)
    A.close()
    env.db.close()

    env = open()
    A = arr<ZBigArray<'uint8'>>(env, 'zarray')
    c = A.slice() as Num
    expect([c.get(33), c.get(n - 2), c.get(n - 1)]).to.deep.equal([33, 98, 99])
    // resize and append are committed with the data
    A.resize([n + 8 * PS])
    expect(A.shape).to.deep.equal([n + 8 * PS])
    const d = A.slice() as Num
    expect(d.get(n - 1)).to.equal(99)
    expect(d.get(n)).to.equal(0)
    d.set(n, 100)
    d.set(n + 8 * PS - 1, 255)
    A.append(new Uint8Array([10, 11, 12, 13]))
    env.tm.commit()
    releaseView(c)
    releaseView(d)
    A.close()
    env.db.close()

    env = open()
    A = arr<ZBigArray<'uint8'>>(env, 'zarray')
    expect(A.shape).to.deep.equal([n + 8 * PS + 4])
    expect([A.get(33), A.get(n - 1), A.get(n), A.get(n + 8 * PS - 1)]).to.deep.equal([33, 99, 100, 255])
    const tail = A.slice([-4, null]) as Num
    expect([0, 1, 2, 3].map((i) => tail.get(i))).to.deep.equal([10, 11, 12, 13])
  })

  it('persists the order and record dtypes', () => {
    let env = open()
    env.root.carray = new ZBigArray([4, 6], 'int16', { blksize: PS })
    env.root.farray = new ZBigArray([4, 6], 'int16', { blksize: PS, order: 'F' })
    env.root.rarray = new ZBigArray([100], recordDType([['x', 'float64'], ['id', 'int32']]), { blksize: PS })
    env.tm.commit()
    const F0 = arr<ZBigArray<'int16'>>(env, 'farray')
    F0.assign(ndarray(new Int16Array([1, 2, 3, 4, 5, 6]), [1, 6]), [2, 3])
    const R0 = arr<ZBigArray<ReturnType<typeof recordDType>>>(env, 'rarray')
    R0.set(7, { x: 1.25, id: -3 })
    env.tm.commit()
    env.db.close()

    env = open()
    const C = arr<ZBigArray<'int16'>>(env, 'carray')
    const F = arr<ZBigArray<'int16'>>(env, 'farray')
    const R = arr<ZBigArray<ReturnType<typeof recordDType>>>(env, 'rarray')
    expect(C.order).to.equal('C')
    expect(C.strides).to.deep.equal([12, 2])
    expect(F.order).to.equal('F')
    expect(F.strides).to.deep.equal([2, 8])
    expect(F.length).to.equal(6)
    expect(F.get(2, 5)).to.equal(6)
    expect((F.slice() as Num).get(2, 0)).to.equal(1)
    // F order: column j is contiguous
    const col = F.slice(null, 5) as Num
    expect(col.stride).to.deep.equal([1])
    expect(R.dtype).to.deep.equal({ kind: 'record', itemsize: 12, fields: { x: { dtype: 'float64', offset: 0 }, id: { dtype: 'int32', offset: 8 } } })
    expect(R.get(7)).to.deep.equal({ x: 1.25, id: -3 })

    // an array stored without _order (as wendelin.core's older arrays) is C-ordered
    const Cold = new ZBigArray([4, 2], 'uint8', { blksize: PS })
    delete (Cold as { _order?: string })._order
    env.root.cold = Cold
    env.tm.commit()
    env.db.close()
    env = open()
    const Cold2 = arr<ZBigArray<'uint8'>>(env, 'cold')
    expect(Cold2.order).to.equal('C')
    expect(Cold2.strides).to.deep.equal([2, 1])
  })

  it('refuses storage that loader threads cannot open, and arrays outside a connection', () => {
    const db = new DB(new MemoryStorage())
    dbs.push(db)
    const env = connect(db)
    env.root.a = new ZBigArray([10], 'float64', { blksize: PS })
    env.tm.commit()
    expect(() => (env.root.a as ZBigArray).open({ ram: ram() })).to.throw(/memory|another thread|shar/i)
    expect(() => new ZBigArray([10], 'float64').get(0)).to.throw(TypeError, /connection/)
    expect(() => new ZBigArray([10], 'nope' as 'float64')).to.throw(TypeError, /unsupported dtype/)
  })

  it('works once added to a connection, before its first commit', () => {
    const e = open()
    const A = new ZBigArray([3 * PS], 'int16', { blksize: PS })
    e.conn.add(A)
    A.open({ ram: ram(8) })
    arrays.push(A as ZBigArray<DType>)
    expect(A.get(PS)).to.equal(0)
    A.assign(3, [PS - 1, PS + 1])
    e.root.late = A
    e.tm.commit()
    const e2 = connect(e.db)
    const B = arr<ZBigArray<'int16'>>(e2, 'late')
    expect([B.get(PS - 2), B.get(PS - 1), B.get(PS), B.get(PS + 1)]).to.deep.equal([0, 3, 3, 0])
  })

  it('closes its handle with its connection, and reopens it when the connection is reused', () => {
    const e = open()
    e.root.z = new ZBigArray([2 * PS], 'uint8', { blksize: PS })
    e.tm.commit()
    const A = e.root.z as ZBigArray<'uint8'>
    A.open({ ram: ram(8) })
    A.set(5, 5)
    e.tm.commit()
    const fh = A.fileh
    expect(A.get(5)).to.equal(5) // keeps its page mapped until the job ends
    e.conn.close()
    expect(fh.closed).to.equal(true)
    // the pooled connection comes back: the array opens a new handle that follows it
    const again = e.db.open({ transactionManager: e.tm }) as unknown as Connection
    expect(again).to.equal(e.conn)
    expect(A.fileh).not.to.equal(fh)
    arrays.push(A as ZBigArray<DType>)
    const e2 = connect(e.db)
    const B = arr<ZBigArray<'uint8'>>(e2, 'z')
    B.set(5, 6)
    e2.tm.commit()
    e.tm.begin()
    expect(A.get(5)).to.equal(6)
  })

  it('isolation: another connection sees data and shape changes at its next transaction boundary', () => {
    const e1 = open()
    e1.root.z = new ZBigArray([8 * PS], 'float64', { blksize: PS })
    e1.tm.commit()
    const e2 = connect(e1.db)
    const A1 = arr<ZBigArray<'float64'>>(e1, 'z')
    const A2 = arr<ZBigArray<'float64'>>(e2, 'z')
    const v2 = A2.slice() as Num
    expect(v2.get(PS)).to.equal(0)
    A1.assign(2.5, [PS / 8 - 1, PS / 8 + 1]) // across a page edge
    A1.set(5 * PS, 7)
    A1.resize([16 * PS])
    expect(A2.shape).to.deep.equal([8 * PS])
    e1.tm.commit()
    // e2 keeps its snapshot until its next transaction
    expect(v2.get(PS / 8)).to.equal(0)
    expect(A2.shape).to.deep.equal([8 * PS])
    e2.tm.begin()
    expect(A2.shape).to.deep.equal([16 * PS])
    expect(v2.get(PS / 8)).to.equal(2.5) // the old view shows the new data of its pages
    expect(v2.get(PS / 8 - 1)).to.equal(2.5)
    expect(A2.get(5 * PS)).to.equal(7)
    expect(A2.get(16 * PS - 1)).to.equal(0)
    // and back: e2 writes, e1 sees it after its boundary
    A2.set(16 * PS - 1, -1)
    e2.tm.commit()
    expect(A1.get(16 * PS - 1)).to.equal(0)
    e1.tm.begin()
    expect(A1.get(16 * PS - 1)).to.equal(-1)
  })

  it('get of an element whose page is not in memory reads one chunk of a ZBlk1 block, at the snapshot, without loading the page', () => {
    const e1 = open()
    const n = (4 * PS) / 8
    e1.root.z = new ZBigArray([n], 'float64', { blksize: PS, format: 'ZBlk1' })
    e1.tm.commit()
    const A1 = arr<ZBigArray<'float64'>>(e1, 'z')
    for (let i = 0; i < n; i += 97) A1.set(i, i * 0.5)
    A1.set(n - 1, -3)
    e1.tm.commit()
    for (let pg = 0; pg < 4; pg++) expect(A1.zfile.blktab.get(pg)).to.be.instanceOf(ZBlk1)
    const e2 = connect(e1.db)
    const A2 = arr<ZBigArray<'float64'>>(e2, 'z')
    const fh = A2.fileh
    const loads = virtmemStats().loads
    // one get per page, each into another page: nothing is loaded
    expect(A2.get(97 * 3)).to.equal(97 * 1.5)
    expect(A2.get(n - 1)).to.equal(-3)
    expect(A2.get(PS / 8 + 1)).to.equal(0) // a zero chunk (not stored)
    expect(A2.get(97 * 300)).to.equal(97 * 150)
    expect([0, 1, 2, 3].map((pg) => fh.pageState(pg))).to.deep.equal(['empty', 'empty', 'empty', 'empty'])
    expect(virtmemStats().loads).to.equal(loads)
    // another connection's commit is seen at the boundary, not before
    A1.set(97 * 3, 42)
    e1.tm.commit()
    A2.releaseMappings()
    expect(A2.get(97 * 3)).to.equal(97 * 1.5)
    e2.tm.begin()
    expect(A2.get(n - 1)).to.equal(-3)
    expect(A2.get(97 * 3)).to.equal(42)
    expect(fh.pageState(0)).to.equal('empty')
    // a second get in the same page maps it: a walk loads the page once
    expect(A2.get(97 * 3 + 97)).to.equal(97 * 2)
    expect(fh.pageState(0)).to.equal('loaded')
    // a set into a page not in memory writes its chunk in the connection, which get reads
    A2.set(n - 1, 9)
    expect(fh.pageState(3)).to.equal('empty')
    A2.releaseMappings()
    expect(A2.get(n - 1)).to.equal(9)
    expect(fh.pageState(3)).to.equal('empty')
    e2.tm.abort()
    A2.releaseMappings()
    expect(A2.get(n - 1)).to.equal(-3)
    // a ZBlk0 block: the element is read from its record (a range read), then a second get
    // into the same page loads it
    A1.zfile.format = 'ZBlk0'
    A1.assign(1.25, [PS / 8, (2 * PS) / 8])
    e1.tm.commit()
    e2.tm.begin()
    expect(A2.zfile.blktab.get(1)).to.be.instanceOf(ZBlk0)
    A2.releaseMappings()
    expect(fh.pageState(1)).to.equal('empty')
    expect(A2.get(PS / 8 + 5)).to.equal(1.25)
    expect(fh.pageState(1)).to.equal('empty')
    expect(A2.get(PS / 8 + 9)).to.equal(1.25)
    expect(fh.pageState(1)).to.equal('loaded')
  })

  it('get loads a page it has read without loading 32 times (scattered reads of a few pages load them)', () => {
    const e1 = open()
    const n = (2 * PS) / 8
    e1.root.z = new ZBigArray([n], 'float64', { blksize: PS, format: 'ZBlk1' })
    e1.tm.commit()
    const A1 = arr<ZBigArray<'float64'>>(e1, 'z')
    A1.set(0, 1)
    A1.set(n - 1, 2)
    e1.tm.commit()
    const e2 = connect(e1.db)
    const A = arr<ZBigArray<'float64'>>(e2, 'z')
    const fh = A.fileh
    for (let k = 0; k < 32; k++) {
      expect(A.get(k * 97)).to.equal(k === 0 ? 1 : 0) // page 0, then page 1: never the same page twice in a row
      expect(A.get(n - 1 - k * 97)).to.equal(k === 0 ? 2 : 0)
    }
    expect([fh.pageState(0), fh.pageState(1)]).to.deep.equal(['empty', 'empty'])
    expect(A.get(5)).to.equal(0) // the 33rd read of page 0 loads it
    expect([fh.pageState(0), fh.pageState(1)]).to.deep.equal(['loaded', 'empty'])
  })

  it('get reads the shape and data of the current transaction: a shrink not yet committed', () => {
    const e1 = open()
    const n = (4 * PS) / 8
    e1.root.z = new ZBigArray([n], 'float64', { blksize: PS, format: 'ZBlk1' })
    e1.tm.commit()
    const A1 = arr<ZBigArray<'float64'>>(e1, 'z')
    A1.set(PS / 8 + 3, 5)
    A1.set(2 * (PS / 8) + 3, 6)
    e1.tm.commit()
    A1.close()
    const A = arr<ZBigArray<'float64'>>(e1, 'z')
    A.resize([PS / 8 + 4]) // blocks 2, 3 truncated in this transaction
    expect(A.get(PS / 8 + 3)).to.equal(5)
    A.resize([n]) // growing over them reads zeros, as in the fault path
    A.releaseMappings()
    expect(A.get(2 * (PS / 8) + 3)).to.equal(0)
    e1.tm.abort()
    A.releaseMappings()
    expect(A.get(2 * (PS / 8) + 3)).to.equal(6)
  })

  it('data conflicts: two connections writing one block — the second commit fails, retry after abort succeeds', () => {
    const e1 = open()
    e1.root.z = new ZBigArray([4 * PS], 'uint8', { blksize: PS, format: 'ZBlk0' })
    e1.tm.commit()
    const e2 = connect(e1.db)
    const A1 = arr<ZBigArray<'uint8'>>(e1, 'z')
    const A2 = arr<ZBigArray<'uint8'>>(e2, 'z')
    A1.set(10, 1)
    A2.set(20, 2)
    e1.tm.commit()
    expect(() => e2.tm.commit()).to.throw(ConflictError)
    e2.tm.abort()
    expect(A2.get(10)).to.equal(1)
    expect(A2.get(20)).to.equal(0)
    A2.set(20, 2)
    e2.tm.commit()
    e1.tm.begin()
    expect([A1.get(10), A1.get(20)]).to.deep.equal([1, 2])
    // different blocks from two connections both commit
    A1.set(0, 5)
    A2.set(3 * PS, 6)
    e1.tm.commit()
    e2.tm.commit()
    e1.tm.begin()
    expect([A1.get(0), A1.get(3 * PS)]).to.deep.equal([5, 6])
  })

  it('shape conflicts: two concurrent resizes conflict; the retry sees the other shape', () => {
    const e1 = open()
    e1.root.z = new ZBigArray([10, 3], 'int32', { blksize: PS })
    e1.tm.commit()
    const e2 = connect(e1.db)
    const A1 = arr<ZBigArray<'int32'>>(e1, 'z')
    const A2 = arr<ZBigArray<'int32'>>(e2, 'z')
    A1.append([1, 2, 3])
    A2.append([4, 5, 6])
    e1.tm.commit()
    expect(() => e2.tm.commit()).to.throw(ConflictError)
    e2.tm.abort()
    expect(A2.shape).to.deep.equal([11, 3])
    A2.append([4, 5, 6])
    e2.tm.commit()
    e1.tm.begin()
    expect(A1.shape).to.deep.equal([12, 3])
    const rows = A1.toArray() as Num
    expect([10, 11].flatMap((i) => [0, 1, 2].map((j) => rows.get(i, j)))).to.deep.equal([1, 2, 3, 4, 5, 6])
  })

  it('shrinking truncates the blocks (committed), growing again reads zeros, in one transaction and after', () => {
    const e1 = open()
    e1.root.z = new ZBigArray([8 * PS], 'uint8', { blksize: PS })
    e1.tm.commit()
    const A = arr<ZBigArray<'uint8'>>(e1, 'z')
    A.assign(9)
    e1.tm.commit()
    expect([...A.zfile.blktab.keys()]).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7])
    expect(() => A.resize([-1])).to.throw(TypeError, /non-negative/)
    expect(() => A.resize([4, 2])).to.throw(RangeError, /major axis/)
    // shrink to 2.5 pages and grow back in the same transaction: the tail reads zeros
    A.resize([2 * PS + PS / 2])
    expect([...A.zfile.blktab.keys()]).to.deep.equal([0, 1, 2])
    A.resize([8 * PS])
    expect([A.get(2 * PS + PS / 2 - 1), A.get(2 * PS + PS / 2), A.get(5 * PS), A.get(8 * PS - 1)]).to.deep.equal([9, 0, 0, 0])
    e1.tm.abort()
    expect(A.shape).to.deep.equal([8 * PS])
    expect([A.get(2 * PS + PS / 2), A.get(8 * PS - 1)]).to.deep.equal([9, 9])
    // shrink, commit: the blocks are gone from the database; growing reads zeros
    A.resize([2 * PS + PS / 2])
    e1.tm.commit()
    const e2 = connect(e1.db)
    const B = arr<ZBigArray<'uint8'>>(e2, 'z')
    expect([...B.zfile.blktab.keys()]).to.deep.equal([0, 1, 2])
    A.resize([8 * PS])
    expect([A.get(2 * PS + PS / 2 - 1), A.get(2 * PS + PS / 2), A.get(7 * PS)]).to.deep.equal([9, 0, 0])
    e1.tm.commit()
    e2.tm.begin()
    expect(B.shape).to.deep.equal([8 * PS])
    expect(ops.sum(B.slice() as Num)).to.equal(9 * (2 * PS + PS / 2))
  })

  it('walks an array larger than its RAM in chunks', () => {
    const e1 = open()
    e1.root.z = new ZBigArray([32 * PS / 8], 'float64', { blksize: PS })
    e1.tm.commit()
    const A = arr<ZBigArray<'float64'>>(e1, 'z', 4) // 4 pages of RAM for 32 pages of data
    for (const c of A.chunks({ bytes: 2 * PS })) {
      const v = c.array as NdArray<Float64Array>
      for (let i = 0; i < v.shape[0]!; i++) v.set(i, c.start + i)
      e1.tm.commit() // dirty pages can only leave RAM once written out
    }
    let sum = 0
    for (const c of A.chunks({ bytes: 3 * PS })) sum += ops.sum(c.array as NdArray<Float64Array>)
    const n = (32 * PS) / 8
    expect(sum).to.equal((n * (n - 1)) / 2)
  })
})
