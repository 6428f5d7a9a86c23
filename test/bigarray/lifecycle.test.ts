// ZBigArray lifecycle: an array with elements set and not committed cannot be closed (nor its
// connection) without a word about the lost change, and an array of a closed connection says so.
import { expect } from 'chai'
import { spawnSync } from 'node:child_process'
import path from 'node:path'

import { ZBigArray } from '@wendelin/bigarray'
import { TransactionManager } from '@wendelin/transaction'
import { ConnectionStateError, DB, SQLiteStorage, type Connection } from '@wendelin/zodb'

import { PS, cleanup, here, ram, tmpDir } from './helpers.js'

type Root = Record<string, unknown>

describe('ZBigArray lifecycle', () => {
  let db: DB
  let tm: TransactionManager
  let conn: Connection
  let a: ZBigArray<'float64'>
  beforeEach(() => {
    db = new DB(new SQLiteStorage(path.join(tmpDir(), 'db.sqlite')))
    tm = new TransactionManager()
    conn = db.open({ transactionManager: tm }) as unknown as Connection
    a = new ZBigArray([1000], 'float64', { blksize: PS })
    ;(conn.root as Root).a = a
    tm.commit()
    a.open({ ram: ram() })
  })
  afterEach(() => {
    tm.abort()
    db.close()
    cleanup()
  })

  /** Element 3 as a new connection reads it. */
  function committed(): number {
    const c = db.open({ transactionManager: new TransactionManager() }) as unknown as Connection
    const b = (c.root as Root).a as ZBigArray<'float64'>
    b.open({ ram: ram() })
    const v = b.get(3)
    b.close()
    c.close()
    return v
  }

  it('refuses to close an array with an element set and not committed; commit then stores it', () => {
    a.set(3, 1.5)
    expect(() => a.close()).to.throw(ConnectionStateError, /uncommitted changes/)
    tm.commit()
    a.close()
    expect(committed()).to.equal(1.5)
  })

  it('refuses to close the connection of an array with an element set and not committed', () => {
    a.set(3, 2.5)
    expect(() => conn.close()).to.throw(ConnectionStateError, /uncommitted changes/)
    tm.commit()
    conn.close()
    expect(committed()).to.equal(2.5)
  })

  it('an array of a closed connection refuses reads and writes with ConnectionStateError', () => {
    a.set(3, 4)
    tm.commit()
    conn.close()
    expect(() => a.get(3)).to.throw(ConnectionStateError, /closed/)
    expect(() => a.set(3, 5)).to.throw(ConnectionStateError, /closed/)
    expect(committed()).to.equal(4)
  })
})

describe('a process that closes what it opened', () => {
  it('exits by itself: no worker, timer, handle or mapping keeps it alive', function () {
    this.timeout(30_000)
    const dir = tmpDir()
    const r = spawnSync(process.execPath, [path.join(here, 'fixtures', 'exit-after-close.js'), dir], { encoding: 'utf8', timeout: 10_000 })
    cleanup()
    expect(r.error, 'did not exit within 10 s').to.equal(undefined)
    expect(r.status).to.equal(0, r.stderr)
    expect(r.stdout).to.equal('done')
  })
})
