// ZBigArray.set of an element whose page is not in memory writes the one 4 KiB chunk of a ZBlk1
// block in the connection (ZBigFileH.poke) instead of loading the page: what every other way
// of looking at the array sees of it, and when set falls back to loading the page.
import { expect } from 'chai'
import type { NdArray } from 'ndarray'
import path from 'node:path'

import { ZBlk0, ZBlk1, virtmemStats } from '@wendelin/bigfile'
import { ZBigArray, type DType } from '@wendelin/bigarray'
import { TransactionManager } from '@wendelin/transaction'
import { ConflictError, DB, SQLiteStorage, type Connection } from '@wendelin/zodb'

import { PS, cleanup, ram, tmpDir } from './helpers.js'

type Num = NdArray<Float64Array>

interface Env {
  db: DB
  tm: TransactionManager
  conn: Connection
  root: Record<string, unknown>
}

describe('ZBigArray: set without loading the page (ZBlk1 blocks)', () => {
  let dbs: DB[] = []
  let arrays: Array<ZBigArray<DType>> = []
  let file = ''
  const n = (4 * PS) / 8 // 4 pages of float64

  beforeEach(() => {
    file = path.join(tmpDir(), 'db.sqlite')
  })
  afterEach(() => {
    for (const a of arrays.splice(0)) {
      try {
        ;(a._p_jar as Connection).transactionManager.abort()
      } catch {}
      try {
        for (const m of a.fileh.fileh.liveMappings()) m.unmap()
        a.close()
      } catch {}
    }
    for (const d of dbs.splice(0)) if (!d.closed) d.close()
    cleanup()
  })

  function connect(db: DB): Env {
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm }) as unknown as Connection
    return { db, tm, conn, root: conn.root as Record<string, unknown> }
  }
  function arr(env: Env): ZBigArray<'float64'> {
    const a = env.root.z as ZBigArray<'float64'>
    a.open({ ram: ram(64) })
    arrays.push(a)
    return a
  }
  /** A committed array whose 4 blocks are ZBlk1 with every chunk stored: a[i] = i + 1. */
  function setUp(format: 'ZBlk1' | 'auto' | 'ZBlk0' = 'ZBlk1'): Env {
    const db = new DB(new SQLiteStorage(file))
    dbs.push(db)
    const env = connect(db)
    env.root.z = new ZBigArray([n], 'float64', { blksize: PS, format: 'ZBlk1' })
    env.tm.commit()
    const A = arr(env)
    {
      using v = A.view()
      const a = (v.array as unknown as Num).data
      for (let i = 0; i < n; i++) a[i] = i + 1
    }
    env.tm.commit()
    A.zfile.format = format
    env.tm.commit()
    A.close()
    for (let pg = 0; pg < 4; pg++) expect(A.zfile.blktab.get(pg)).to.be.instanceOf(ZBlk1)
    return env
  }

  it('writes one chunk: nothing loaded, the page stays out of memory, one chunk and the block object committed', () => {
    const e1 = setUp()
    const e2 = connect(e1.db)
    const A = arr(e2)
    const fh = A.fileh
    const loads = virtmemStats().loads
    const i = PS / 8 + 1000 // page 1, chunk 1
    A.set(i, -7)
    A.set(3 * (PS / 8) + 5, -8) // page 3
    expect([0, 1, 2, 3].map((pg) => fh.pageState(pg))).to.deep.equal(['empty', 'empty', 'empty', 'empty'])
    const zblk = A.zfile.blktab.get(1) as ZBlk1
    const serials = [...zblk.chunktab.values()].map((c) => c._p_serial)
    e2.tm.commit()
    expect(virtmemStats().loads).to.equal(loads)
    expect(fh.dirtyPages()).to.deep.equal([])
    // only chunk 1 of block 1 got a new revision (and the block object)
    const after = [...zblk.chunktab.values()].map((c) => c._p_serial)
    expect(after.filter((s, k) => s !== serials[k]).length).to.equal(1)
    expect(after[1]).to.not.equal(serials[1])
    // another connection sees both values at its next transaction, the rest unchanged
    const B = arr(e1)
    e1.tm.begin()
    const v = B.slice() as unknown as Num
    expect(v.data[i]).to.equal(-7)
    expect(v.data[3 * (PS / 8) + 5]).to.equal(-8)
    expect(v.data[i - 1]).to.equal(i)
    expect(v.data[i + 1]).to.equal(i + 2)
  })

  it('a mapping made afterwards shows the write (its page dirty), and so do get and a load under way', async () => {
    const e1 = setUp('auto')
    const A = arr(e1)
    const fh = A.fileh
    const i = 2 * (PS / 8) + 17
    A.set(i, 0.25)
    expect(fh.pageState(2)).to.equal('empty')
    A.releaseMappings()
    const loads = virtmemStats().loads
    expect(A.get(i)).to.equal(0.25) // read from the connection's chunk, still without the page
    expect(A.get(3)).to.equal(4) // (another page between: a second get in a row maps the page)
    expect(A.get(i + 1000)).to.equal(i + 1001) // another chunk of the block
    expect(fh.pageState(2)).to.equal('empty')
    expect(virtmemStats().loads).to.equal(loads)
    {
      using v = A.view([2 * (PS / 8), 2 * (PS / 8) + 20])
      expect((v.array as unknown as Num).data[17]).to.equal(0.25)
    }
    expect(fh.pageState(2)).to.equal('dirty')
    // a loaded page (no view over it) is written the same way; a mapping shows the write
    const k = 3 * (PS / 8) + 9
    expect(A.get(k - 1)).to.equal(k) // peeked: the page is still out
    await fh.fileh.load({ pgoffset: 3, pglen: 1 })
    expect(fh.pageState(3)).to.equal('loaded')
    A.set(k, -9)
    expect(fh.pageState(3)).to.equal('loaded')
    expect(A.get(k)).to.equal(-9)
    expect(fh.pageState(3)).to.equal('dirty')
    A.releaseMappings()
    // a page loaded (by readahead, say) after the write shows the snapshot: mapping it shows the write
    const j = PS / 8 + 3
    A.set(j, 0.5)
    await fh.fileh.load({ pgoffset: 1, pglen: 1 })
    expect(fh.pageState(1)).to.equal('loaded')
    {
      using v = A.view([PS / 8, 2 * (PS / 8)])
      const a = v.array as unknown as Num
      expect(a.data[a.offset + 3]).to.equal(0.5)
      expect(a.data[a.offset + 4]).to.equal(j + 2)
    }
    expect(fh.pageState(1)).to.equal('dirty')
    e1.tm.commit()
    const e2 = connect(e1.db)
    const B = arr(e2)
    expect([B.get(i), B.get(j), B.get(j + 1), B.get(i - 1), B.get(k), B.get(k + 1)]).to.deep.equal([0.25, 0.5, j + 2, i, -9, k + 2])
    expect(B.zfile.blktab.get(1)).to.be.instanceOf(ZBlk1)
  })

  it('abort drops the write; commits in a row each see the last', () => {
    const e1 = setUp()
    const A = arr(e1)
    const i = 100
    A.set(i, 1.5)
    e1.tm.abort()
    expect(A.get(i)).to.equal(i + 1)
    expect(A.fileh.pageState(0)).to.equal('empty')
    for (let k = 0; k < 5; k++) {
      A.set(i + 1024 * k, k) // one element of another chunk each time
      e1.tm.commit()
    }
    e1.tm.abort() // a new snapshot
    const v = A.slice([0, PS / 8]) as unknown as Num
    for (let k = 0; k < 5; k++) expect(v.data[v.offset + i + 1024 * k]).to.equal(k)
    expect(v.data[v.offset + i + 1]).to.equal(i + 2)
  })

  it('loads the page instead where writing the chunk alone would differ from storeblk or miss a view', () => {
    const e1 = setUp()
    const A = arr(e1)
    const fh = A.fileh
    // a dirty page
    {
      using v = A.view([0, 10])
      const a = (v.array as unknown as Num).data
      expect(a[1]).to.equal(2)
      a[1] = -0.5
    }
    expect(fh.pageState(0)).to.equal('dirty')
    A.set(2, -1)
    A.releaseMappings()
    // a live mapping over the page (a view whose page is not loaded yet)
    const view = A.view([PS / 8, PS / 8 + 10])
    expect(fh.pageState(1)).to.equal('empty')
    A.set(PS / 8 + 2, -2)
    expect(fh.pageState(1)).to.equal('dirty')
    expect((view.array as unknown as Num).data[(view.array as unknown as Num).offset + 2]).to.equal(-2)
    view.release()
    // a second set into the same page right after: a walk maps the page once
    A.set(2 * (PS / 8), -3)
    expect(fh.pageState(2)).to.equal('empty')
    A.set(2 * (PS / 8) + 1, -4)
    expect(fh.pageState(2)).to.equal('dirty')
    A.releaseMappings()
    // a zero chunk (not stored): the chunk tree changes, through storeblk
    A.assign(0, [3 * (PS / 8), 3 * (PS / 8) + 512]) // chunk 0 of page 3 becomes zeros
    e1.tm.commit()
    const e2 = connect(e1.db)
    const B = arr(e2)
    B.set(3 * (PS / 8) + 7, 1)
    expect(B.fileh.pageState(3)).to.equal('dirty')
    e2.tm.commit()
    // a value that makes a chunk zeros: the chunk leaves the tree, through storeblk
    const e3 = connect(e1.db)
    const C = arr(e3)
    C.set(3 * (PS / 8) + 7, 0)
    expect(C.fileh.pageState(3)).to.equal('dirty')
    C.releaseMappings()
    e3.tm.commit()
    // a file whose format is ZBlk0: storeblk turns the block into ZBlk0
    C.zfile.format = 'ZBlk0'
    e3.tm.commit()
    C.set(2 * (PS / 8) + 700, 2)
    expect(C.fileh.pageState(2)).to.equal('dirty')
    e3.tm.commit()
    expect(C.zfile.blktab.get(2)).to.be.instanceOf(ZBlk0)
    const e4 = connect(e1.db)
    const D = arr(e4)
    const got = [1, 2, PS / 8 + 2, 2 * (PS / 8), 2 * (PS / 8) + 1, 2 * (PS / 8) + 700, 3 * (PS / 8) + 7, 3 * (PS / 8) + 600].map((i) => D.get(i))
    expect(got).to.deep.equal([-0.5, -1, -2, -3, -4, 2, 0, 3 * (PS / 8) + 601])
    expect(D.zfile.blktab.get(3)).to.be.instanceOf(ZBlk1)
    expect((D.zfile.blktab.get(3) as ZBlk1).chunktab.has(0)).to.equal(false)
  })

  it('two connections writing one block this way: the second commit conflicts, its retry succeeds', () => {
    const e1 = setUp()
    const e2 = connect(e1.db)
    const A = arr(e1)
    const B = arr(e2)
    A.set(10, -1)
    B.set(2000, -2) // another chunk of the same block
    expect(A.fileh.pageState(0)).to.equal('empty')
    expect(B.fileh.pageState(0)).to.equal('empty')
    e1.tm.commit()
    expect(() => e2.tm.commit()).to.throw(ConflictError)
    e2.tm.abort()
    B.set(2000, -2)
    e2.tm.commit()
    e1.tm.begin()
    expect([A.get(10), A.get(2000), B.get(10), B.get(2000)]).to.deep.equal([-1, -2, -1, -2])
  })

  it('a page another connection has loaded is invalidated by the commit, and shows the write', () => {
    const e1 = setUp()
    const e2 = connect(e1.db)
    const A = arr(e1)
    const B = arr(e2)
    const v = B.slice([0, 10]) as unknown as Num
    expect(v.data[v.offset + 3]).to.equal(4)
    expect(B.fileh.pageState(0)).to.equal('loaded')
    A.set(3, 99)
    e1.tm.commit()
    expect(v.data[v.offset + 3]).to.equal(4) // isolation until the boundary
    e2.tm.begin()
    expect(B.fileh.stats.lastInvalidated).to.deep.equal([0])
    expect(v.data[v.offset + 3]).to.equal(99)
  })
})
