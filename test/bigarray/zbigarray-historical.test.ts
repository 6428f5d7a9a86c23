// A ZBigArray read through a historical connection (db.open({ at })) is read-only, as every
// object of such a connection is: a change is refused at once with ReadOnlyHistoryError, and
// the array keeps showing the past instead of a value that never was.
import { expect } from 'chai'
import fs from 'node:fs'
import path from 'node:path'

import { RAM } from '@wendelin/bigfile'
import { ZBigArray } from '@wendelin/bigarray'
import { TransactionManager } from '@wendelin/transaction'
import { type Connection, DB, ReadOnlyHistoryError, SQLiteStorage } from '@wendelin/zodb'

import { closeRamWhenFree } from '../bigfile/helpers.js'
import { PS, tmpDir } from './helpers.js'

describe('ZBigArray of a historical connection', () => {
  let dir: string
  let db: DB
  let ram: RAM
  let tm: TransactionManager
  let conn: Connection
  let live: ZBigArray<'uint8'>
  let hist: Connection
  let past: ZBigArray<'uint8'>

  beforeEach(() => {
    dir = tmpDir()
    db = new DB(new SQLiteStorage(path.join(dir, 'db.sqlite')))
    ram = new RAM({ pageSize: PS, limit: 16 * PS })
    tm = new TransactionManager()
    conn = db.open({ transactionManager: tm }) as unknown as Connection
    live = new ZBigArray([2 * PS], 'uint8', { blksize: PS })
    ;(conn.root as Record<string, unknown>).A = live
    tm.commit()
    live.open({ ram })
    live.assign(1)
    tm.commit()
    const then = db.lastTransaction()
    live.assign(2)
    tm.commit()
    hist = db.open({ at: then, transactionManager: tm }) as unknown as Connection
    past = (hist.root as Record<string, unknown>).A as ZBigArray<'uint8'>
    past.open({ ram })
  })
  afterEach(async () => {
    tm.abort()
    past.close()
    live.close()
    hist.close()
    conn.close()
    db.close()
    await closeRamWhenFree(ram)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('refuses set, assign, append and resize with ReadOnlyHistoryError, and keeps showing the past', () => {
    expect(past.get(0)).to.equal(1)
    expect(() => past.set(0, 9)).to.throw(ReadOnlyHistoryError)
    expect(() => past.assign(7, [0, 10])).to.throw(ReadOnlyHistoryError)
    expect(() => past.append(new Uint8Array(PS))).to.throw(ReadOnlyHistoryError)
    expect(() => past.resize([PS])).to.throw(ReadOnlyHistoryError)
    expect([past.get(0), past.get(5), past.shape[0]]).to.deep.equal([1, 1, 2 * PS])
    expect(past.fileh.dirtyPages()).to.deep.equal([])
  })

  it('a write through a view: the commit fails naming the ZBigFile and its historical connection; abort drops it', () => {
    const v = past.view([0, 10])
    ;(v.array as unknown as { set(i: number, x: number): void }).set(0, 7)
    v.release()
    ;(conn.root as Record<string, unknown>).other = 1
    let error: unknown
    try {
      tm.commit()
    } catch (e) {
      error = e
    }
    expect(error).to.be.instanceOf(ReadOnlyHistoryError)
    expect((error as Error).message).to.match(/ZBigFile.*historical/)
    tm.abort()
    expect(past.get(0)).to.equal(1)
    ;(conn.root as Record<string, unknown>).other = 2
    tm.commit() // nothing of the historical array is left to fail it
    expect(live.get(0)).to.equal(2)
  })
})
