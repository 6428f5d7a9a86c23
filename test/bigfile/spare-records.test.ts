// Spare ZBlk0 records: a commit's block records are written into again by a later commit only
// where the storage copied them (Storage.copiesRecords), and a committed record never changes.
import { expect } from 'chai'
import fs from 'node:fs'
import path from 'node:path'

import { RAM, ZBigFile, ZBlk0, spareZBlk0Records, type ZBigFileH } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { DB, MemoryStorage, SQLiteStorage, type Connection, type Storage, type Tid } from '@wendelin/zodb'

import { PS, tmpDir } from './helpers.js'

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

/** Block `blk`'s bytes in commit `round`: full (no trailing zeros), different every round. */
function blockValue(round: number, blk: number): number {
  return 1 + round * 16 + blk
}

/** What the committed ZBlk0 record of block `blk` holds at `tid`, as one value (or -1). */
function storedValue(e: Env, blk: number, tid: Tid): number {
  const zblk = e.zf.blktab.get(blk) as ZBlk0
  const rev = e.storage.loadBefore(zblk._p_oid!, tid + 1n)!
  const bytes = ZBlk0.recordBytes(rev.data)!
  expect(bytes.length).to.equal(PS)
  const v = bytes[0]!
  for (let i = 0; i < bytes.length; i += 4096) expect(bytes[i], `block ${blk} byte ${i}`).to.equal(v)
  return v
}

describe('spare ZBlk0 records', () => {
  const dirs: string[] = []
  const cleanups: Array<() => void> = []
  afterEach(() => {
    for (const c of cleanups.splice(0).reverse()) c()
  })
  after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
  })

  function sqlite(): SQLiteStorage {
    const d = tmpDir()
    dirs.push(d)
    return new SQLiteStorage(path.join(d, 'db.sqlite'))
  }

  function openHandle(e: Env): ZBigFileH {
    const ram = new RAM({ pageSize: PS, limit: 16 * PS })
    const h = e.zf.open({ ram })
    cleanups.push(() => {
      e.tm.abort()
      h.close()
      e.db.close()
      ram.close()
    })
    return h
  }

  /** Writes every block through a mapping and commits: the commit's tid. */
  function writeRound(e: Env, h: ZBigFileH, round: number): Tid {
    const m = h.mmap(0, BLOCKS)
    const b = m.bytes()
    for (let blk = 0; blk < BLOCKS; blk++) b.fill(blockValue(round, blk), blk * PS, (blk + 1) * PS)
    m.unmap()
    e.tm.commit()
    return e.conn.before - 1n
  }

  it('are written into again by the next commit on SQLite, and committed records stay as they were', () => {
    const e = openEnv(sqlite())
    expect(e.storage.copiesRecords).to.equal(true)
    const h = openHandle(e)
    const tids: Tid[] = []
    tids.push(writeRound(e, h, 0))
    // The first commit's records are spare now (their block objects are ghosts again).
    const kept = spareZBlk0Records.bytes
    expect(kept).to.be.at.least(BLOCKS * PS)
    for (let blk = 0; blk < BLOCKS; blk++) expect((e.zf.blktab.get(blk) as ZBlk0)._p_state).to.equal(-1)
    for (let round = 1; round < 4; round++) {
      tids.push(writeRound(e, h, round))
      expect(spareZBlk0Records.bytes).to.equal(kept) // taken by storeblk, given back after commit
    }
    for (let round = 0; round < tids.length; round++)
      for (let blk = 0; blk < BLOCKS; blk++) expect(storedValue(e, blk, tids[round]!)).to.equal(blockValue(round, blk))
    // Read back through another database over the same file: the last round.
    const other = new DB(new SQLiteStorage((e.storage as SQLiteStorage).file))
    const conn = other.open()
    const zf = (conn.root as Record<string, unknown>).zfile as ZBigFile
    const dest = new Uint8Array(PS)
    for (let blk = 0; blk < BLOCKS; blk++) {
      zf.readblk(blk, dest)
      expect(dest[0]).to.equal(blockValue(3, blk))
      expect(dest[PS - 1]).to.equal(blockValue(3, blk))
    }
    other.close()
  })

  it('are not kept from a storage that does not copy records', () => {
    const storage = sqlite()
    Object.defineProperty(storage, 'copiesRecords', { value: false })
    const e = openEnv(storage)
    const h = openHandle(e)
    const before = spareZBlk0Records.bytes
    const tids = [writeRound(e, h, 0), writeRound(e, h, 1)]
    expect(spareZBlk0Records.bytes).to.equal(before)
    for (let round = 0; round < tids.length; round++)
      for (let blk = 0; blk < BLOCKS; blk++) expect(storedValue(e, blk, tids[round]!)).to.equal(blockValue(round, blk))
  })

  it('never change the records MemoryStorage keeps', () => {
    // Spare records exist (a SQLite handle committed), and MemoryStorage's commits use them.
    const s = openEnv(sqlite())
    writeRound(s, openHandle(s), 0)
    expect(spareZBlk0Records.bytes).to.be.greaterThan(0)
    const e = openEnv(new MemoryStorage())
    expect(e.storage.copiesRecords).to.not.equal(true) // it keeps the records as its data
    cleanups.push(() => e.db.close())
    const tids: Tid[] = []
    for (let round = 0; round < 3; round++) {
      const src = new Uint8Array(PS)
      for (let blk = 0; blk < BLOCKS; blk++) {
        src.fill(blockValue(round, blk))
        e.zf.storeblk(blk, src)
      }
      e.tm.commit()
      tids.push(e.conn.before - 1n)
      // What a handle does after a commit: the block objects become ghosts (their records stay).
      for (let blk = 0; blk < BLOCKS; blk++) (e.zf.blktab.get(blk) as ZBlk0).release()
    }
    for (let round = 0; round < tids.length; round++)
      for (let blk = 0; blk < BLOCKS; blk++) expect(storedValue(e, blk, tids[round]!)).to.equal(blockValue(round, blk))
  })

  it('are let go once transactions stop writing (two boundaries storing nothing), kept while commits go on', () => {
    const e = openEnv(sqlite())
    const h = openHandle(e)
    writeRound(e, h, 0)
    writeRound(e, h, 1)
    expect(spareZBlk0Records.bytes).to.be.at.least(BLOCKS * PS)
    // Transactions that only read: the handle's boundaries store nothing.
    for (let t = 0; t < 2; t++) {
      const m = h.mmap(0, BLOCKS)
      expect(m.bytes()[0]).to.equal(blockValue(1, 0))
      m.unmap()
      e.tm.commit()
    }
    expect(spareZBlk0Records.bytes).to.equal(0)
  })

  it('are let go when the last handle closes', () => {
    const e = openEnv(sqlite())
    const h = openHandle(e)
    writeRound(e, h, 0)
    expect(spareZBlk0Records.bytes).to.be.greaterThan(0)
    for (const c of cleanups.splice(0).reverse()) c()
    expect(spareZBlk0Records.bytes).to.equal(0)
  })
})
