// Review findings on SQLiteStorage shared by several processes.
import { expect } from 'chai'
import { existsSync, statSync } from 'node:fs'
import { SQLiteStorage } from '@wendelin/zodb'
import Database from 'better-sqlite3'

import { bigRecord } from './big-record-helpers.js'
import { freshSQLiteFile, meta, removeSQLiteFiles } from './sqlite-helpers.js'

after(removeSQLiteFiles)

function walBytes(file: string): number {
  return existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0
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
