// Raw better-sqlite3 baselines for the array benchmarks (ZBigFile, W-ARR), and running one mode
// of a benchmark script in a fresh process (cold reads need a process with empty caches).

import { spawnSync } from 'node:child_process'
import fs from 'node:fs'

import Database from 'better-sqlite3'

import { secondsSince, xorshift } from './harness.js'

/** Size of a SQLite file once its WAL is checkpointed into it (database growth). */
export function sqliteFileSize(file) {
  const sq = new Database(file)
  sq.pragma('wal_checkpoint(TRUNCATE)')
  sq.close()
  return fs.statSync(file).size
}

/**
 * SQLite page size of the array benchmarks' databases, ours and the raw baselines' alike
 * (WENDELIN_BENCH_PAGE_SIZE; SQLite's default 4096 when unset). The raw baselines' files keep
 * SQLite's default layout otherwise: no pointer map, which SQLiteStorage's files have since
 * 2026-11-22 (auto_vacuum incremental). It matters to range reads only: the raw baselines read
 * whole blobs, and the map's cost on writes was within the noise (zodb README).
 */
export const PAGE_SIZE = process.env.WENDELIN_BENCH_PAGE_SIZE ? Number(process.env.WENDELIN_BENCH_PAGE_SIZE) : undefined

function openDurable(file) {
  const sq = new Database(file)
  if (PAGE_SIZE !== undefined) sq.pragma(`page_size = ${PAGE_SIZE}`)
  sq.pragma('journal_mode = WAL')
  sq.pragma('synchronous = FULL')
  return sq
}

/**
 * Write `bytes` as blobs of `blockBytes` into table `blobs` (ids 0, 1, ...), `txnBytes` per
 * transaction, filling each block with `fill(block, id)` first. Returns the seconds it took.
 */
export function writeBlobs(file, { bytes, blockBytes, txnBytes, fill }) {
  const sq = openDurable(file)
  sq.exec('CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)')
  const ins = sq.prepare('INSERT INTO blobs (id, data) VALUES (?, ?)')
  const block = new Float64Array(blockBytes / 8)
  const start = process.hrtime.bigint()
  let id = 0
  for (let c = 0; c < bytes / txnBytes; c++) {
    sq.transaction(() => {
      for (let b = 0; b < txnBytes / blockBytes; b++) {
        fill(block, id)
        ins.run(id++, Buffer.from(block.buffer))
      }
    })()
  }
  const secs = secondsSince(start)
  sq.close()
  return secs
}

/**
 * `count` synced transactions each rewriting one 4 KiB chunk (8 changed bytes) of a table of
 * `bytes` in chunks: what a small commit costs SQLite itself. Returns commits per second.
 */
export function chunkCommits(file, { bytes, count = 1000 }) {
  const sq = openDurable(file)
  sq.exec('CREATE TABLE chunks (id INTEGER PRIMARY KEY, data BLOB)')
  const nchunks = bytes / 4096
  const chunk = Buffer.alloc(4096, 1)
  const ins = sq.prepare('INSERT INTO chunks VALUES (?, ?)')
  sq.transaction(() => {
    for (let i = 0; i < nchunks; i++) ins.run(i, chunk)
  })()
  const upd = sq.prepare('UPDATE chunks SET data = ? WHERE id = ?')
  const rnd = xorshift(7)
  const start = process.hrtime.bigint()
  for (let i = 0; i < count; i++) {
    chunk.writeDoubleLE(rnd(), 8 * Math.floor(rnd() * 512))
    sq.transaction(() => upd.run(chunk, Math.floor(rnd() * nchunks)))()
  }
  const secs = secondsSince(start)
  sq.close()
  return count / secs
}

/** Run `script mode file` in a fresh process and return the JSON its last stdout line holds. */
export function runInChild(script, mode, file) {
  const r = spawnSync(process.execPath, ['--expose-gc', script, mode, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 })
  if (r.status !== 0) throw new Error(`${mode} child failed`)
  return JSON.parse(r.stdout.trim().split('\n').pop())
}
