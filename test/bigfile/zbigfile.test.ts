// ZBigFile: blocks in the database, mapped by a handle that commits and invalidates with the
// transaction (behaviours of wendelin.core's test_filezodb.py, and exact invalidation).
import { expect } from 'chai'

import { RAM, ZBigFile, ZBigFileH, ZBlk0, ZBlk1, openZBigFileHandles } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { ConflictError, DB, MemoryStorage, SQLiteStorage, StorageNotShareableError, encodeStateRecord, type Connection, type Storage } from '@wendelin/zodb'

import { PS, ScratchFiles } from './helpers.js'

const scratch = new ScratchFiles()
after(() => scratch.removeAll())

interface Env {
  file: string
  db: DB
  tm: TransactionManager
  conn: Connection
}

function openEnv(file = scratch.sqlite()): Env {
  const db = new DB(new SQLiteStorage(file))
  const tm = new TransactionManager()
  const conn = db.open({ transactionManager: tm }) as unknown as Connection
  return { file, db, tm, conn }
}

const rams: RAM[] = []
function ram(pages = 64): RAM {
  const r = new RAM({ pageSize: PS, limit: pages * PS })
  rams.push(r)
  return r
}

/** Counts the calls of a storage's optional part-read method (running `before` at each). */
function countCalls(storage: Storage, name: 'loadBeforeInto' | 'loadBeforeRanges', before: () => void = () => {}): { calls: number } {
  const counter = { calls: 0 }
  const method = storage[name]!.bind(storage) as (...args: unknown[]) => unknown
  ;(storage as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
    counter.calls++
    before()
    return method(...args)
  }
  return counter
}

function fill(bytes: Uint8Array, pg: number, value: number): void {
  bytes.fill(value, pg * PS, (pg + 1) * PS)
}

function pageSum(bytes: Uint8Array, pg: number): number {
  let s = 0
  for (let i = pg * PS; i < (pg + 1) * PS; i++) s += bytes[i]!
  return s
}

