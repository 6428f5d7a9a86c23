// Page records: where the storage copies records (SQLite), a handle's commit stores each ZBlk0
// block as a record over the dirty page itself (its header, then the page's frame mapped right
// after it), not a copy. The page is the frame's only until the commit ends: the stored revisions
// must never change afterwards, and no block object may go on viewing a frame.
import { expect } from 'chai'
import fs from 'node:fs'

import { FileH, RAM, ZBigFile, ZBlk0, isPageRecord, setFrameRecordsLimit, type ZBigFileH } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { ConflictError, DB, SQLiteStorage, type Connection, type Storage, type Tid } from '@wendelin/zodb'

import { PS, ScratchFiles } from './helpers.js'

const BLOCKS = 4

interface Env {
  db: DB
  tm: TransactionManager
  conn: Connection
  zf: ZBigFile
  storage: Storage
}

function openEnv(storage: Storage): Env {
  const db = new DB(storage)
  const tm = new TransactionManager()
  const conn = db.open({ transactionManager: tm }) as unknown as Connection
  const zf = new ZBigFile(PS, { format: 'ZBlk0' })
  ;(conn.root as Record<string, unknown>).zfile = zf
  tm.commit()
  return { db, tm, conn, zf, storage }
}

/** Block `blk`'s bytes in round `round`: full (no trailing zeros), different every round. */
function blockValue(round: number, blk: number): number {
  return 1 + round * 16 + blk
}

/** What the committed ZBlk0 record of block `blk` holds at `tid`, as one value (each 4 KiB checked). */
function storedValue(e: Env, blk: number, tid: Tid): number {
  const zblk = e.zf.blktab.get(blk) as ZBlk0
  const rev = e.storage.loadBefore(zblk._p_oid!, tid + 1n)!
  const bytes = ZBlk0.recordBytes(rev.data)!
  expect(bytes.length).to.equal(PS)
  const v = bytes[0]!
  for (let i = 0; i < bytes.length; i += 4096) expect(bytes[i], `block ${blk} byte ${i}`).to.equal(v)
  return v
}

/** The records FileH.frameRecord made (over pages) while `fn` ran. */
function frameRecordsMade(fn: () => void): Uint8Array[] {
  const original = FileH.prototype.frameRecord
  const made: Uint8Array[] = []
  FileH.prototype.frameRecord = function (this: FileH, ...args: Parameters<FileH['frameRecord']>) {
    const r = original.apply(this, args)
    if (r !== null) made.push(r)
    return r
  }
  try {
    fn()
  } finally {
    FileH.prototype.frameRecord = original
  }
  return made
}

const countFrameRecords = (fn: () => void): number => frameRecordsMade(fn).length

/**
 * Runs `fn` after each transaction of `e`, before the boundary of any handle opened later: a
 * synchronizer registered first has its afterCompletion called first.
 */
function betweenCommitAndBoundary(e: Env, fn: () => void): void {
  e.tm.registerSynch({ beforeCompletion() {}, afterCompletion: fn, newTransaction() {} })
}

/** Memory mappings of this process now. */
function mappingCount(): number {
  return fs.readFileSync('/proc/self/maps', 'utf8').split('\n').length
}

