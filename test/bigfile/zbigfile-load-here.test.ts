// ZBigFileH: while no loader worker serves yet (a fresh process), mmap loads the first pages of
// the mapping on the owning thread, as a loader would, instead of the first access waiting.
// (The reviewer's cases: state of the current transaction, savepoints, a synced connection.)
import { expect } from 'chai'
import fs from 'node:fs'
import path from 'node:path'

import { RAM, ZBigFile, loaderCount, virtmemStats } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage } from '@wendelin/zodb'

import { PS, runFixture, tmpDir, until, writeAndCommit } from './helpers.js'

/**
 * A file of 8 pages: blocks 0, 1 and 3 ZBlk0 (first byte pg + 1, last byte 7), block 5 ZBlk1
 * (first byte 6), the others holes.
 */
function makeFile(file: string): void {
  const db = new DB(new SQLiteStorage(file))
  const tm = new TransactionManager()
  const conn = db.open({ transactionManager: tm })
  const zf = new ZBigFile(PS, { format: 'ZBlk0' })
  ;(conn.root as Record<string, unknown>).zfile = zf
  tm.commit()
  const ram = new RAM({ pageSize: PS, limit: 16 * PS })
  writeAndCommit(zf, tm, ram, 8, (b) => {
    for (const pg of [0, 1, 3]) {
      b[pg * PS] = pg + 1
      b[pg * PS + PS - 1] = 7
    }
  })
  zf.format = 'ZBlk1'
  writeAndCommit(zf, tm, ram, 8, (b) => (b[5 * PS] = 6))
  db.close()
  ram.close()
}

const snapshotValues = [[1, 7], [2, 7], [0, 0], [4, 7], [0, 0], [6, 0], [0, 0], [0, 0]]

describe('ZBigFileH: pages loaded by the owning thread while the loaders start', function () {
  this.timeout(60_000)
  let dir = ''
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
    dir = ''
  })

  function run(mode: 'plain' | 'changed' | 'savepoint' | 'sync' | 'full'): Record<string, unknown> {
    dir = tmpDir()
    const file = path.join(dir, 'db.sqlite')
    makeFile(file)
    const r = runFixture('zbigfile-load-here', [file, String(PS), mode])
    expect(r.status).to.equal(0, r.stderr)
    const out = JSON.parse(r.stdout.trim()) as Record<string, unknown>
    // mmap follows the handle's opening at once: a loader worker cannot have started by then
    expect(out.loadersAtMmap).to.equal(0, 'a loader served already when the fixture mapped the file')
    return out
  }

  const allLoaded = Array(8).fill('loaded')

  it('a fresh process loads the first pages of a mapping here, every format, with the dependencies a loader reports', () => {
    const out = run('plain')
    expect(out.loadedHere).to.equal(8)
    expect(out.statesAtMmap).to.deep.equal(allLoaded)
    expect(out.valuesBefore).to.deep.equal(snapshotValues)
    // another process's commit of a ZBlk0 block and of a hole loaded here: exactly those go
    expect(out.lastInvalidated).to.deep.equal([1, 2])
    expect((out.statesAfter as string[]).filter((_, pg) => pg !== 1 && pg !== 2)).to.deep.equal(Array(6).fill('loaded'))
    const after = snapshotValues.map((v) => [...v])
    after[1]![0] = 11
    after[2]![0] = 22
    expect(out.valuesAfter).to.deep.equal(after)
  })

  it('pages show the snapshot, as loaders read it, whatever the transaction changed (block table, savepoint state) — and still do after its abort', () => {
    for (const mode of ['changed', 'savepoint'] as const) {
      const out = run(mode)
      expect(out.loadedHere, mode).to.equal(8)
      expect(out.valuesBefore, mode).to.deep.equal(snapshotValues)
      expect(out.lastInvalidated, mode).to.deep.equal([])
      expect(out.statesAfter, mode).to.deep.equal(allLoaded)
      expect(out.valuesAfter, mode).to.deep.equal(snapshotValues)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a connection moved past the handle’s snapshot (conn.sync()) does not show through before the handle’s next boundary', () => {
    const out = run('sync')
    expect(out.valuesBefore).to.deep.equal(snapshotValues)
    expect(out.lastInvalidated).to.deep.equal([1])
    const after = snapshotValues.map((v) => [...v])
    after[1]![0] = 55
    expect(out.valuesAfter).to.deep.equal(after)
  })

  it('evicts nothing and stretches nothing for it: with the RAM full, pages load as usual', () => {
    const out = run('full')
    expect(out.loadedHere).to.equal(0)
    expect(out.otherEvictedAtMmap).to.equal(0)
    expect(out.valuesBefore).to.deep.equal(snapshotValues)
  })

  it('once a loader serves, mmap loads nothing itself', async () => {
    dir = tmpDir()
    const file = path.join(dir, 'db.sqlite')
    makeFile(file)
    const db = new DB(new SQLiteStorage(file))
    try {
      const zf = (db.open({ transactionManager: new TransactionManager() }).root as Record<string, unknown>).zfile as ZBigFile
      const h = zf.open({ ram: new RAM({ pageSize: PS, limit: 16 * PS }) })
      await until(() => loaderCount() > 0)
      const loads = virtmemStats().loads
      const m = h.mmap(0, 8)
      expect(virtmemStats().loads).to.equal(loads)
      expect(h.pageState(0)).to.equal('empty')
      expect(m.bytes()[3 * PS]).to.equal(4)
      m.unmap()
      h.close()
    } finally {
      db.close()
    }
  })
})
