// What a ZBigFile handle shows when the records behind a block are missing, damaged or of the
// wrong class: a load fails (fileh.load rejects; a fault would end the
// process) — a page never shows zeros or garbage in place of the data.
import Database from 'better-sqlite3'
import { expect } from 'chai'

import { RAM, ZBigFile, ZBlk1, type ZBigFileH } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { DB, PersistentMapping, SQLiteStorage, type Connection } from '@wendelin/zodb'

import { PS, ScratchFiles } from './helpers.js'

const scratch = new ScratchFiles()
after(() => scratch.removeAll())

describe('ZBigFile blocks whose records are missing or damaged', () => {
  let file: string
  let db: DB
  let tm: TransactionManager
  let conn: Connection
  let ram: RAM
  let h: ZBigFileH
  let zf: ZBigFile

  function setup(format: 'ZBlk0' | 'ZBlk1'): void {
    file = scratch.sqlite()
    db = new DB(new SQLiteStorage(file))
    tm = new TransactionManager()
    conn = db.open({ transactionManager: tm }) as unknown as Connection
    zf = new ZBigFile(PS, { format })
    ;(conn.root as Record<string, unknown>).zfile = zf
    tm.commit()
    ram = new RAM({ pageSize: PS, limit: 8 * PS })
    h = zf.open({ ram })
    const m = h.mmap(0, 2)
    m.bytes().fill(5)
    tm.commit()
    m.unmap()
    h.fileh.invalidatePage(0) // the next access loads it from the database
    h.fileh.invalidatePage(1)
  }
  afterEach(() => {
    h.close()
    conn.close()
    db.close()
    ram.close()
  })

  /** Removes every record of `oid` from the database file (as a damaged file or a bad copy would). */
  function deleteRecords(oid: bigint | null): void {
    const raw = new Database(file)
    raw.prepare('DELETE FROM object_revisions WHERE oid = ?').run(Number(oid))
    raw.close()
  }

  /** Cuts the newest record of `oid` in half. */
  function truncateRecord(oid: bigint | null): void {
    const raw = new Database(file)
    raw.prepare('UPDATE object_revisions SET data = substr(data, 1, length(data) / 2) WHERE oid = ?').run(Number(oid))
    raw.close()
  }

  async function loadFails(pg: number): Promise<string> {
    let error: unknown = null
    await h.fileh.load({ pgoffset: pg, pglen: 1 }).catch((e: unknown) => (error = e))
    if (error === null) {
      const m = h.mmap(pg, 1)
      const first = m.bytes()[0]
      m.unmap()
      expect.fail(`the load succeeded: the page reads ${first} (stored: 5)`)
    }
    expect(h.pageState(pg)).to.equal('empty')
    return (error as Error).message
  }

  it('the ZBigFile\'s own record missing: the load fails (pages read as zeros)', async () => {
    setup('ZBlk0')
    deleteRecords(zf._p_oid)
    expect(await loadFails(0)).to.match(/POSKeyError/)
  })

  it('a ZBlk0 block\'s record missing: the load fails', async () => {
    setup('ZBlk0')
    deleteRecords(zf.blktab.get(0)!._p_oid)
    expect(await loadFails(0)).to.match(/POSKeyError/)
  })

  it('a ZBlk0 block\'s record cut short: the load fails', async () => {
    setup('ZBlk0')
    truncateRecord(zf.blktab.get(0)!._p_oid)
    await loadFails(0)
  })

  it('a ZBlk1 chunk\'s record missing: the load fails', async () => {
    setup('ZBlk1')
    const zblk = zf.blktab.get(0) as ZBlk1
    deleteRecords(zblk.chunktab.get(3)!._p_oid)
    expect(await loadFails(0)).to.match(/POSKeyError/)
  })

  it('a block of the wrong class: the load fails', async () => {
    setup('ZBlk0')
    zf.blktab.set(1, new PersistentMapping() as never)
    tm.commit()
    h.fileh.invalidatePage(1)
    await loadFails(1)
  })
})
