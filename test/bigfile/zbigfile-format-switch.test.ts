// A block whose format changes (the 'auto' heuristic, or a file whose format was changed) gets a
// new block object in the blktab: a concurrent change of the old block object must still
// conflict with it, in either commit order, instead of one of the two writes being lost.
import { expect } from 'chai'
import fs from 'node:fs'
import path from 'node:path'

import { type Mapping, RAM, ZBigFile, type ZBigFileH } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { ConflictError, DB, SQLiteStorage, type Connection } from '@wendelin/zodb'

import { PS, tmpDir, writeAndCommit } from './helpers.js'

interface Side {
  tm: TransactionManager
  zf: ZBigFile
  h: ZBigFileH
  m: Mapping
  b: Uint8Array
}

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
    for (;;) {
      try {
        ram.close()
        break
      } catch {
        await new Promise<void>((resolve) => setTimeout(resolve, 1))
      }
    }
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
    const s = { tm, zf, h, m, b: m.bytes() }
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
