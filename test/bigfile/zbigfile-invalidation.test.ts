// ZBigFile between two connections: isolation, exact invalidation (counted), conflicts — also
// of a block whose format changes (the 'auto' heuristic): its new block object must still
// conflict with a concurrent change of the old one, in either commit order.
import { expect } from 'chai'
import fs from 'node:fs'
import path from 'node:path'

import { type Mapping, RAM, ZBigFile, type ZBigFileH } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { ConflictError, DB, SQLiteStorage, type Connection } from '@wendelin/zodb'

import { PS, closeRamWhenFree, tmpDir, writeAndCommit } from './helpers.js'

interface Side {
  tm: TransactionManager
  conn: Connection
  zf: ZBigFile
  h: ZBigFileH
  m: Mapping
  b: Uint8Array
}

describe('ZBigFile: two connections', () => {
  let dir: string
  let db: DB
  let rams: RAM[] = []
  let sides: Side[] = []

  beforeEach(() => {
    dir = tmpDir()
    db = new DB(new SQLiteStorage(path.join(dir, 'db.sqlite')))
  })
  afterEach(async () => {
    for (const s of sides) {
      s.tm.abort()
      s.m.unmap()
      s.h.close()
    }
    sides = []
    db.close()
    // a readahead load may still be finishing in a frame of the RAM
    for (const r of rams.splice(0))
      await closeRamWhenFree(r)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  function setup(nblocks: number, format: 'ZBlk0' | 'ZBlk1' | 'auto' = 'ZBlk0', init?: (b: Uint8Array) => void): void {
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm })
    const zf = new ZBigFile(PS, { format })
    ;(conn.root as Record<string, unknown>).zfile = zf
    tm.commit()
    if (init) {
      const ram = new RAM({ pageSize: PS, limit: Math.max(8, nblocks) * PS })
      rams.push(ram)
      writeAndCommit(zf, tm, ram, nblocks, init)
    }
    conn.close()
  }

  function side(pages: number): Side {
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm }) as unknown as Connection
    const zf = (conn.root as Record<string, unknown>).zfile as ZBigFile
    const ram = new RAM({ pageSize: PS, limit: 256 * PS })
    rams.push(ram)
    const h = zf.open({ ram })
    const m = h.mmap(0, pages) // kept: a Mapping collected while its buffer lives cannot be unmapped
    const s = { tm, conn, zf, h, m, b: m.bytes() }
    sides.push(s)
    return s
  }

  const at = (s: Side, pg: number, i = 0) => s.b[pg * PS + i]!
  function load(s: Side, pages: number[]): void {
    for (const pg of pages) void at(s, pg)
    for (const pg of pages) expect(s.h.pageState(pg)).to.equal('loaded')
  }

  it('isolation: a connection sees its snapshot until its next transaction; then only the changed block is invalidated', () => {
    setup(4, 'ZBlk0', (b) => {
      for (let pg = 0; pg < 4; pg++) b.fill(pg + 1, pg * PS, (pg + 1) * PS)
    })
    const A = side(4)
    const B = side(4)
    load(B, [0, 1, 2, 3])
    A.b[1 * PS + 7] = 99
    A.tm.commit()
    // B still sees its snapshot, even after its page is evicted and loaded again
    expect(at(B, 1, 7)).to.equal(2)
    B.h.fileh.invalidatePage(1)
    expect(at(B, 1, 7)).to.equal(2)
    B.tm.begin()
    expect(B.h.stats.lastInvalidated).to.deep.equal([1])
    expect([0, 2, 3].map((pg) => B.h.pageState(pg))).to.deep.equal(['loaded', 'loaded', 'loaded'])
    expect(at(B, 1, 7)).to.equal(99)
    expect(at(B, 1, 6)).to.equal(2)
  })

  it('a hole that got data is invalidated, other holes are not', () => {
    setup(2, 'ZBlk0', (b) => b.fill(1, 0, PS))
    const A = side(8)
    const B = side(8)
    load(B, [0, 3, 4, 5])
    A.b[4 * PS] = 5
    A.tm.commit()
    B.tm.begin()
    expect(B.h.stats.lastInvalidated).to.deep.equal([4])
    expect(at(B, 4)).to.equal(5)
    expect(at(B, 3)).to.equal(0)
  })

  it('a block rewritten in another format is invalidated (same bytes, new block object)', () => {
    setup(3, 'ZBlk0', (b) => b.fill(7, 0, 3 * PS))
    const A = side(3)
    const B = side(3)
    load(B, [0, 1, 2])
    A.zf.format = 'ZBlk1'
    A.b[2 * PS + 1] = 8
    A.tm.commit()
    B.tm.begin()
    expect(B.h.stats.lastInvalidated).to.deep.equal([2])
    expect(at(B, 2, 1)).to.equal(8)
  })

  it('a truncated file: blocks cut off are invalidated, holes and kept blocks are not', () => {
    setup(6, 'ZBlk0', (b) => b.fill(3, 0, 6 * PS))
    const A = side(8)
    const B = side(8)
    load(B, [0, 1, 4, 5, 7])
    A.zf.truncate(4)
    A.tm.commit()
    B.tm.begin()
    expect(B.h.stats.lastInvalidated).to.deep.equal([4, 5])
    expect(at(B, 5)).to.equal(0)
    expect(at(B, 1)).to.equal(3)
  })

  it('a block table whose buckets split and merge: no block is invalidated but the changed ones', () => {
    const n = 70 // the IOBTree bucket holds 60: block 60 splits the inline bucket
    setup(n, 'ZBlk0', (b) => {
      for (let pg = 0; pg < 60; pg++) b[pg * PS] = pg + 1
    })
    const A = side(n)
    const B = side(n)
    load(B, [0, 30, 59, 61])
    const rechecked = B.h.stats.rechecked
    for (let pg = 60; pg < n; pg++) A.b[pg * PS] = 1 // the bucket splits
    A.tm.commit()
    B.tm.begin()
    expect(B.h.stats.lastInvalidated).to.deep.equal([61])
    expect(B.h.stats.rechecked - rechecked).to.equal(4)
    expect(at(B, 61)).to.equal(1)
    expect(at(B, 30)).to.equal(31)
    // merge: the second bucket loses every key (blocks truncated), the first keeps its blocks
    load(B, [0, 30, 59, 61, 65])
    A.tm.begin()
    A.zf.truncate(60)
    A.tm.commit()
    B.tm.begin()
    expect(B.h.stats.lastInvalidated).to.deep.equal([61, 65])
    expect([0, 30, 59].map((pg) => B.h.pageState(pg))).to.deep.equal(['loaded', 'loaded', 'loaded'])
  })

  it('a load in flight at a boundary never leaves the old snapshot in the page', async () => {
    setup(2, 'ZBlk0', (b) => b.fill(1, 0, 2 * PS))
    const A = side(2)
    const B = side(2)
    for (let round = 0; round < 5; round++) {
      A.tm.begin()
      A.b[round] = 50 + round
      A.tm.commit()
      B.h.fileh.invalidatePage(0)
      const loading = B.h.fileh.load({ pgoffset: 0, pglen: 1 }) // queued for a loader at B's old snapshot
      B.tm.begin() // the boundary: the page is loading, or loaded from the old snapshot
      await loading
      expect(at(B, 0, round)).to.equal(50 + round, `round ${round}`)
    }
  })

  it('two connections writing one block: the second gets a ConflictError, keeps its pages, and succeeds after abort and retry', () => {
    setup(2, 'ZBlk0', (b) => b.fill(1, 0, 2 * PS))
    const A = side(2)
    const B = side(2)
    A.b[10] = 10
    B.b[20] = 20
    A.tm.commit()
    expect(() => B.tm.commit()).to.throw(ConflictError)
    // memory as before the commit: still dirty with B's change
    expect(B.h.dirtyPages()).to.deep.equal([0])
    expect(at(B, 0, 20)).to.equal(20)
    B.tm.abort()
    expect(at(B, 0, 10)).to.equal(10) // the other's data
    expect(at(B, 0, 20)).to.equal(1)
    B.b[20] = 20
    B.tm.commit()
    A.tm.begin()
    expect(A.h.stats.lastInvalidated).to.deep.equal([0])
    expect([at(A, 0, 10), at(A, 0, 20)]).to.deep.equal([10, 20])
  })

  it('pages dirtied after a failed commit are discarded by the abort', () => {
    setup(1, 'ZBlk0', (b) => b.fill(1, 0, PS))
    const A = side(1)
    const B = side(1)
    A.b[10] = 10
    B.b[20] = 20
    A.tm.commit()
    expect(() => B.tm.commit()).to.throw(ConflictError)
    B.b[30] = 30 // still the failed transaction's memory
    B.tm.abort()
    expect(B.h.dirtyPages()).to.deep.equal([])
    expect([at(B, 0, 10), at(B, 0, 20), at(B, 0, 30)]).to.deep.equal([10, 1, 1])
  })

  it("a doomed transaction's abort discards the pages", () => {
    setup(1, 'ZBlk0', (b) => b.fill(1, 0, PS))
    const A = side(1)
    A.b[5] = 5
    A.tm.doom()
    A.tm.abort()
    expect(A.h.dirtyPages()).to.deep.equal([])
    expect(at(A, 0, 5)).to.equal(1)
  })

  it('two connections writing different blocks of one file both commit', () => {
    setup(2, 'ZBlk0', (b) => b.fill(1, 0, 2 * PS))
    const A = side(4)
    const B = side(4)
    A.b[0] = 5
    B.b[3 * PS] = 6 // a new block: the blktab bucket changes on both sides
    A.tm.commit()
    B.tm.commit()
    A.tm.begin()
    expect([at(A, 0), at(A, 3)]).to.deep.equal([5, 6])
    expect([at(B, 0), at(B, 3)]).to.deep.equal([5, 6])
  })

  it('after its own commit a handle keeps its pages and sees later changes of others', () => {
    setup(3, 'ZBlk1', (b) => b.fill(2, 0, 3 * PS))
    const A = side(3)
    const B = side(3)
    load(A, [0, 1, 2])
    A.b[PS] = 9
    A.tm.commit()
    expect(A.h.stats.lastInvalidated).to.deep.equal([])
    expect([0, 1, 2].map((pg) => A.h.pageState(pg))).to.deep.equal(['loaded', 'loaded', 'loaded'])
    B.tm.begin() // B's snapshot moves past A's commit (else both changed chunk 0 of block 1)
    B.b[PS + 1] = 7
    B.tm.commit()
    A.tm.begin()
    expect(A.h.stats.lastInvalidated).to.deep.equal([1])
    expect([at(A, 1, 0), at(A, 1, 1)]).to.deep.equal([9, 7])
  })
})

