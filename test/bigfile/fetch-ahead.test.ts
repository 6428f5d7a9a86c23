// A loader's readahead through a storage that prefetches (the network client): fetchBlocksAhead
// asks for the block being read and the next ones, each record in a request of its own, at the
// loader's snapshot, skipping holes; on a storage without prefetch, or a wrong object, it does
// nothing and throws nothing (the read itself reports what is wrong).
import { expect } from 'chai'

import { ZBigFile, fetchBlocksAhead } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { DB, MemoryStorage, type Connection, type Oid, type Tid } from '@wendelin/zodb'

const BLK = 4096

/** A MemoryStorage that records what it is asked to prefetch (and can refuse). */
class PrefetchingStorage extends MemoryStorage {
  asked: { oids: Oid[]; tid: Tid | undefined }[] = []
  refuse = false

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
    fetchBlocksAhead(conn, oid, 0, 2)
    expect(storage.asked.map((a) => a.oids)).to.deep.equal([[blocks.get(0)], [blocks.get(1)]])
    storage.asked = []
    fetchBlocksAhead(conn, oid, 1, 3)
    expect(storage.asked.map((a) => a.oids)).to.deep.equal([[blocks.get(1)], [blocks.get(3)], [blocks.get(4)]])
    for (const a of storage.asked) expect(a.tid).to.equal(conn.before)
    storage.asked = []
    fetchBlocksAhead(conn, oid, 5, 2) // past the end: nothing to ask for
    expect(storage.asked).to.deep.equal([])
    db.close()
  })

  it('does nothing on a storage that does not prefetch, or for an object that is not a ZBigFile', () => {
    const plain = new DB(new MemoryStorage())
    const { oid } = fileIn(plain)
    expect(() => fetchBlocksAhead(historical(plain), oid, 0, 2)).not.to.throw()
    plain.close()

    const storage = new PrefetchingStorage()
    const db = new DB(storage)
    fileIn(db)
    const conn = historical(db)
    fetchBlocksAhead(conn, 0n, 0, 2) // the root: not a ZBigFile
    fetchBlocksAhead(conn, 0x7777n, 0, 2) // no such object
    expect(storage.asked).to.deep.equal([])
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
      fetchBlocksAhead(historical(db), oid, 0, 1)
      await new Promise((resolve) => setImmediate(resolve))
      expect(storage.asked.length).to.equal(2)
      expect(unhandled).to.deep.equal([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
      db.close()
    }
  })
})
