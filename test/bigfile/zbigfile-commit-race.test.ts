// After its own commit a handle keeps the pages it stored: they show the block as committed. If
// another process commits a change of such a block between that commit and the handle's
// transaction boundary (the connection's new snapshot then includes it), the page must be
// invalidated like any other; it stayed, showing the block without that change for good.
import { expect } from 'chai'
import fs from 'node:fs'
import path from 'node:path'

import { type Mapping, RAM, ZBigFile, type ZBigFileH } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage, type Connection } from '@wendelin/zodb'

import { PS, closeRamWhenFree, tmpDir } from './helpers.js'

describe('ZBigFileH: a commit of another process right after our own', () => {
  let dir: string
  let ram: RAM
  const dbs: DB[] = []
  const handles: Array<{ h: ZBigFileH; m: Mapping; tm: TransactionManager }> = []

  beforeEach(() => {
    dir = tmpDir()
    ram = new RAM({ pageSize: PS, limit: 16 * PS })
  })
  afterEach(async () => {
    for (const { h, m, tm } of handles.splice(0)) {
      tm.abort()
      m.unmap()
      h.close()
    }
    for (const db of dbs.splice(0)) db.close()
    await closeRamWhenFree(ram)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  /** A database over its own SQLite instance of the one file (as another process has). */
  function open(file: string): { storage: SQLiteStorage; tm: TransactionManager; conn: Connection } {
    const storage = new SQLiteStorage(file)
    const db = new DB(storage)
    dbs.push(db)
    const tm = new TransactionManager()
    return { storage, tm, conn: db.open({ transactionManager: tm }) as unknown as Connection }
  }

  function map(side: { tm: TransactionManager; conn: Connection }): Uint8Array {
    const zf = (side.conn.root as Record<string, unknown>).zfile as ZBigFile
    const h = zf.open({ ram })
    const m = h.mmap(0, 2)
    handles.push({ h, m, tm: side.tm })
    return m.bytes()
  }

  for (const [what, change] of [
    ['changes the block', (b: Uint8Array) => void (b[10] = 3)],
    ['truncates the file', (_b: Uint8Array, zf: ZBigFile) => zf.truncate(0)],
  ] as const) {
    it(`the other ${what}: our stored page is invalidated at our boundary`, () => {
      const file = path.join(dir, 'db.sqlite')
      const A = open(file)
      ;(A.conn.root as Record<string, unknown>).zfile = new ZBigFile(PS, { format: 'ZBlk0' })
      A.tm.commit()
      const a = map(A)
      a.fill(1, 0, PS)
      A.tm.commit()
      const B = open(file)
      const b = map(B)
      let armed = true
      // B commits between A's COMMIT and A's boundary, based on A's commit (no conflict): in
      // another process that is a commit landing before A's connection polls for news.
      A.storage.addListener({
        invalidate: () => {
          if (!armed) return
          armed = false
          B.tm.begin()
          change(b, (B.conn.root as Record<string, unknown>).zfile as ZBigFile)
          B.tm.commit()
        },
      })
      a[5] = 2
      A.tm.commit()
      expect(armed).to.equal(false)
      // A's snapshot now includes B's commit: its page must show it.
      const want = what === 'changes the block' ? [2, 3] : [0, 0]
      expect([a[5], a[10]]).to.deep.equal(want)
      A.tm.begin()
      expect([a[5], a[10]]).to.deep.equal(want)
    })
  }
})