describe('ZBigFile: a block rewritten in another format by a concurrent transaction', () => {
  let dir: string
  let db: DB
  let ram: RAM
  let sides: Side[] = []

  beforeEach(() => {
    dir = tmpDir()
    db = new DB(new SQLiteStorage(path.join(dir, 'db.sqlite')))
    ram = new RAM({ pageSize: PS, limit: 32 * PS })
  })
  afterEach(async () => {
    for (const s of sides) {
      s.tm.abort()
      s.m.unmap()
      s.h.close()
    }
    sides = []
    db.close()
    await closeRamWhenFree(ram)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  /** A file of one block of ones, stored as `format`, committed; then written as 'auto'. */
  function setup(format: 'ZBlk0' | 'ZBlk1'): void {
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm })
    const zf = new ZBigFile(PS, { format })
    ;(conn.root as Record<string, unknown>).zfile = zf
    tm.commit()
    writeAndCommit(zf, tm, ram, 1, (b) => b.fill(1, 0, PS))
    expect(zf.blktab.get(0)!.format).to.equal(format)
    zf.format = 'auto'
    tm.commit()
    conn.close()
  }

  function side(): Side {
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm }) as unknown as Connection
    const zf = (conn.root as Record<string, unknown>).zfile as ZBigFile
    const h = zf.open({ ram })
    const m = h.mmap(0, 1)
    const s = { tm, conn, zf, h, m, b: m.bytes() }
    void s.b[0] // loaded at the side's snapshot
    sides.push(s)
    return s
  }

  function committed(): Uint8Array {
    const s = side()
    return s.b.slice()
  }

  it('ZBlk0 rewritten in place first, then replaced by ZBlk1 from the older snapshot: the second commit conflicts', () => {
    setup('ZBlk0')
    const A = side()
    const B = side()
    A.b.fill(2) // every chunk: 'auto' keeps ZBlk0, changed in place
    A.tm.commit()
    B.b[100] = 9 // one chunk: 'auto' makes it a new ZBlk1 object
    expect(() => B.tm.commit()).to.throw(ConflictError)
    B.tm.abort()
    const now = committed()
    expect([now[0], now[100]]).to.deep.equal([2, 2]) // A's write is there
  })

  it('ZBlk0 replaced by ZBlk1 first, then rewritten in place from the older snapshot: the second commit conflicts', () => {
    setup('ZBlk0')
    const A = side()
    const B = side()
    B.b[100] = 9 // one chunk: a new ZBlk1 object
    B.tm.commit()
    A.b.fill(2) // every chunk: the old ZBlk0 object, changed in place
    expect(() => A.tm.commit()).to.throw(ConflictError)
    A.tm.abort()
    const now = committed()
    expect([now[0], now[100]]).to.deep.equal([1, 9]) // B's write is there
  })

  it('ZBlk1 changed in place first, then replaced by ZBlk0 from the older snapshot: the second commit conflicts', () => {
    setup('ZBlk1')
    const A = side()
    const B = side()
    A.b[100] = 9 // one chunk: ZBlk1 changed in place
    A.tm.commit()
    B.b.fill(3) // every chunk: a new ZBlk0 object
    expect(() => B.tm.commit()).to.throw(ConflictError)
    B.tm.abort()
    const now = committed()
    expect([now[0], now[100]]).to.deep.equal([1, 9])
  })
})
