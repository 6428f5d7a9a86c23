// What the SQLiteStorage test files share: scratch files, transaction metadata, a commit of raw
// records through the storage's two-phase commit.
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import type { SQLiteStorage, Tid } from '@wendelin/zodb'

const scratch = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()
let dirs: string[] = []

/** A path for a new database file in a scratch folder of its own (removed by removeSQLiteFiles). */
export function freshSQLiteFile(prefix = 'wendelin-sqlite-'): string {
  const dir = mkdtempSync(path.join(scratch, prefix))
  dirs.push(dir)
  return path.join(dir, 'db.sqlite')
}

/** Removes the folders freshSQLiteFile made (a test file's `after` hook). */
export function removeSQLiteFiles(): void {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
  dirs = []
}

export function meta() {
  return { user: '', description: '', extension: {} }
}

/** One transaction storing `records` ([oid, old serial, data]): its tid. */
export function commitRecords(storage: SQLiteStorage, records: Array<[bigint, Tid, Uint8Array]>): Tid {
  const txn = meta()
  storage.tpc_begin(txn)
  for (const [oid, old, data] of records) storage.store(oid, old, data, txn)
  storage.tpc_vote(txn)
  return storage.tpc_finish(txn)
}

/** Votes one transaction storing `records` and aborts it: the vote's error (undefined if it voted). */
export function voteError(storage: SQLiteStorage, records: Iterable<[bigint, Tid, Uint8Array]>): unknown {
  const txn = meta()
  storage.tpc_begin(txn)
  let error: unknown
  try {
    for (const [oid, old, data] of records) storage.store(oid, old, data, txn)
    storage.tpc_vote(txn)
  } catch (e) {
    error = e
  }
  storage.tpc_abort(txn)
  return error
}

/** `n` bytes of a pattern (byte i is i * step + seed, mod 256): records whose every part differs. */
export function patternBytes(n: number, seed: number, step = 7): Uint8Array {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * step + seed) & 0xff
  return b
}

/**
 * Overwrite the root page of table or index `name` of the (closed) database `file` with garbage,
 * after checkpointing its WAL into it: the file still opens, and reads through `name` find the
 * page corrupt.
 */
export function damageRootPage(file: string, name: string): void {
  const raw = new Database(file)
  raw.pragma('wal_checkpoint(TRUNCATE)')
  const rootPage = Number(raw.prepare('SELECT rootpage FROM sqlite_master WHERE name = ?').pluck().get(name))
  const pageSize = Number(raw.pragma('page_size', { simple: true }))
  raw.close()
  const fd = openSync(file, 'r+')
  writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, (rootPage - 1) * pageSize)
  closeSync(fd)
}
