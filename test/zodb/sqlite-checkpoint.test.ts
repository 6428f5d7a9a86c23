// SQLiteStorage copies its WAL back into the database file on a thread of its own (WalKeeper,
// wal-checkpointer.ts): commits return without the copy, the WAL stays bounded, readers and
// crashes see what they saw with SQLite's own checkpoints. Databases with 512-byte pages, so
// that a few MiB of records cross the checkpoint threshold (10,000 frames).
import { fork } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import Database from 'better-sqlite3'
import { expect } from 'chai'
import { SQLiteStorage, type Tid } from '@wendelin/zodb'

import { bigRecord, bigRecordNumber } from './big-record-helpers.js'
import { freshSQLiteFile, removeSQLiteFiles } from './sqlite-helpers.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const committerScript = path.join(here, 'fixtures', 'sqlite-big-committer.js')
const MAX = 0xffffffffffffffffn
const MiB = 1024 * 1024
after(removeSQLiteFiles)

function walBytes(file: string): number {
  return existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0
}

/** Commits `count` transactions storing bigRecord(k) of `bytes` into each of `oids`; the last tid. */
function commitBig(s: SQLiteStorage, oids: bigint[], serials: Map<bigint, Tid>, from: number, count: number, bytes: number): Tid {
  let tid = 0n
  for (let k = from; k < from + count; k++) {
    const txn = { user: '', description: '', extension: {} }
    s.tpc_begin(txn)
    for (const oid of oids) s.store(oid, serials.get(oid) ?? 0n, bigRecord(k, bytes), txn)
    s.tpc_vote(txn)
    tid = s.tpc_finish(txn)
    for (const oid of oids) serials.set(oid, tid)
  }
  return tid
}

describe('SQLiteStorage checkpoints on a thread of its own', function () {
  this.timeout(60_000)

  it('big commits have the checkpointer copy the WAL back; the WAL stays at about one commit; all reads back, also after reopening', () => {
    const file = freshSQLiteFile('wendelin-sqlite-ckpt-')
    const s = new SQLiteStorage(file, { pageSize: 512 })
    const oids = [s.newOid(), s.newOid(), s.newOid()]
    const serials = new Map<bigint, Tid>()
    const commitBytes = 3 * 2 * MiB // ~12,600 frames of 512 bytes: past the threshold each time
    commitBig(s, oids, serials, 1, 12, 2 * MiB)
    expect(s.checkpointStats().checkpoints).to.be.at.least(10, 'a checkpoint asked after each commit')
    // Each write transaction waited for the copy of the one before: the WAL restarted each time.
    expect(walBytes(file)).to.be.below(1.5 * commitBytes)
    expect(statSync(file).size).to.be.above(10 * commitBytes, 'the database file holds the copied commits')
    const other = new SQLiteStorage(file, { readOnly: true })
    for (const oid of oids) expect(bigRecordNumber(other.loadBefore(oid, MAX)!.data)).to.equal(12)
    other.close()
    s.close()
    // Our connection was the last one (the checkpointer's closed first): it copied the rest and removed the WAL.
    expect(existsSync(`${file}-wal`)).to.equal(false)
    const again = new SQLiteStorage(file)
    for (const oid of oids) expect(bigRecordNumber(again.loadBefore(oid, MAX)!.data)).to.equal(12)
    expect(again.integrityCheck()).to.deep.equal([])
    again.close()
  })

  it('small commits keep their checkpoints on the committing thread (none asked of the checkpointer); the WAL stays bounded', () => {
    const file = freshSQLiteFile('wendelin-sqlite-ckpt-')
    const s = new SQLiteStorage(file, { pageSize: 512 })
    const oid = s.newOid()
    // ~400 frames per commit, 12 MB in all: past the threshold (10,000 frames) twice
    commitBig(s, [oid], new Map(), 1, 60, 200 * 1024)
    expect(s.checkpointStats().checkpoints).to.equal(0)
    expect(walBytes(file)).to.be.below(8 * MiB)
    expect(statSync(file).size).to.be.above(4 * MiB, 'checkpointed into the file')
    s.close()
  })

  it('a reader holding an old snapshot keeps it while commits go on; once it ends the WAL restarts and stops growing', () => {
    const file = freshSQLiteFile('wendelin-sqlite-ckpt-')
    const s = new SQLiteStorage(file, { pageSize: 512 })
    const oid = s.newOid()
    const serials = new Map<bigint, Tid>()
    commitBig(s, [oid], serials, 1, 1, 4 * MiB)
    const reader = new Database(file, { readonly: true })
    reader.exec('BEGIN')
    const read = reader.prepare('SELECT data FROM object_revisions WHERE oid = ? ORDER BY rowid DESC LIMIT 1').pluck()
    read.safeIntegers(true)
    expect(bigRecordNumber(read.get(oid) as Uint8Array)).to.equal(1)
    // 12 commits of ~8,400 frames: past the WAL limit (40,000 frames) the writer asks for whole
    // copies, which the reader keeps partial: the commits must go on all the same.
    commitBig(s, [oid], serials, 2, 12, 4 * MiB)
    expect(bigRecordNumber(read.get(oid) as Uint8Array)).to.equal(1, 'the reader keeps its snapshot')
    expect(walBytes(file)).to.be.above(12 * 4 * MiB, 'the reader kept the WAL from restarting')
    reader.exec('COMMIT')
    commitBig(s, [oid], serials, 14, 2, 4 * MiB)
    const size = walBytes(file)
    commitBig(s, [oid], serials, 16, 4, 4 * MiB)
    expect(walBytes(file)).to.equal(size, 'the WAL is written from its start again')
    expect(bigRecordNumber(read.get(oid) as Uint8Array)).to.equal(19)
    reader.close()
    s.close()
  })

  it('survives SIGKILL while the checkpointer copies: committed transactions whole, the newest at least the last acknowledged', async function () {
    this.timeout(120_000)
    const file = freshSQLiteFile('wendelin-sqlite-ckpt-')
    let next = 1
    let killedAfterCommits = 0
    for (let round = 0; round < 8; round++) {
      const child = fork(committerScript, [file, String(next), String(3 * MiB)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
      let printed = ''
      child.stdout!.on('data', (d: Buffer) => (printed += d.toString()))
      // Let it commit a few (the first ones start the checkpointer), then kill it at a random moment.
      await new Promise<void>((resolve) => {
        const look = setInterval(() => {
          if (printed.split('\n').length > 3 || child.exitCode !== null) {
            clearInterval(look)
            resolve()
          }
        }, 5)
      })
      await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 150)))
      const exited = new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)))
      child.kill('SIGKILL')
      await exited
      const acknowledged = printed.trim().split('\n').filter(Boolean).map(Number)
      if (acknowledged.length > 0) killedAfterCommits++
      const s = new SQLiteStorage(file, { pageSize: 512 })
      try {
        expect(s.integrityCheck()).to.deep.equal([])
        const a = bigRecordNumber(s.loadBefore(1n, MAX)!.data)
        const b = bigRecordNumber(s.loadBefore(2n, MAX)!.data)
        expect(a).to.equal(b, 'both records of one transaction')
        if (acknowledged.length > 0) expect(a).to.be.at.least(acknowledged.at(-1)!)
        next = a + 1
      } finally {
        s.close()
      }
    }
    expect(killedAfterCommits).to.equal(8)
  })
})
