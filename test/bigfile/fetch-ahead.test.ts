// A loader's readahead through a storage that prefetches (the network client): fetchBlocksAhead
// asks for the block being read and the next ones, each record in a request of its own, at the
// loader's snapshot, skipping holes; on a storage without prefetch it does nothing, and a failed
// prefetch only logs (the read itself loads the block). readBlockAt hands it the file it loaded:
// a file missing at the snapshot is looked for once per block read, not twice.
import { expect } from 'chai'

import { ZBigFile, fetchBlocksAhead, readBlockAt } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { DB, MemoryStorage, POSKeyError, type Connection, type LoadedRevision, type Oid, type Tid } from '@wendelin/zodb'

const BLK = 4096

/** A MemoryStorage that records what it is asked to prefetch (and can refuse). */
class PrefetchingStorage extends MemoryStorage {
  asked: { oids: Oid[]; tid: Tid | undefined }[] = []
  refuse = false
  loads = new Map<Oid, number>()

  override loadBefore(oid: Oid, tid: Tid): LoadedRevision | null {
    this.loads.set(oid, (this.loads.get(oid) ?? 0) + 1)
    return super.loadBefore(oid, tid)
  }

  async prefetch(oids: Iterable<Oid>, tid?: Tid): Promise<void> {
    this.asked.push({ oids: [...oids], tid })
    if (this.refuse) throw new Error('the connection dropped')
  }
}

describe('fetchBlocksAhead (a loader reading ahead over the network)', () => {
  /** A ZBigFile whose blocks 0, 1, 3 and 4 are stored (2 is a hole), committed in `db`. */
  function fileIn(db: DB): { oid: Oid; blocks: Map<number, Oid> } {
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm })
    const zf = new ZBigFile(BLK, { format: 'ZBlk0' })
    ;(conn.root as Record<string, unknown>).zfile = zf
    for (const blk of [0, 1, 3, 4]) zf.storeblk(blk, new Uint8Array(BLK).fill(blk + 1))
    tm.commit()
    const blocks = new Map<number, Oid>()
    for (const blk of [0, 1, 3, 4]) blocks.set(blk, zf.blktab.get(blk)!._p_oid!)
    const oid = zf._p_oid!
    conn.close()
    return { oid, blocks }
  }

  function historical(db: DB): Connection {
    return db.open({ before: db.storage.lastTransaction() + 1n })
  }

  it("asks for the block's record and the next ones, one request each, at the snapshot, holes skipped", () => {
    const storage = new PrefetchingStorage()
    const db = new DB(storage)
    const { oid, blocks } = fileIn(db)
    const conn = historical(db)
    const zfile = conn.get(oid) as ZBigFile
    fetchBlocksAhead(conn, zfile, 0, 2)
    expect(storage.asked.map((a) => a.oids)).to.deep.equal([[blocks.get(0)], [blocks.get(1)]])
    storage.asked = []
    fetchBlocksAhead(conn, zfile, 1, 3)
    expect(storage.asked.map((a) => a.oids)).to.deep.equal([[blocks.get(1)], [blocks.get(3)], [blocks.get(4)]])
    for (const a of storage.asked) expect(a.tid).to.equal(conn.before)
    storage.asked = []
    fetchBlocksAhead(conn, zfile, 5, 2) // past the end: nothing to ask for
    expect(storage.asked).to.deep.equal([])
    db.close()
  })

  it('does nothing on a storage that does not prefetch', () => {
    const plain = new DB(new MemoryStorage())
    const { oid } = fileIn(plain)
    const conn = historical(plain)
    expect(() => fetchBlocksAhead(conn, conn.get(oid) as ZBigFile, 0, 2)).not.to.throw()
    plain.close()
  })

  it('is handed the file by readBlockAt, before the block is read; a file with no record is not looked for twice', () => {
    const storage = new PrefetchingStorage()
    const db = new DB(storage)
    const { oid, blocks } = fileIn(db)
    const conn = historical(db)
    const dest = new Uint8Array(BLK)
    const order: string[] = []
    storage.asked = []
    readBlockAt(conn, oid, 0, dest, 'test', (zfile) => {
      order.push('beforeRead')
      fetchBlocksAhead(conn, zfile, 0, 1)
    })
    expect(order).to.deep.equal(['beforeRead'])
    expect(storage.asked.map((a) => a.oids)).to.deep.equal([[blocks.get(0)], [blocks.get(1)]])
    expect(dest[0]).to.equal(1)

    // No record in the storage: a damaged database (a file never committed is read at snapshot
    // 0 without readBlockAt), not holes — zeros would be wrong data in every page.
    const missing = storage.newOid()
    storage.loads.clear()
    let called = false
    expect(() => readBlockAt(conn, missing, 0, dest, 'test', () => (called = true))).to.throw(POSKeyError)
    expect(called).to.equal(false) // nothing to read ahead
    expect(storage.loads.get(missing)).to.equal(1)
    db.close()
  })

  it('lets a failed prefetch go (the read loads the block itself)', async () => {
    const storage = new PrefetchingStorage()
    storage.refuse = true
    const db = new DB(storage)
    const { oid } = fileIn(db)
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const conn = historical(db)
      fetchBlocksAhead(conn, conn.get(oid) as ZBigFile, 0, 1)
      await new Promise((resolve) => setImmediate(resolve))
      expect(storage.asked.length).to.equal(2)
      expect(unhandled).to.deep.equal([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
      db.close()
    }
  })
})
