// A commit of a ZBigFile handle's pages that fails in its second phase: the
// storage's tpc_finish fails after the handle marked its pages stored (a disk error at SQLite's
// COMMIT, a network client losing its server during finish).
import { expect } from 'chai'

import { RAM, ZBigFile } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage, type Connection } from '@wendelin/zodb'

import { PS, ScratchFiles } from './helpers.js'

const scratch = new ScratchFiles()
after(() => scratch.removeAll())

describe('a ZBigFile commit that fails in tpc_finish', () => {
  it('leaves no page showing data the database does not have, after the abort nor later', () => {
    const file = scratch.sqlite()
    const storage = new SQLiteStorage(file)
    const db = new DB(storage)
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm }) as unknown as Connection
    const zf = new ZBigFile(PS, { format: 'ZBlk0' })
    ;(conn.root as Record<string, unknown>).zfile = zf
    tm.commit()
    const ram = new RAM({ pageSize: PS, limit: 8 * PS })
    const h = zf.open({ ram })
    const m = h.mmap(0, 2)
    const b = m.bytes()
    b.fill(1)
    tm.commit()

    const finish = storage.tpc_finish.bind(storage)
    let fail = true
    storage.tpc_finish = (txn, onTid) => {
      if (!fail) return finish(txn, onTid)
      fail = false
      storage.tpc_abort(txn) // nothing committed
      throw new Error('disk I/O error at COMMIT')
    }
    b[0] = 99
    b[PS] = 98
    const warn = process.emitWarning
    process.emitWarning = () => {} // the transaction warns of the failed tpc_finish
    try {
      expect(() => tm.commit()).to.throw(/disk I\/O error at COMMIT/)
    } finally {
      process.emitWarning = warn
    }
    tm.abort()

    // what the database has
    const db2 = new DB(new SQLiteStorage(file, { readOnly: true }))
    const conn2 = db2.open({ transactionManager: new TransactionManager() }) as unknown as Connection
    const ram2 = new RAM({ pageSize: PS, limit: 8 * PS })
    const h2 = ((conn2.root as Record<string, unknown>).zfile as ZBigFile).open({ ram: ram2 })
    const m2 = h2.mmap(0, 2)
    const stored = [m2.bytes()[0], m2.bytes()[PS]]
    m2.unmap()
    h2.close()
    conn2.close()
    db2.close()
    ram2.close()

    expect(stored).to.deep.equal([1, 1])
    expect([b[0], b[PS]], 'after the abort').to.deep.equal(stored)
    tm.begin()
    expect([b[0], b[PS]], 'in the next transaction').to.deep.equal(stored)
    m.unmap()
    h.close()
    conn.close()
    db.close()
    ram.close()
  })
})
