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
import { DB, MemoryStorage, Persistent, SQLiteStorage, registerClass } from '@wendelin/zodb'
import { IOBTree } from '@wendelin/btrees'

import { printRows, secondsSince, summarize, updateResults, xorshift } from './lib/harness.js'

const args = process.argv.slice(2)
const N = Number(args[args.indexOf('--objects') + 1] || 0) || 100_000
const BATCH = 1_000
const UPDATE_TXNS = 100
const SMALL_COMMITS = 1_000
const RUNS = 3
const write = !args.includes('--no-write')
// On disk (not tmpfs), or durability costs nothing and the figures mean nothing.
const scratch = process.env.WENDELIN_BENCH_DIR ?? tmpdir()

class Item extends Persistent {
  i = 0
  x = 0
  s = ''
  l = [0, 0, 0]
  prev = null
}
registerClass('bench.wobj.Item', Item)

function makeItem(i, prev) {
  const o = new Item()
  o.i = i
  o.x = i * 0.5
  o.s = `item-${String(i).padStart(15, '0')}`.slice(0, 20)
  o.l = [i, i + 1, i + 2]
  o.prev = prev
  return o
}

/** One run of figures 1-5 on a fresh storage made by `open()`; `reopen()` gives a new instance over the same data. */
function runObjects(open, reopen) {
  const storage = open()
  let db = new DB(storage)
  let tm = new TransactionManager({ explicit: true })
  let conn = db.open({ transactionManager: tm })
  tm.begin()
  const tree = new IOBTree()
  conn.root.items = tree
  tm.commit()

  // 1. populate
  let t0 = process.hrtime.bigint()
  let prev = null
  for (let base = 0; base < N; base += BATCH) {
    tm.begin()
    for (let i = base; i < base + BATCH; i++) {
      prev = makeItem(i, prev)
      tree.set(i, prev)
    }
    tm.commit()
  }
  const populate = N / secondsSince(t0)
  conn.close()

  // 2. cold read: a new DB (empty caches) on the same storage
  const first = db
  const second = reopen(storage)
  if (second !== storage) first.close()
  db = new DB(second, { cacheSize: N * 2 })
  tm = new TransactionManager({ explicit: true })
  conn = db.open({ transactionManager: tm })
  tm.begin()
  const items = conn.root.items
  t0 = process.hrtime.bigint()
  let sum = 0
  for (const o of items.values()) sum += o.x
  const cold = N / secondsSince(t0)
  // 3. hot read
  t0 = process.hrtime.bigint()
  for (const o of items.values()) sum += o.x
  const hot = N / secondsSince(t0)
  if (!(sum > 0)) throw new Error('bad sum')
  tm.abort()

  // 4. update: 100 transactions each changing x of 1,000 random objects
  const r = xorshift(7)
  t0 = process.hrtime.bigint()
  for (let t = 0; t < UPDATE_TXNS; t++) {
    tm.begin()
    for (let j = 0; j < BATCH; j++) items.get(Math.floor(r() * N)).x += 1
    tm.commit()
  }
  const update = (UPDATE_TXNS * BATCH) / secondsSince(t0)

  // 5. small commits: 1,000 transactions each changing one object
  t0 = process.hrtime.bigint()
  for (let t = 0; t < SMALL_COMMITS; t++) {
    tm.begin()
    items.get(Math.floor(r() * N)).x += 1
    tm.commit()
  }
  const small = SMALL_COMMITS / secondsSince(t0)
  conn.close()
  db.close()
  if (!first.closed) first.close()
  return { populate, cold, hot, update, small }
}

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
      results.push(runObjects(c.open, c.reopen))
      if (globalThis.gc) globalThis.gc()
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
