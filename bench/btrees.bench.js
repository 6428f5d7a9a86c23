// B-tree benchmark (issue: persistent B-trees): insert 1,000,000 integer keys in transactions of
// 10,000; cold and hot point lookups; a full range scan — each beside a plain JS Map doing the
// same work in the same run. Runs on every storage that can be opened here (SQLite once it
// exists; MemoryStorage always). Usage: node bench/btrees.bench.js [--keys N] [--no-write]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

import { TransactionManager } from '@wendelin/transaction'
import { DB, openStorage } from '@wendelin/zodb'
import { IIBTree } from '@wendelin/btrees'

import { printRows, secondsSince, summarize, updateResults, xorshift } from './lib/harness.js'

const args = process.argv.slice(2)
const KEYS = Number(args[args.indexOf('--keys') + 1] || 0) || 1_000_000
const BATCH = 10_000
const LOOKUPS = 10_000
const write = !args.includes('--no-write')

function randomKeys(n, max, seed = 12345) {
  const r = xorshift(seed)
  return Array.from({ length: n }, () => Math.floor(r() * max))
}
const lookupKeys = randomKeys(LOOKUPS, KEYS)

/** One measured run on a fresh storage: rates for every figure. */
async function runTree(spec) {
  const storage = await openStorage(spec)
  let db = new DB(storage)
  let tm = new TransactionManager({ explicit: true })
  let conn = db.open({ transactionManager: tm })
  tm.begin()
  const tree = new IIBTree()
  conn.root.tree = tree
  tm.commit()

  let t0 = process.hrtime.bigint()
  for (let base = 0; base < KEYS; base += BATCH) {
    tm.begin()
    for (let k = base; k < base + BATCH; k++) tree.set(k, k)
    tm.commit()
  }
  const insert = KEYS / secondsSince(t0)
  conn.close()
  // Cold: a new database over the same data, so every cache is empty. A memory storage cannot
  // be reopened, so the first database stays open (idle) beside the second one.
  const first = db
  if (!spec.startsWith('memory:')) first.close()
  db = new DB(spec.startsWith('memory:') ? storage : await openStorage(spec))
  tm = new TransactionManager({ explicit: true })
  conn = db.open({ transactionManager: tm })
  tm.begin()
  const cold = conn.root.tree
  t0 = process.hrtime.bigint()
  let sum = 0
  for (const k of lookupKeys) sum += cold.get(k)
  const coldLookup = LOOKUPS / secondsSince(t0)
  t0 = process.hrtime.bigint()
  for (const k of lookupKeys) sum += cold.get(k)
  const hotLookup = LOOKUPS / secondsSince(t0)
  t0 = process.hrtime.bigint()
  let n = 0
  for (const v of cold.values()) {
    sum += v
    n++
  }
  const scan = n / secondsSince(t0)
  if (n !== KEYS || !Number.isFinite(sum)) throw new Error(`scan saw ${n} keys, expected ${KEYS}`)
  tm.abort()
  db.close()
  if (!first.closed) first.close()
  return { insert, coldLookup, hotLookup, scan }
}

function runMap() {
  const map = new Map()
  let t0 = process.hrtime.bigint()
  for (let base = 0; base < KEYS; base += BATCH) for (let k = base; k < base + BATCH; k++) map.set(k, k)
  const insert = KEYS / secondsSince(t0)
  t0 = process.hrtime.bigint()
  let sum = 0
  for (const k of lookupKeys) sum += map.get(k)
  const lookup = LOOKUPS / secondsSince(t0)
  t0 = process.hrtime.bigint()
  let n = 0
  for (const v of map.values()) {
    sum += v
    n++
  }
  const scan = n / secondsSince(t0)
  if (!Number.isFinite(sum)) throw new Error('bad sum')
  return { insert, lookup, scan }
}

async function storages() {
  const out = [{ name: 'memory', spec: () => 'memory:', cleanup: () => {} }]
  const dir = mkdtempSync(path.join(tmpdir(), 'wendelin-bench-'))
  try {
    const probe = await openStorage(`sqlite:${path.join(dir, 'probe.sqlite')}`)
    probe.close()
    let i = 0
    out.unshift({ name: 'sqlite', spec: () => `sqlite:${path.join(dir, `b${i++}.sqlite`)}`, cleanup: () => rmSync(dir, { recursive: true, force: true }) })
  } catch (error) {
    console.log(`(SQLite storage not available here: ${error.message.split('\n')[0]}; measuring MemoryStorage only)`)
    rmSync(dir, { recursive: true, force: true })
  }
  return out
}

const rows = []
for (const s of await storages()) {
  const results = []
  const maps = []
  const runs = 3
  for (let r = 0; r < runs; r++) {
    results.push(await runTree(s.spec()))
    maps.push(runMap())
    if (globalThis.gc) globalThis.gc()
  }
  s.cleanup()
  const pick = (xs, f) => summarize(xs.map(f))
  const wl = `B-tree/${s.name}`
  rows.push(
    { workload: wl, figure: `insert ${KEYS.toLocaleString('en-US')} int keys, commits of ${BATCH.toLocaleString('en-US')}`, value: pick(results, (x) => x.insert), unit: 'keys/s', baseline: 'JS Map set', baselineValue: pick(maps, (x) => x.insert) },
    { workload: wl, figure: 'cold point lookup (new DB, empty cache)', value: pick(results, (x) => x.coldLookup), unit: 'lookups/s', baseline: 'JS Map get', baselineValue: pick(maps, (x) => x.lookup) },
    { workload: wl, figure: 'hot point lookup', value: pick(results, (x) => x.hotLookup), unit: 'lookups/s', baseline: 'JS Map get', baselineValue: pick(maps, (x) => x.lookup) },
    { workload: wl, figure: 'full range scan (values)', value: pick(results, (x) => x.scan), unit: 'keys/s', baseline: 'JS Map values()', baselineValue: pick(maps, (x) => x.scan) },
  )
}

printRows(rows)
if (write) updateResults(rows)
