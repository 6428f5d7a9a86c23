// W-OBJ (shared/BENCHMARKS.md): 100,000 persistent objects with five attributes in an integer-
// keyed B-tree — populate, cold read, hot read, update, small commits — on MemoryStorage and
// SQLiteStorage (full durability, and normal for small commits), beside better-sqlite3 inserting
// and selecting rows of the same encoded sizes in the same transaction batches.
// The server figures (6.) come with the storage server.
// Usage: node bench/wobj.bench.js [--objects N] [--no-write]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

import Database from 'better-sqlite3'
import { TransactionManager } from '@wendelin/transaction'
import { DB, MemoryStorage, SQLiteStorage } from '@wendelin/zodb'

import { printRows, secondsSince, summarize, updateResults, xorshift } from './lib/harness.js'
import { BATCH, SMALL_COMMITS, makeItem, runObjectWorkload, settle } from './lib/wobj-workload.js'

const args = process.argv.slice(2)
const N = Number(args[args.indexOf('--objects') + 1] || 0) || 100_000
const RUNS = 3
const write = !args.includes('--no-write')
// On disk (not tmpfs), or durability costs nothing and the figures mean nothing.
const scratch = process.env.WENDELIN_BENCH_DIR ?? tmpdir()

/** The raw baseline: better-sqlite3 rows of the same encoded size, same batches, same durability. */
function runRaw(file, durability, recordSize) {
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma(`synchronous = ${durability === 'full' ? 'FULL' : 'NORMAL'}`)
  db.exec('CREATE TABLE rows (id INTEGER PRIMARY KEY, data BLOB)')
  const blob = Buffer.alloc(recordSize, 7)
  const insert = db.prepare('INSERT INTO rows (id, data) VALUES (?, ?)')
  const insertBatch = db.transaction((base) => {
    for (let i = base; i < base + BATCH; i++) insert.run(i, blob)
  })
  let t0 = process.hrtime.bigint()
  for (let base = 0; base < N; base += BATCH) insertBatch(base)
  const populate = N / secondsSince(t0)
  db.close()
  const db2 = new Database(file)
  const select = db2.prepare('SELECT data FROM rows WHERE id = ?')
  t0 = process.hrtime.bigint()
  let bytes = 0
  for (let i = 0; i < N; i++) bytes += select.get(i).data.length
  const cold = N / secondsSince(t0)
  const update = db2.prepare('UPDATE rows SET data = ? WHERE id = ?')
  const r = xorshift(7)
  db2.pragma(`synchronous = ${durability === 'full' ? 'FULL' : 'NORMAL'}`)
  t0 = process.hrtime.bigint()
  // Different bytes each time: SQLite does not write (or sync) an UPDATE that changes nothing.
  for (let t = 0; t < SMALL_COMMITS; t++) {
    blob.writeUInt32LE(t + 1, 0)
    update.run(blob, Math.floor(r() * N))
  }
  const small = SMALL_COMMITS / secondsSince(t0)
  db2.close()
  if (bytes === 0) throw new Error('bad read')
  return { populate, cold, small }
}

/** Average encoded record size of an Item, measured on a small database. */
function measureRecordSize() {
  const dir = mkdtempSync(path.join(scratch, 'wobj-size-'))
  const s = new SQLiteStorage(path.join(dir, 'size.sqlite'))
  const db = new DB(s)
  const tm = new TransactionManager({ explicit: true })
  const conn = db.open({ transactionManager: tm })
  tm.begin()
  let prev = null
  for (let i = 0; i < 100; i++) conn.root[`o${i}`] = prev = makeItem(i, prev)
  tm.commit()
  let total = 0
  for (let i = 0; i < 100; i++) total += conn.root[`o${i}`]._p_estimatedSize
  db.close()
  rmSync(dir, { recursive: true, force: true })
  return Math.round(total / 100)
}

const recordSize = measureRecordSize()
console.log(`W-OBJ: ${N.toLocaleString('en-US')} objects, record size ≈ ${recordSize} bytes, ${RUNS} runs`)

const dirs = []
const fileIn = () => {
  const d = mkdtempSync(path.join(scratch, 'wobj-'))
  dirs.push(d)
  return path.join(d, 'db.sqlite')
}
const configs = [
  { name: 'MemoryStorage', open: () => new MemoryStorage(), reopen: (s) => s },
  { name: 'SQLiteStorage', durability: 'full', open: () => new SQLiteStorage(fileIn()), reopen: (s) => new SQLiteStorage(s.file) },
  { name: 'SQLiteStorage (normal)', durability: 'normal', open: () => new SQLiteStorage(fileIn(), { durability: 'normal' }), reopen: (s) => new SQLiteStorage(s.file, { durability: 'normal' }) },
]

const rows = []
try {
  const raw = { full: [], normal: [] }
  for (let run = 0; run < RUNS; run++) {
    raw.full.push(runRaw(fileIn(), 'full', recordSize))
    raw.normal.push(runRaw(fileIn(), 'normal', recordSize))
  }
  for (const c of configs) {
    const results = []
    for (let run = 0; run < RUNS; run++) {
      results.push(runObjectWorkload(N, c.open, c.reopen))
      await settle()
    }
    const base = raw[c.durability ?? 'full']
    const m = (f) => summarize(results.map(f))
    const b = (f) => summarize(base.map(f))
    const wl = `W-OBJ/${c.name}`
    const rawName = `better-sqlite3 rows (${c.durability ?? 'full'})`
    if (c.durability !== 'normal') {
      rows.push(
        { workload: wl, figure: '1 populate', value: m((x) => x.populate), unit: 'objects/s', baseline: rawName, baselineValue: b((x) => x.populate) },
        { workload: wl, figure: '2 cold read', value: m((x) => x.cold), unit: 'objects/s', baseline: `${rawName} select`, baselineValue: b((x) => x.cold) },
        { workload: wl, figure: '3 hot read', value: m((x) => x.hot), unit: 'objects/s', baseline: `${rawName} select`, baselineValue: b((x) => x.cold) },
        { workload: wl, figure: '4 update', value: m((x) => x.update), unit: 'objects/s', baseline: rawName, baselineValue: b((x) => x.populate) },
      )
    }
    rows.push({ workload: wl, figure: '5 small commits', value: m((x) => x.small), unit: 'commits/s', baseline: `${rawName} 1-row commits`, baselineValue: b((x) => x.small) })
  }
} finally {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
}
printRows(rows)
if (write) updateResults(rows)