describe('ZBigFile', () => {
  let envs: Env[] = []
  let handles: ZBigFileH[] = []
  function env(file?: string): Env {
    const e = openEnv(file)
    envs.push(e)
    return e
  }
  function open(zf: ZBigFile, pages = 64): ZBigFileH {
    const h = zf.open({ ram: ram(pages) })
    handles.push(h)
    return h
  }
  afterEach(() => {
    for (const h of handles) {
      if (h.closed) continue
      try {
        h.conn.transactionManager.abort()
      } catch {}
      for (const m of h.fileh.liveMappings()) m.unmap()
      h.close()
    }
    handles = []
    for (const e of envs) e.db.close()
    envs = []
    // fileh.close waits for its loads (readahead included), so the RAM closes at once
    for (const r of rams.splice(0)) r.close()
  })

  function newFile(e: Env, format: 'ZBlk0' | 'ZBlk1' | 'auto' = 'auto', blksize = PS): ZBigFile {
    const zf = new ZBigFile(blksize, { format })
    ;(e.conn.root as Record<string, unknown>).zfile = zf
    e.tm.commit()
    return zf
  }

  it('refuses a storage another thread cannot open', () => {
    const db = new DB(new MemoryStorage())
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm })
    const zf = new ZBigFile(PS)
    ;(conn.root as Record<string, unknown>).zfile = zf
    tm.commit()
    expect(() => zf.open({ ram: ram() })).to.throw(StorageNotShareableError)
    db.close()
  })

  it('reads zeros when empty, even before its first commit', () => {
    const e = env()
    const zf = new ZBigFile(PS)
    ;(e.conn.root as Record<string, unknown>).zfile = zf
    e.conn.add(zf)
    const h = open(zf)
    expect(h.snapshot).to.equal(0n) // never committed: no storage access
    const m = h.mmap(0, 4)
    const b = m.bytes()
    for (let pg = 0; pg < 4; pg++) expect(pageSum(b, pg)).to.equal(0)
    fill(b, 1, 7)
    e.tm.commit()
    expect(h.snapshot).to.equal(e.conn.before - 1n)
    expect(pageSum(b, 1)).to.equal(7 * PS)
    expect(pageSum(b, 0)).to.equal(0)
    m.unmap()
  })

  it('abort discards changes (twice in a row)', () => {
    const e = env()
    const zf = newFile(e)
    const h = open(zf)
    const m = h.mmap(0, 2)
    const b = m.bytes()
    for (let round = 0; round < 2; round++) {
      fill(b, 0, 5)
      expect(h.dirtyPages()).to.deep.equal([0])
      e.tm.abort()
      expect(h.dirtyPages()).to.deep.equal([])
      expect(pageSum(b, 0)).to.equal(0)
    }
    m.unmap()
  })

  it('commits, and a fresh database reads the data back', () => {
    const e = env()
    const zf = newFile(e)
    const h = open(zf)
    const m = h.mmap(0, 3)
    const b = m.bytes()
    fill(b, 0, 1)
    fill(b, 2, 3)
    b[PS + 5] = 9
    e.tm.commit()
    expect(h.dirtyPages()).to.deep.equal([])
    m.unmap()
    h.close()
    e.db.close()
    envs = envs.filter((x) => x !== e)
    const e2 = env(e.file)
    const zf2 = (e2.conn.root as Record<string, unknown>).zfile as ZBigFile
    const h2 = open(zf2)
    const m2 = h2.mmap(0, 4)
    const b2 = m2.bytes()
    expect(pageSum(b2, 0)).to.equal(PS)
    expect(b2[PS + 5]).to.equal(9)
    expect(pageSum(b2, 1)).to.equal(9)
    expect(pageSum(b2, 2)).to.equal(3 * PS)
    expect(pageSum(b2, 3)).to.equal(0)
    m2.unmap()
  })

  it('reloads pages after RAM reclaim, and survives cache minimization', () => {
    const e = env()
    const zf = newFile(e)
    const h = open(zf, 3) // RAM of 3 pages for a file of 8
    const m = h.mmap(0, 8)
    const b = m.bytes()
    for (let pg = 0; pg < 8; pg++) {
      fill(b, pg, pg + 1)
      e.tm.commit() // one page dirty at a time: the RAM limit holds
    }
    e.conn.cacheMinimize()
    for (let round = 0; round < 2; round++)
      for (let pg = 0; pg < 8; pg++) expect(pageSum(b, pg)).to.equal((pg + 1) * PS)
    expect(h.fileh.ram.stats().pagesLoaded).to.be.at.most(3)
    // rewrite after minimization
    e.conn.cacheMinimize()
    fill(b, 4, 200)
    e.tm.commit()
    e.conn.cacheMinimize()
    for (let pg = 0; pg < 8; pg++) expect(pageSum(b, pg)).to.equal((pg === 4 ? 200 : pg + 1) * PS)
    m.unmap()
  })

  it('the ZBigFile is never a ghost while a handle is open', () => {
    const e = env()
    const zf = newFile(e)
    const h = open(zf)
    e.conn.cacheMinimize()
    expect(zf._p_status).to.not.equal('ghost')
    // changed by another connection: the invalidation loads the new state at once
    const tm2 = new TransactionManager()
    const conn2 = e.db.open({ transactionManager: tm2 })
    ;((conn2.root as Record<string, unknown>).zfile as ZBigFile).format = 'ZBlk1'
    tm2.commit()
    conn2.close()
    e.tm.begin()
    expect(zf._p_status).to.not.equal('ghost')
    expect(zf.format).to.equal('ZBlk1')
    h.close()
    e.conn.cacheMinimize()
    expect(zf._p_status).to.equal('ghost')
  })

  it('closing handles releases them', () => {
    const e = env()
    const zf = newFile(e)
    const before = openZBigFileHandles()
    {
      using h = zf.open({ ram: ram() })
      expect(openZBigFileHandles()).to.equal(before + 1)
      const m = h.mmap(0, 1)
      m.bytes()[0] = 1
      e.tm.commit()
      m.unmap()
    }
    expect(openZBigFileHandles()).to.equal(before)
  })

  it('closes with its connection (or stops following it while mappings live)', () => {
    const e = env()
    const zf = newFile(e)
    const h1 = open(zf)
    const h2 = open(zf)
    const m1 = h1.mmap(0, 1)
    m1.bytes()[0] = 1
    e.tm.commit()
    m1.unmap()
    const m2 = h2.mmap(0, 1)
    expect(m2.bytes()[0]).to.equal(1)
    e.conn.close()
    expect(h1.closed).to.equal(true)
    expect(h2.closed).to.equal(false)
    expect(m2.bytes()[0]).to.equal(1)
    e.tm.begin() // no longer followed: nothing happens to h2
    m2.unmap()
    h2.close()
  })

  it('a handle nobody references is closed by the garbage collector', async () => {
    const e = env()
    const zf = newFile(e)
    const r = ram()
    const before = openZBigFileHandles()
    ;(() => {
      const h = zf.open({ ram: r })
      const m = h.mmap(0, 2)
      expect(m.bytes()[PS]).to.equal(0)
      m.unmap()
    })()
    expect(openZBigFileHandles()).to.equal(before + 1)
    e.conn.cacheMinimize()
    expect(zf._p_status).to.not.equal('ghost') // held open by the handle
    while (openZBigFileHandles() > before) {
      globalThis.gc!()
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
    expect(r.stats().bytesInUse).to.equal(0) // its pages are gone
    e.conn.cacheMinimize()
    expect(zf._p_status).to.equal('ghost')
  })

  it('a mapping keeps its handle alive (and the handle follows transactions meanwhile)', async () => {
    const e = env()
    const zf = newFile(e)
    const before = openZBigFileHandles()
    const m = (() => zf.open({ ram: ram() }).mmap(0, 1))() // the handle itself is dropped
    expect(m.bytes()[3]).to.equal(0)
    for (let i = 0; i < 5; i++) {
      globalThis.gc!()
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
    expect(openZBigFileHandles()).to.equal(before + 1)
    m.bytes()[3] = 42
    e.tm.commit() // the dropped handle still commits its page
    const w = open(zf)
    const wm = w.mmap(0, 1)
    expect(wm.bytes()[3]).to.equal(42)
    wm.unmap()
    m.unmap()
    m.fileh.close()
  })

  for (const format of ['ZBlk0', 'ZBlk1', 'auto'] as const) {
    it(`two handles of one file writing one block in one transaction: both show what the commit stored (${format})`, () => {
      const e = env()
      const zf = newFile(e, format)
      const a = open(zf)
      const b = open(zf)
      const ma = a.mmap(0, 1)
      const mb = b.mmap(0, 1)
      fill(ma.bytes(), 0, 1) // page 0 in both handles, different bytes
      mb.bytes()[5] = 2
      e.tm.commit() // stores both pages of block 0: the last stored is what the database has
      const e2 = env(e.file)
      const r = open((e2.conn.root as Record<string, unknown>).zfile as ZBigFile)
      const mr = r.mmap(0, 1)
      const stored = mr.bytes().slice(0, PS)
      expect([stored[0], stored[5]]).to.satisfy(([x, y]: number[]) => (x === 1 && y === 1) || (x === 0 && y === 2))
      // Neither handle keeps showing bytes that were not committed.
      expect(Buffer.compare(ma.bytes().subarray(0, PS), stored)).to.equal(0)
      expect(Buffer.compare(mb.bytes().subarray(0, PS), stored)).to.equal(0)
      e.tm.begin()
      expect(Buffer.compare(ma.bytes().subarray(0, PS), stored)).to.equal(0)
      mr.unmap()
      ma.unmap()
      mb.unmap()
    })
  }

  for (const [from, to] of [
    ['ZBlk0', 'ZBlk1'],
    ['ZBlk1', 'ZBlk0'],
    ['ZBlk0', 'auto'],
    ['ZBlk1', 'auto'],
    ['auto', 'ZBlk0'],
    ['auto', 'ZBlk1'],
  ] as const) {
    it(`keeps a block's data when its format changes from ${from} to ${to}`, () => {
      const e = env()
      const zf = newFile(e, from)
      const h = open(zf)
      const m = h.mmap(0, 1)
      const b = m.bytes()
      for (let i = 0; i < PS; i += 3) b[i] = i & 0xff
      e.tm.commit()
      zf.format = to
      b[1] = 77 // a small change
      e.tm.commit()
      e.conn.cacheMinimize()
      h.fileh.invalidatePage(0)
      const expected = new Uint8Array(PS)
      for (let i = 0; i < PS; i += 3) expected[i] = i & 0xff
      expected[1] = 77
      expect(Buffer.compare(b.subarray(0, PS), expected)).to.equal(0)
      const zblk = zf.blktab.get(0)!
      if (to === 'ZBlk0') expect(zblk).to.be.instanceOf(ZBlk0)
      if (to === 'ZBlk1') expect(zblk).to.be.instanceOf(ZBlk1)
      m.unmap()
    })
  }

  it('a loader copies a ZBlk0 block from its record without loading the object (same bytes, trailing zeros)', () => {
    const e = env()
    const zf = newFile(e, 'ZBlk0')
    const h = open(zf)
    const m = h.mmap(0, 2)
    const b = m.bytes()
    for (let i = 0; i < PS - 100; i++) b[i] = (i * 7) & 0xff || 1 // trailing 100 zero bytes: trimmed
    fill(b, 1, 9)
    e.tm.commit()
    m.unmap()
    // another connection, as a loader reads: the block objects are ghosts there
    const e2 = env(e.file)
    const zf2 = (e2.conn.root as Record<string, unknown>).zfile as ZBigFile
    const zblk = zf2.blktab.get(0)!
    expect(zblk).to.be.instanceOf(ZBlk0)
    expect(zblk._p_status).to.equal('ghost')
    const dest = new Uint8Array(PS).fill(0xee)
    expect(zblk.loadFrom(e2.db.storage, e2.conn.before, dest)).to.equal(true)
    expect(zblk._p_status).to.equal('ghost') // not decoded into the cache
    const expected = new Uint8Array(PS)
    zblk.loadInto(expected) // through the object
    expect(Buffer.compare(dest, expected)).to.equal(0)
    expect(dest[PS - 1]).to.equal(0)
    expect(dest[PS - 101]).to.not.equal(0)
    // a loaded object is used as it is
    const again = new Uint8Array(PS).fill(0xee)
    expect(zblk.loadFrom(e2.db.storage, e2.conn.before, again)).to.equal(false)
    expect(Buffer.compare(again, expected)).to.equal(0)
    // a record that is not a plain ZBlk0 state is not read raw
    expect(ZBlk0.recordBytes(new Uint8Array([1, 2, 3]))).to.equal(null)
  })

  it('a loader reads a big ZBlk0 block straight into the page where the storage can (loadBeforeInto), else through a copy', () => {
    const big = 4 * PS // data of 64 KiB or more: the record holds it in a bin 32
    const e = env()
    const zf = newFile(e, 'ZBlk0', big)
    const bigRam = new RAM({ pageSize: big, limit: 4 * big })
    rams.push(bigRam)
    const h = zf.open({ ram: bigRam })
    handles.push(h)
    const m = h.mmap(0, 1)
    const b = m.bytes()
    for (let i = 0; i < big - 100; i++) b[i] = (i * 7) & 0xff || 1 // trailing 100 zero bytes: trimmed
    const expected = b.slice()
    e.tm.commit()
    m.unmap()
    const e2 = env(e.file)
    const zblk = ((e2.conn.root as Record<string, unknown>).zfile as ZBigFile).blktab.get(0)!
    const storage = e2.db.storage
    const into = countCalls(storage, 'loadBeforeInto')
    const dest = new Uint8Array(big).fill(0xee)
    expect(zblk.loadFrom(storage, e2.conn.before, dest)).to.equal(true)
    expect(into.calls).to.equal(1)
    expect(zblk._p_status).to.equal('ghost')
    expect(Buffer.compare(dest, expected)).to.equal(0)
    // a storage that cannot: the same bytes, from the whole record
    storage.loadBeforeInto = undefined
    const dest2 = new Uint8Array(big).fill(0xee)
    expect(zblk.loadFrom(storage, e2.conn.before, dest2)).to.equal(true)
    expect(into.calls).to.equal(1)
    expect(Buffer.compare(dest2, expected)).to.equal(0)
  })

  it('stores a ZBlk0 block as the record the encoder writes for its state, written once from the page', () => {
    const e = env()
    const zf = newFile(e, 'ZBlk0')
    const h = open(zf)
    const m = h.mmap(0, 2)
    const b = m.bytes()
    for (let i = 0; i < PS - 100; i++) b[i] = (i * 13 + 1) & 0xff
    const storage = e.db.storage
    // the block object's data is a view of the record handed to the storage: copied from the page once
    let viewed = 0
    const store = storage.store.bind(storage)
    storage.store = (oid, serial, data, txn) => {
      const z = zf.blktab.get(0)
      if (z instanceof ZBlk0 && oid === z._p_oid && data.buffer === z.data.buffer && data.byteOffset + data.length === z.data.byteOffset + z.data.length) viewed++
      store(oid, serial, data, txn)
    }
    e.tm.commit()
    expect(viewed).to.equal(1)
    const zblk = zf.blktab.get(0) as ZBlk0
    const record = storage.loadBefore(zblk._p_oid!, 2n ** 63n)!.data
    const data = b.slice(0, PS - 100)
    expect(Buffer.compare(record, encodeStateRecord('wendelin.bigfile.ZBlk0', { data }, { persistentRef: () => { throw new Error('none') } }))).to.equal(0)
    // rewritten: a new record; the one before is unchanged (a storage may keep it)
    const before = record.slice()
    b.fill(7, 0, 10)
    e.tm.commit()
    expect(Buffer.compare(record, before)).to.equal(0)
    const again = storage.loadBefore(zblk._p_oid!, 2n ** 63n)!.data
    expect(Buffer.compare(ZBlk0.recordBytes(again)!.subarray(0, 10), Buffer.alloc(10, 7))).to.equal(0)
    m.unmap()
  })

  it('peek reads a ZBlk1 block\'s bytes or a hole without loading the page, and declines otherwise', () => {
    const e = env()
    const zf = new ZBigFile(PS, { format: 'ZBlk1' })
    ;(e.conn.root as Record<string, unknown>).zfile = zf
    e.conn.add(zf)
    const h = open(zf)
    const out = new Uint8Array(16).fill(0xee)
    expect(h.peek(PS + 8, out)).to.equal(true) // never committed: zeros
    expect(out.every((x) => x === 0)).to.equal(true)
    const m = h.mmap(0, 4)
    const b = m.bytes()
    for (let i = 0; i < PS; i++) b[i] = (i % 251) + 1
    b.fill(5, 2 * PS + 4090, 2 * PS + 4100) // across a chunk edge; the rest of block 2 is zeros
    e.tm.commit()
    m.unmap()
    const e2 = env(e.file)
    const zf2 = (e2.conn.root as Record<string, unknown>).zfile as ZBigFile
    const h2 = open(zf2)
    const at = (off: number, len: number) => {
      const d = new Uint8Array(len).fill(0xee)
      return h2.peek(off, d) ? [...d] : null
    }
    expect(at(4094, 4)).to.deep.equal([4094, 4095, 4096, 4097].map((i) => (i % 251) + 1)) // across a chunk edge
    expect(at(2 * PS + 4088, 16)).to.deep.equal([0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 0, 0, 0, 0])
    expect(at(PS + 100, 8)).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0]) // a hole
    expect(at(3 * PS + 100, 8)).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0])
    for (let pg = 0; pg < 4; pg++) expect(h2.pageState(pg)).to.equal('empty')
    expect(() => h2.peek(PS - 4, new Uint8Array(8))).to.throw(RangeError)
    // a page in memory: read it through a mapping
    const m2 = h2.mmap(0, 1)
    void m2.bytes()[0]
    expect(at(8, 8)).to.equal(null)
    m2.unmap()
    // a block table changed in the current transaction
    zf2.truncate(2)
    expect(at(2 * PS + 4090, 8)).to.equal(null)
    // still changed once a savepoint took the change (the objects are no longer _p_changed)
    e2.tm.get().savepoint()
    expect(at(2 * PS + 4090, 8)).to.equal(null)
    e2.tm.abort()
    expect(at(2 * PS + 4090, 2)).to.deep.equal([5, 5])
    // the connection moved past the handle's snapshot (conn.sync()): until the handle's boundary
    const m3 = h.mmap(2, 1)
    m3.bytes()[4090] = 9
    e.tm.commit()
    m3.unmap()
    const snapshot = h2.snapshot
    e2.conn.sync()
    expect(h2.snapshot).to.equal(snapshot)
    expect(at(2 * PS + 4090, 2)).to.equal(null)
    e2.tm.begin()
    expect(at(2 * PS + 4090, 2)).to.deep.equal([9, 5])
  })

  // blocks of 2 pages: a block with over 64 KiB of data keeps its bytes in a bin 32
  const BS = 2 * PS
  const openBS = (zf: ZBigFile, rangeReadBudgetMs = Infinity) => {
    const r = new RAM({ pageSize: BS, limit: 8 * BS })
    rams.push(r)
    const h = zf.open({ ram: r, rangeReadBudgetMs })
    handles.push(h)
    return h
  }

  it('peek reads a range of a ZBlk0 block\'s record up to 32 times per page, then declines (the page is better loaded)', () => {
    const e = env()
    const zf = newFile(e, 'ZBlk0', BS)
    const h = openBS(zf)
    const m = h.mmap(0, 3)
    const b = m.bytes()
    for (let i = 0; i < BS - 10; i++) b[i] = (i % 251) + 1 // trimmed: its last 10 bytes are zeros
    b.fill(3, BS, BS + 100) // under 64 KiB of data: a smaller record layout, loaded whole
    b.fill(4, 2 * BS, 3 * BS)
    e.tm.commit()
    m.unmap()
    const e2 = env(e.file)
    const zf2 = (e2.conn.root as Record<string, unknown>).zfile as ZBigFile
    const h2 = openBS(zf2)
    const at = (off: number, len: number) => {
      const d = new Uint8Array(len).fill(0xee)
      return h2.peek(off, d) ? [...d] : null
    }
    const storage = e2.db.storage
    const ranges = countCalls(storage, 'loadBeforeRanges')
    expect(at(100, 4)).to.deep.equal([100, 101, 102, 103].map((i) => (i % 251) + 1))
    expect(at(BS - 12, 8)).to.deep.equal([((BS - 12) % 251) + 1, ((BS - 11) % 251) + 1, 0, 0, 0, 0, 0, 0]) // across the trimmed end
    expect(at(2 * BS + 8, 2)).to.deep.equal([4, 4])
    expect(ranges.calls).to.equal(3)
    expect(at(BS + 50, 2)).to.equal(null) // the small record
    expect(at(BS - 4, 4)).to.deep.equal([0, 0, 0, 0]) // the third range read of page 0
    for (let k = 4; k <= 32; k++) expect(at(8, 1)).to.deep.equal([9]) // up to ZBLK0_RANGE_READS (32) of them
    expect(at(8, 1)).to.equal(null) // then one is declined (the page is to be loaded)
    expect(at(16, 1)).to.deep.equal([17]) // not loaded after all (or loaded and evicted): read again
    for (let pg = 0; pg < 3; pg++) expect(h2.pageState(pg)).to.equal('empty')
    // a ZBlk0 loaded in the connection is read there
    const zblk = zf2.blktab.get(0) as ZBlk0
    void zblk.data
    const before = ranges.calls
    expect(at(8, 2)).to.deep.equal([9, 10])
    expect(at(BS - 4, 4)).to.deep.equal([0, 0, 0, 0])
    expect(ranges.calls).to.equal(before)
    // another transaction rewrites page 2: the range is read at the handle's snapshot
    const m3 = h.mmap(2, 1)
    m3.bytes().fill(6)
    e.tm.commit()
    m3.unmap()
    expect(at(2 * BS + 8, 2)).to.deep.equal([4, 4]) // not yet seen here
    e2.tm.begin()
    expect(at(2 * BS + 8, 2)).to.deep.equal([6, 6])
  })

  it('peek stops reading ranges of a page once they took the handle\'s time budget (rangeReadBudgetMs), and refuses a bad one', () => {
    const e = env()
    const zf = newFile(e, 'ZBlk0', BS)
    const h = openBS(zf)
    const m = h.mmap(0, 2)
    m.bytes().fill(7)
    e.tm.commit()
    m.unmap()
    const e2 = env(e.file)
    const zf2 = (e2.conn.root as Record<string, unknown>).zfile as ZBigFile
    expect(() => zf2.open({ ram: ram(), rangeReadBudgetMs: -1 })).to.throw(RangeError, /rangeReadBudgetMs/)
    const h2 = openBS(zf2, 5)
    countCalls(e2.db.storage, 'loadBeforeRanges', () => {
      const until = performance.now() + 2 // a slow storage: 2 ms a range read
      while (performance.now() < until);
    })
    const d = new Uint8Array(1)
    // each read takes 2 ms or more: at most 3 fit in 5 ms (a loaded machine may make them
    // slower, and fewer fit), then one is declined and the page is to be loaded
    let reads = 0
    while (reads < 10 && h2.peek(8, d)) reads++
    expect(reads).to.be.within(1, 3)
    expect(h2.peek(BS + 8, d)).to.equal(true) // another page has its own budget
    expect(d[0]).to.equal(7)
  })

  it('ZBlk1 rewrites only changed chunks and stores no zero chunks', () => {
    const e = env()
    const zf = newFile(e, 'ZBlk1')
    const h = open(zf)
    const m = h.mmap(0, 1)
    const b = m.bytes()
    b.fill(1, 0, 3 * 4096) // 3 chunks of 16
    e.tm.commit()
    const zblk = zf.blktab.get(0) as ZBlk1
    expect(zblk.chunkCount()).to.equal(3)
    const chunks = [...zblk.chunktab.values()]
    const serials = chunks.map((c) => c._p_serial)
    b[4096 + 10] = 2 // chunk 1 only
    e.tm.commit()
    const after = [...zblk.chunktab.values()]
    expect(after).to.deep.equal(chunks) // same chunk objects
    expect(after.map((c) => c._p_serial !== serials[after.indexOf(c)])).to.deep.equal([false, true, false])
    b.fill(0, 0, 4096) // chunk 0 becomes zeros: dropped
    e.tm.commit()
    expect(zblk.chunkCount()).to.equal(2)
    m.unmap()
  })

  it('auto: ZBlk1 for small changes and appends, ZBlk0 for blocks written in bulk', () => {
    const e = env()
    const zf = newFile(e, 'auto')
    const h = open(zf)
    const m = h.mmap(0, 2)
    const b = m.bytes()
    b.fill(9, 0, PS) // block 0 filled
    b[PS] = 1 // block 1: a small append
    e.tm.commit()
    expect(zf.blktab.get(0)).to.be.instanceOf(ZBlk0)
    expect(zf.blktab.get(1)).to.be.instanceOf(ZBlk1)
    b[10] = 3 // small change of a ZBlk0 block: becomes ZBlk1
    e.tm.commit()
    expect(zf.blktab.get(0)).to.be.instanceOf(ZBlk1)
    b.fill(4, PS, 2 * PS) // bulk rewrite of a ZBlk1 block: becomes ZBlk0
    e.tm.commit()
    expect(zf.blktab.get(1)).to.be.instanceOf(ZBlk0)
    m.unmap()
  })
})
