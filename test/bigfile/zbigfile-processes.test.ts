// ZBigFile between two processes sharing one SQLite file: isolation and exact invalidation.
import { expect } from 'chai'
import { type ChildProcess, fork } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { RAM, ZBigFile } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage } from '@wendelin/zodb'

import { PS, here, runFixture, tmpDir } from './helpers.js'

const childScript = path.join(here, 'fixtures', 'zbigfile-child.js')

describe('ZBigFile: two processes', function () {
  this.timeout(60_000)
  const children: ChildProcess[] = []
  let dir = ''
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  function spawnChild(file: string, pages: number) {
    const child = fork(childScript, [file, String(PS), String(pages)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(child)
    const queue: Array<(m: Record<string, unknown>) => void> = []
    child.on('message', (m: Record<string, unknown>) => queue.shift()?.(m))
    const ready = new Promise<void>((resolve) => queue.push(() => resolve()))
    const must = (m: Record<string, unknown>) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        queue.push((r) => (r.ok ? resolve(r) : reject(new Error(`child failed ${JSON.stringify(m)}: ${String(r.error)}`))))
        child.send(m)
      })
    return { ready, must }
  }

  it('a process ends by itself while its loaders still open the storage of handles it opened (one closed, one not)', () => {
    dir = tmpDir()
    const r = runFixture('zbigfile-early-exit', [path.join(dir, 'db.sqlite')])
    expect(r.stderr).to.not.match(/uv_loop_close|Assertion|abort|Error/i)
    expect(r.status).to.equal(0, r.stderr)
    expect(r.stdout).to.equal('open at a snapshot\n')
  })

  it('each process sees the other’s commits at its next transaction, and only the changed blocks are invalidated', async () => {
    dir = tmpDir()
    const file = path.join(dir, 'db.sqlite')
    const db = new DB(new SQLiteStorage(file))
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm })
    const zf = new ZBigFile(PS, { format: 'ZBlk1' })
    ;(conn.root as Record<string, unknown>).zfile = zf
    conn.add(zf)
    const ram = new RAM({ pageSize: PS, limit: 16 * PS })
    const h = zf.open({ ram })
    const m = h.mmap(0, 4)
    const b = m.bytes()
    for (let pg = 0; pg < 4; pg++) b[pg * PS] = pg + 1
    tm.commit()
    try {
      const child = spawnChild(file, 4)
      await child.ready
      for (let pg = 0; pg < 4; pg++) expect((await child.must({ cmd: 'read', pg })).value).to.equal(pg + 1)
      // the child writes block 2; we keep our snapshot until our next transaction
      await child.must({ cmd: 'write', pg: 2, i: 0, value: 33 })
      await child.must({ cmd: 'commit' })
      expect(b[2 * PS]).to.equal(3)
      h.fileh.invalidatePage(2) // even loaded again, the page shows our snapshot
      expect(b[2 * PS]).to.equal(3)
      tm.begin()
      expect(h.stats.lastInvalidated).to.deep.equal([2])
      expect([0, 1, 3].map((pg) => h.pageState(pg))).to.deep.equal(['loaded', 'loaded', 'loaded'])
      expect(b[2 * PS]).to.equal(33)
      // and back: we write block 0 and a hole (block 3 of 4 stays); the child sees both at its begin
      b[0] = 100
      b[3 * PS + 5] = 5
      tm.commit()
      expect((await child.must({ cmd: 'read', pg: 0 })).value).to.equal(1, 'the child keeps its snapshot')
      await child.must({ cmd: 'begin' })
      expect((await child.must({ cmd: 'stats' })).lastInvalidated).to.deep.equal([0, 3])
      expect((await child.must({ cmd: 'read', pg: 0 })).value).to.equal(100)
      expect((await child.must({ cmd: 'read', pg: 3, i: 5 })).value).to.equal(5)
      expect((await child.must({ cmd: 'read', pg: 1 })).state).to.equal('loaded')
    } finally {
      m.unmap()
      h.close()
      db.close()
      ram.close()
    }
  })
})
