// WalCheckpointer and WalKeeper (packages/zodb/src/wal-checkpointer.ts) on their own: a worker
// that never starts is given up on instead of hanging the writer, and a failed inline checkpoint
// never fails the commit it follows (that commit is durable already).
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

import Database from 'better-sqlite3'
import { expect } from 'chai'

import { freshSQLiteFile, removeSQLiteFiles } from './sqlite-helpers.js'

interface Checkpointer {
  readonly usable: boolean
  request(): void
  wait(): void
  close(): void
}
interface Keeper {
  afterCommit(): void
  close(): void
}
interface CheckpointerModule {
  WalCheckpointer: new (file: string, synchronous: 'FULL' | 'NORMAL', script?: URL, startupMs?: number) => Checkpointer
  WalKeeper: { open(file: string, synchronous: 'FULL' | 'NORMAL', checkpointHere: () => void): Keeper | null }
  CHECKPOINT_FRAMES: number
}

const here = path.dirname(fileURLToPath(import.meta.url))
// Not part of the package's API: loaded from the built package by path.
const modulePath = path.join(here, '..', '..', '..', 'packages', 'zodb', 'dist', 'wal-checkpointer.js')
const load = async (): Promise<CheckpointerModule> => (await import(pathToFileURL(modulePath).href)) as CheckpointerModule
after(removeSQLiteFiles)

describe('WalCheckpointer', function () {
  this.timeout(20_000)

  for (const [what, source] of [
    ['fails to load', 'throw new Error("no module")'],
    ['never starts serving', 'Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)'],
  ]) {
    it(`gives up on a worker that ${what}: waiting and closing return`, async () => {
      const { WalCheckpointer } = await load()
      const script = new URL(`data:text/javascript,${encodeURIComponent(source)}`)
      const c = new WalCheckpointer(freshSQLiteFile(), 'FULL', script, 200)
      c.request()
      const t0 = Date.now()
      c.wait()
      expect(c.usable).to.equal(false)
      c.close()
      expect(Date.now() - t0).to.be.below(5_000)
    })
  }

  it('refuses a worker module that is missing, at once', async () => {
    const { WalCheckpointer } = await load()
    const missing = pathToFileURL(path.join(here, 'no-such-worker.js'))
    expect(() => new WalCheckpointer(freshSQLiteFile(), 'FULL', missing)).to.throw(/checkpoint worker .* is missing/)
  })
})

describe('WalKeeper', () => {
  it('a failed checkpoint after a small commit does not fail that commit', async () => {
    const { WalKeeper, CHECKPOINT_FRAMES } = await load()
    const file = freshSQLiteFile()
    const db = new Database(file)
    db.pragma('page_size = 512')
    db.pragma('journal_mode = WAL')
    db.pragma('wal_autocheckpoint = 0')
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)')
    let tried = 0
    const keeper = WalKeeper.open(file, 'FULL', () => {
      tried++
      throw new Error('SQLITE_FULL: database or disk is full')
    })
    expect(keeper).to.not.equal(null)
    keeper!.afterCommit()
    const insert = db.prepare('INSERT INTO t (data) VALUES (?)')
    const commit = db.transaction(() => {
      for (let i = 0; i < 200; i++) insert.run(Buffer.alloc(400, i))
    })
    // Small commits (~200 frames each) until the WAL passes the checkpoint threshold.
    for (let k = 0; k * 200 < CHECKPOINT_FRAMES * 1.5; k++) {
      commit()
      keeper!.afterCommit()
    }
    expect(tried).to.be.above(0)
    keeper!.close()
    db.close()
  })
})
