// ZBigArray between two processes sharing one SQLite file: isolation, invalidation of data and
// shape at transaction boundaries, and conflicts (after test_arrayzodb.py, across processes).
import { expect } from 'chai'
import { type ChildProcess, fork } from 'node:child_process'
import path from 'node:path'

import { ZBigArray } from '@wendelin/bigarray'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage } from '@wendelin/zodb'

import { PS, cleanup, here, ram, tmpDir } from './helpers.js'

const childScript = path.join(here, 'fixtures', 'zbigarray-child.js')

describe('ZBigArray: two processes', function () {
  this.timeout(60_000)
  const children: ChildProcess[] = []
  const dbs: DB[] = []
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
    for (const d of dbs.splice(0)) if (!d.closed) d.close()
    cleanup()
  })

  function spawnChild(file: string) {
    const child = fork(childScript, [file, String(PS)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(child)
    const queue: Array<(m: Record<string, unknown>) => void> = []
    child.on('message', (m: Record<string, unknown>) => queue.shift()?.(m))
    child.on('exit', (code) => {
      for (const waiter of queue.splice(0)) waiter({ ok: false, error: `the child exited with status ${code}` })
    })
    const ready = new Promise<void>((resolve, reject) => queue.push((r) => (r.ok ? resolve() : reject(new Error(String(r.error))))))
    const must = (m: Record<string, unknown>) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        queue.push((r) => (r.ok ? resolve(r) : reject(new Error(`child failed ${JSON.stringify(m)}: ${String(r.error)}`))))
        child.send(m)
      })
    return { ready, must }
  }

  it('each process sees the other’s data and shape changes at its next transaction, and concurrent changes conflict', async () => {
    const file = path.join(tmpDir(), 'db.sqlite')
    const db = new DB(new SQLiteStorage(file))
    dbs.push(db)
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm })
    ;(conn.root as Record<string, unknown>).z = new ZBigArray([4 * PS / 8], 'float64', { blksize: PS })
    tm.commit()
    const A = (conn.root as Record<string, unknown>).z as ZBigArray<'float64'>
    A.open({ ram: ram(16) })
    A.set(0, 1)
    A.set(PS / 8, 2) // page 1
    tm.commit()
    const n = (4 * PS) / 8
    const child = spawnChild(file)
    await child.ready
    expect(await child.must({ cmd: 'get', i: PS / 8 })).to.include({ value: 2 })

    // the child changes page 1 and appends: we keep our snapshot until our next transaction
    await child.must({ cmd: 'set', i: PS / 8, value: 20 })
    expect((await child.must({ cmd: 'append', values: [5, 6] })).shape).to.deep.equal([n + 2])
    await child.must({ cmd: 'commit' })
    expect(A.get(PS / 8)).to.equal(2)
    expect(A.shape).to.deep.equal([n])
    tm.begin()
    expect(A.get(PS / 8)).to.equal(20)
    expect(A.shape).to.deep.equal([n + 2])
    expect([A.get(n), A.get(n + 1)]).to.deep.equal([5, 6])

    // we write, the child sees it after its boundary only
    A.set(3 * PS / 8, 7)
    tm.commit()
    expect((await child.must({ cmd: 'get', i: 3 * PS / 8 })).value).to.equal(0)
    await child.must({ cmd: 'begin' })
    expect((await child.must({ cmd: 'get', i: 3 * PS / 8 })).value).to.equal(7)
    expect((await child.must({ cmd: 'sum' })).sum).to.equal(1 + 20 + 7 + 5 + 6)

    // both resize: the second to commit conflicts, retries and wins
    await child.must({ cmd: 'append', values: [100] })
    A.append([200])
    tm.commit()
    const r = await child.must({ cmd: 'commit' })
    expect(r.conflict, String(r.error)).to.equal(true)
    await child.must({ cmd: 'begin' })
    expect((await child.must({ cmd: 'append', values: [100] })).shape).to.deep.equal([n + 4])
    expect((await child.must({ cmd: 'commit' })).conflict).to.equal(undefined)
    tm.begin()
    expect([A.get(n + 2), A.get(n + 3)]).to.deep.equal([200, 100])

    // both write one block: the second commit conflicts
    await child.must({ cmd: 'set', i: 1, value: 11 })
    A.set(2, 22)
    tm.commit()
    const c2 = await child.must({ cmd: 'commit' })
    expect(c2.conflict).to.equal(true)
    await child.must({ cmd: 'begin' })
    expect((await child.must({ cmd: 'get', i: 2 })).value).to.equal(22)
    expect((await child.must({ cmd: 'get', i: 1 })).value).to.equal(0)

    // we shrink to one page and commit: the child sees the blocks gone, and grows over zeros
    A.resize([PS / 8])
    tm.commit()
    expect((await child.must({ cmd: 'get', i: 3 * PS / 8 })).value).to.equal(7) // its snapshot
    await child.must({ cmd: 'begin' })
    expect((await child.must({ cmd: 'get', i: 2 })).shape).to.deep.equal([PS / 8])
    expect((await child.must({ cmd: 'resize', shape: [4 * PS / 8] })).shape).to.deep.equal([4 * PS / 8])
    expect((await child.must({ cmd: 'get', i: 3 * PS / 8 })).value).to.equal(0)
    expect((await child.must({ cmd: 'sum' })).sum).to.equal(1 + 22)
    await child.must({ cmd: 'commit' })
    tm.begin()
    expect(A.shape).to.deep.equal([4 * PS / 8])
    expect(A.get(3 * PS / 8)).to.equal(0)
    expect([...A.zfile.blktab.keys()]).to.deep.equal([0])
  })
})
