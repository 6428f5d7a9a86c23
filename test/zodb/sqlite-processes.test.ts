// SQLiteStorage shared by several processes: checkpoints of a WAL another
// reader or process kept from being copied whole, undo racing a pack, SQLite's locks kept by
// the other instances of a process when one closes, a writer waiting longer than busyTimeout.
import { expect } from 'chai'
import { execFileSync, fork } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { TransactionManager, TransientError } from '@wendelin/transaction'
import { DB, POSKeyError, SQLiteStorage, StorageBusyError, UndoError, type Tid } from '@wendelin/zodb'
import Database from 'better-sqlite3'

import { bigRecord } from './big-record-helpers.js'
import { Thing } from './fixtures/sqlite-worker-classes.js'
import { freshSQLiteFile, meta, removeSQLiteFiles } from './sqlite-helpers.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const MAX = 0xffffffffffffffffn
after(removeSQLiteFiles)

function walBytes(file: string): number {
  return existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0
}

function runChild(script: string, args: string[]): Promise<number | null> {
  const child = fork(path.join(here, 'fixtures', script), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  return new Promise((resolve) => child.once('exit', resolve))
}

describe('SQLiteStorage WAL after a checkpoint a reader kept partial', () => {
  it('small commits have the rest copied once the reader is gone: the WAL restarts instead of growing by another threshold', () => {
    const file = freshSQLiteFile()
    const s = new SQLiteStorage(file, { pageSize: 512 })
    const oid = s.newOid()
    let serial = 0n
    const commit = (k: number) => {
      const txn = meta()
      s.tpc_begin(txn)
      s.store(oid, serial, bigRecord(k, 200 * 1024), txn) // ~420 frames: a small commit (checkpointed on this thread)
      s.tpc_vote(txn)
      serial = s.tpc_finish(txn)
    }
    let k = 0
    while (walBytes(file) < 8_000 * 536) commit(++k) // ~8,000 of the 10,000 frames that start a checkpoint
    // A reader (another process, say) in the middle of a read: the checkpoint can copy only what it does not need.
    const reader = new Database(file, { readonly: true })
    reader.exec('BEGIN')
    reader.prepare('SELECT count(*) FROM object_revisions').get()
    for (let i = 0; i < 8; i++) commit(++k) // past the threshold: a checkpoint, partial
    reader.exec('COMMIT')
    reader.close()
    commit(++k) // the WAL is still longer than the threshold, and not all copied: copied now
    const size = walBytes(file)
    for (let i = 0; i < 10; i++) commit(++k) // ~4,200 frames
    expect(walBytes(file)).to.equal(size, 'the WAL is written from its start again')
    s.close()
  })
})

describe('SQLiteStorage undo racing a pack in another process', function () {
  this.timeout(30_000)

  it('an undo whose transaction a pack packed before the vote is refused: it would bring back references to objects the pack collected', async () => {
    const file = freshSQLiteFile()
    const db = new DB(new SQLiteStorage(file))
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    const root = conn.root as Record<string, unknown>
    const x = new Thing()
    const z = new Thing()
    z.value = 42
    root.x = x
    ;(x as unknown as Record<string, unknown>).child = z
    tm.commit()
    const zOid = z._p_oid!
    tm.begin()
    ;(x as unknown as Record<string, unknown>).child = null // z is garbage from here on
    x.value = 1
    tm.commit()
    const t2: Tid = db.storage.lastTransaction()
    conn.close()
    // Undo of t2 (which would make x point at z again) reads what it restores...
    const s = db.storage as SQLiteStorage
    const txn = meta()
    s.tpc_begin(txn)
    s.undo(t2, txn)
    // ... and another process packs, with gc, before the undo's vote takes the write lock
    // (a pack running when the undo began: the vote waits for its lock).
    expect(await runChild('sqlite-packer.js', [file])).to.equal(0)
    expect(() => s.loadBefore(zOid, MAX)).to.throw(POSKeyError)
    let error: unknown
    try {
      s.tpc_vote(txn)
      s.tpc_finish(txn)
    } catch (e) {
      error = e
      s.tpc_abort(txn)
    }
    // Undone anyway, x refers to an object that no longer exists.
    expect(error).to.be.instanceOf(UndoError)
    db.close()
  })
})

describe('SQLiteStorage closed while another instance of the process holds SQLite locks', function () {
  this.timeout(30_000)

  it('another process still waits for the write lock a voted transaction of this process holds: no commit beside it, none lost', () => {
    const file = freshSQLiteFile()
    const a = new SQLiteStorage(file)
    const b = new SQLiteStorage(file) // another instance of this process: a second DB, a server's, a worker thread's
    const oid = b.newOid()
    let txn = meta()
    b.tpc_begin(txn)
    b.store(oid, 0n, bigRecord(1, 100), txn)
    b.tpc_vote(txn)
    const t1 = b.tpc_finish(txn)
    txn = { ...meta(), description: 'voted' }
    b.tpc_begin(txn)
    b.store(oid, t1, bigRecord(2, 100_000), txn)
    b.tpc_vote(txn) // b holds SQLite's write lock until it finishes
    a.close() // closing the other instance must not give the lock away
    const out = execFileSync(process.execPath, [path.join(here, 'fixtures', 'sqlite-committer.js'), file, '300']).toString().trim()
    b.tpc_finish(txn)
    expect(out).to.equal('failed SQLITE_BUSY', 'the other process waits for our lock')
    b.close()
    const c = new SQLiteStorage(file)
    expect(c.integrityCheck()).to.deep.equal([])
    expect([...c.iterator()].map((t) => t.description)).to.deep.equal(['', 'voted'])
    c.close()
  })
})

describe('SQLiteStorage waiting longer than busyTimeout for another writer', function () {
  this.timeout(30_000)

  it('fails with StorageBusyError, a TransientError naming the file, and the retry after the other commit succeeds', () => {
    const file = freshSQLiteFile()
    const a = new SQLiteStorage(file)
    const b = new SQLiteStorage(file, { busyTimeout: 100 }) // as another process: a long pack holds the lock
    const oid = b.newOid()
    const busy = meta()
    a.tpc_begin(busy)
    a.store(a.newOid(), 0n, bigRecord(1, 100), busy)
    a.tpc_vote(busy) // a holds SQLite's write lock until it finishes
    // A new block of oids needs the lock too.
    expect(() => {
      for (let i = 0; i < 5000; i++) b.newOid()
    }).to.throw(StorageBusyError)
    const txn = meta()
    b.tpc_begin(txn)
    b.store(oid, 0n, bigRecord(2, 100), txn)
    let error: unknown
    try {
      b.tpc_vote(txn)
    } catch (e) {
      error = e
    }
    b.tpc_abort(txn)
    expect(error).to.be.instanceOf(StorageBusyError)
    expect(error).to.be.instanceOf(TransientError) // db.transaction() and tm.run() retry it
    expect((error as Error).message).to.include(file)
    const first = a.tpc_finish(busy)
    b.tpc_begin(txn)
    b.store(oid, 0n, bigRecord(2, 100), txn)
    b.tpc_vote(txn)
    expect(b.tpc_finish(txn) > first).to.equal(true)
    a.close()
    b.close()
  })
})