describe('page records (ZBlk0 records over the pages a commit stores)', () => {
  const scratch = new ScratchFiles()
  const cleanups: Array<() => void> = []
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c()
  })
  after(() => scratch.removeAll())

  function openHandle(e: Env, pages = 16): ZBigFileH {
    const ram = new RAM({ pageSize: PS, limit: pages * PS })
    const h = e.zf.open({ ram })
    cleanups.push(() => {
      e.tm.abort()
      h.close()
      e.db.close()
      ram.close()
    })
    return h
  }

  /** Writes every block (`blocks`: which) through a mapping and commits: the commit's tid. */
  function writeRound(e: Env, h: ZBigFileH, round: number, blocks = [0, 1, 2, 3]): Tid {
    const m = h.mmap(0, BLOCKS)
    const b = m.bytes()
    for (const blk of blocks) b.fill(blockValue(round, blk), blk * PS, (blk + 1) * PS)
    m.unmap()
    e.tm.commit()
    return e.conn.before - 1n
  }

  it('on SQLite each commit stores the pages themselves; every revision stays as committed while the frames go on to other pages', () => {
    const e = openEnv(new SQLiteStorage(scratch.sqlite()))
    expect(e.storage.copiesRecords).to.equal(true)
    // 2 pages of RAM for 4 blocks: frames are reused by other pages after every commit
    const h = openHandle(e, 2)
    const tids: Tid[] = []
    for (let round = 0; round < 4; round++) {
      for (const pair of [[0, 1], [2, 3]]) {
        const made = countFrameRecords(() => tids.push(writeRound(e, h, round, pair)))
        expect(made, `round ${round}`).to.equal(2)
        // the commit is over: no block object views a page any more
        for (let blk = 0; blk < BLOCKS; blk++) {
          const zblk = e.zf.blktab.get(blk)
          if (zblk instanceof ZBlk0 && zblk._p_state !== -1) expect(isPageRecord(zblk.data), `block ${blk}`).to.equal(false)
        }
      }
    }
    for (let round = 0; round < 4; round++) {
      for (const [k, pair] of [[0, 1], [2, 3]].entries()) {
        for (const blk of pair) expect(storedValue(e, blk, tids[round * 2 + k]!)).to.equal(blockValue(round, blk))
      }
    }
    // and read back through another database over the same file
    const other = new DB(new SQLiteStorage((e.storage as SQLiteStorage).file))
    const zf = ((other.open().root as Record<string, unknown>).zfile as ZBigFile)
    const dest = new Uint8Array(PS)
    for (let blk = 0; blk < BLOCKS; blk++) {
      zf.readblk(blk, dest)
      expect([dest[0], dest[PS - 1]]).to.deep.equal([blockValue(3, blk), blockValue(3, blk)])
    }
    other.close()
  })

  it('a block written again with the same bytes gets no new revision (compared with its stored state)', () => {
    const e = openEnv(new SQLiteStorage(scratch.sqlite()))
    const h = openHandle(e)
    writeRound(e, h, 0)
    const serials = [0, 1, 2, 3].map((blk) => (e.zf.blktab.get(blk) as ZBlk0)._p_serial)
    const m = h.mmap(0, BLOCKS)
    const b = m.bytes()
    b[0] = blockValue(0, 0) // the same byte: page 0 is dirty, its block unchanged
    b.fill(blockValue(1, 1), PS, 2 * PS)
    m.unmap()
    e.tm.commit()
    const now = [0, 1, 2, 3].map((blk) => (e.zf.blktab.get(blk) as ZBlk0)._p_serial)
    expect(now[0]).to.equal(serials[0])
    expect(now[1]).to.not.equal(serials[1])
    expect(now.slice(2)).to.deep.equal(serials.slice(2))
  })

  it('a page gone before the handle\'s boundary (invalidated): its block object is released all the same', () => {
    const e = openEnv(new SQLiteStorage(scratch.sqlite()))
    let h: ZBigFileH | null = null
    let armed = false
    betweenCommitAndBoundary(e, () => {
      if (armed) h!.fileh.invalidatePage(0)
    })
    h = openHandle(e)
    armed = true
    const t = writeRound(e, h, 0)
    armed = false
    const zblk = e.zf.blktab.get(0) as ZBlk0
    expect(zblk._p_state === -1 || !isPageRecord(zblk.data)).to.equal(true)
    expect(storedValue(e, 0, t)).to.equal(blockValue(0, 0))
    // the next commit compares with what is stored, not with whatever the frame holds now
    const m = h.mmap(0, BLOCKS)
    m.bytes().fill(blockValue(1, 0), 0, PS)
    m.unmap()
    e.tm.commit()
    expect(storedValue(e, 0, e.conn.before - 1n)).to.equal(blockValue(1, 0))
  })

  it('are unmapped once their commit ended, in a loop of commits that never returns to the event loop', () => {
    const e = openEnv(new SQLiteStorage(scratch.sqlite()))
    const h = openHandle(e)
    writeRound(e, h, 0)
    const before = mappingCount()
    const made = frameRecordsMade(() => {
      for (let round = 1; round <= 40; round++) writeRound(e, h, round)
    })
    expect(made.length).to.equal(40 * BLOCKS)
    for (const r of made) expect(r.byteLength).to.equal(0) // released: detached, never another page's bytes
    // unreleased, each would hold two mappings (its header page and the frame) until collected
    expect(mappingCount() - before).to.be.below(40)
    for (let blk = 0; blk < BLOCKS; blk++) expect(storedValue(e, blk, e.conn.before - 1n)).to.equal(blockValue(40, blk) & 0xff) // bytes
  })

  it('a handle closed between its commit and its boundary still lets its block objects and records go', () => {
    const e = openEnv(new SQLiteStorage(scratch.sqlite()))
    let h: ZBigFileH | null = null
    let closeIt = false
    betweenCommitAndBoundary(e, () => {
      if (closeIt) h!.close()
    })
    const ram = new RAM({ pageSize: PS, limit: 16 * PS })
    cleanups.push(() => {
      e.tm.abort()
      e.db.close()
      ram.close()
    })
    h = e.zf.open({ ram })
    const m = h.mmap(0, 1)
    m.bytes().fill(1)
    m.unmap()
    closeIt = true
    const made = frameRecordsMade(() => e.tm.commit())
    closeIt = false
    expect(h.closed).to.equal(true)
    expect(made.length).to.equal(1)
    expect(made[0]!.byteLength).to.equal(0)
    const zblk = e.zf.blktab.get(0) as ZBlk0
    expect(zblk._p_state === -1 || !isPageRecord(zblk.data)).to.equal(true)
    // another handle on the same RAM (the frame is reused) writes the block: it is stored
    const h2 = e.zf.open({ ram })
    const m2 = h2.mmap(0, 1)
    m2.bytes().fill(2)
    m2.unmap()
    e.tm.commit()
    h2.close()
    expect(storedValue(e, 0, e.conn.before - 1n)).to.equal(2)
  })

  it('at most so many records live at once (each holds two memory mappings): the pages past the limit are copied', () => {
    const e = openEnv(new SQLiteStorage(scratch.sqlite()))
    const h = openHandle(e)
    setFrameRecordsLimit(3)
    try {
      let t: Tid = 0n
      expect(countFrameRecords(() => (t = writeRound(e, h, 1)))).to.equal(3)
      for (let blk = 0; blk < BLOCKS; blk++) expect(storedValue(e, blk, t)).to.equal(blockValue(1, blk))
      // released at the boundary: the next commit has the whole allowance again
      expect(countFrameRecords(() => (t = writeRound(e, h, 2)))).to.equal(3)
      for (let blk = 0; blk < BLOCKS; blk++) expect(storedValue(e, blk, t)).to.equal(blockValue(2, blk))
    } finally {
      setFrameRecordsLimit(0)
    }
  })

  it('a storage that keeps the records it is given gets copies', () => {
    const storage = new SQLiteStorage(scratch.sqlite())
    Object.defineProperty(storage, 'copiesRecords', { value: false })
    const e = openEnv(storage)
    const h = openHandle(e)
    const tids: Tid[] = []
    expect(countFrameRecords(() => tids.push(writeRound(e, h, 0), writeRound(e, h, 1)))).to.equal(0)
    for (let round = 0; round < 2; round++)
      for (let blk = 0; blk < BLOCKS; blk++) expect(storedValue(e, blk, tids[round]!)).to.equal(blockValue(round, blk))
  })

  it('a commit that fails at vote, then aborted: nothing stored, no block object left on a page, the next commit right', () => {
    const file = scratch.sqlite()
    const e = openEnv(new SQLiteStorage(file))
    const h = openHandle(e)
    const t0 = writeRound(e, h, 0)
    e.tm.begin() // our transaction's snapshot: before the other commit
    // another database commits block 2 first: ours conflicts at vote
    const db2 = new DB(new SQLiteStorage(file))
    const tm2 = new TransactionManager()
    const zf2 = (db2.open({ transactionManager: tm2 }).root as Record<string, unknown>).zfile as ZBigFile
    const h2 = zf2.open({ ram: new RAM({ pageSize: PS, limit: 8 * PS }) })
    const m2 = h2.mmap(2, 1)
    m2.bytes().fill(99)
    m2.unmap()
    tm2.commit()
    h2.close()
    db2.close()
    const m = h.mmap(0, BLOCKS)
    m.bytes().fill(blockValue(1, 2), 2 * PS, 3 * PS)
    m.bytes().fill(blockValue(1, 3), 3 * PS, 4 * PS)
    m.unmap()
    expect(() => e.tm.commit()).to.throw(ConflictError)
    e.tm.abort()
    for (let blk = 0; blk < BLOCKS; blk++) {
      const zblk = e.zf.blktab.get(blk) as ZBlk0
      if (zblk._p_state !== -1) expect(isPageRecord(zblk.data), `block ${blk}`).to.equal(false)
    }
    expect(storedValue(e, 3, e.conn.before - 1n)).to.equal(blockValue(0, 3))
    expect(storedValue(e, 2, e.conn.before - 1n)).to.equal(99)
    const t2 = writeRound(e, h, 2)
    for (let blk = 0; blk < BLOCKS; blk++) expect(storedValue(e, blk, t2)).to.equal(blockValue(2, blk))
    for (let blk = 0; blk < BLOCKS; blk++) expect(storedValue(e, blk, t0)).to.equal(blockValue(0, blk))
  })
})
