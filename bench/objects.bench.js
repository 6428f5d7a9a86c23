// Attribute access on persistent objects against plain objects, in one run (issue 3's figures):
// reads of active (up-to-date) objects, writes to objects already changed in the transaction
// (the common case inside a loop), and first writes (which register the object with its
// connection). Target: reads within 3x of a plain object, writes to changed objects within 5x.
// Usage: node bench/objects.bench.js [--objects N] [--no-write]
import { TransactionManager } from '@wendelin/transaction'
import { DB, MemoryStorage, Persistent, PersistentList, registerClass } from '@wendelin/zodb'

import { printRows, summarize, updateResults } from './lib/harness.js'

const args = process.argv.slice(2)
const N = Number(args[args.indexOf('--objects') + 1] || 0) || 1_000
const PASSES = 2_000
const RUNS = 5
const write = !args.includes('--no-write')

class Point extends Persistent {
  x = 0
  y = 0
  z = 0
  label = ''
  weight = 1
}
registerClass('bench.objects.Point', Point)

class PlainPoint {
  x = 0
  y = 0
  z = 0
  label = ''
  weight = 1
}

// The design we did not take: a Proxy around every instance, whose traps check for ghosts on
// reads and mark changes on writes (what it would cost, measured beside the chosen layout).
const proxyTraps = {
  get(target, key, receiver) {
    if (target._p_state === -1 && typeof key === 'string') throw new Error('ghost')
    return Reflect.get(target, key, receiver)
  },
  set(target, key, value) {
    target[key] = value
    if (target._p_state === 0) target._p_state = 1
    return true
  },
}
function proxied(i) {
  return new Proxy(Object.assign(new PlainPoint(), { x: i, y: -i, label: `p${i}`, _p_state: 0 }), proxyTraps)
}
function readProxied(objs) {
  let s = 0
  for (let p = 0; p < PASSES; p++) for (let i = 0; i < objs.length; i++) s += objs[i].x + objs[i].y
  return s
}
function writeProxied(objs) {
  for (let p = 0; p < PASSES; p++) for (let i = 0; i < objs.length; i++) objs[i].z = p
}

// The loops are written twice on purpose: one call site per kind of object, as in real code,
// so that neither pays for the other's shape.
function readPlain(objs) {
  let s = 0
  for (let p = 0; p < PASSES; p++) for (let i = 0; i < objs.length; i++) s += objs[i].x + objs[i].y
  return s
}
function readPersistent(objs) {
  let s = 0
  for (let p = 0; p < PASSES; p++) for (let i = 0; i < objs.length; i++) s += objs[i].x + objs[i].y
  return s
}
function writePlain(objs) {
  for (let p = 0; p < PASSES; p++) for (let i = 0; i < objs.length; i++) objs[i].z = p
}
function writePersistent(objs) {
  for (let p = 0; p < PASSES; p++) for (let i = 0; i < objs.length; i++) objs[i].z = p
}

/** Nanoseconds per attribute access of `fn(objs)` doing `accesses` accesses. */
function nsPer(fn, objs, accesses) {
  const t = process.hrtime.bigint()
  fn(objs)
  return Number(process.hrtime.bigint() - t) / accesses
}

const db = new DB(new MemoryStorage())
const tm = new TransactionManager({ explicit: true })
const conn = db.open({ transactionManager: tm })
tm.begin()
conn.root.points = new PersistentList(Array.from({ length: N }, (_, i) => Object.assign(new Point(), { x: i, y: -i, label: `p${i}` })))
tm.commit()
tm.begin()
const points = conn.root.points.toArray()
for (const p of points) void p.x // all active, up to date
const plain = Array.from({ length: N }, (_, i) => Object.assign(new PlainPoint(), { x: i, y: -i, label: `p${i}` }))
const proxies = Array.from({ length: N }, (_, i) => proxied(i))

const reads = { persistent: [], plain: [] }
const writes = { persistent: [], plain: [] }
const firstWrites = { persistent: [], plain: [] }
const proxy = { reads: [], writes: [] }
for (let run = 0; run < RUNS + 1; run++) {
  const keep = run > 0 // the first run warms the JIT up
  const rp = nsPer(readPlain, plain, 2 * N * PASSES)
  const rq = nsPer(readPersistent, points, 2 * N * PASSES)
  // First writes: each object goes from up to date to changed and joins the transaction.
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) points[i].weight = run
  const fq = Number(process.hrtime.bigint() - t0) / N
  const t1 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) plain[i].weight = run
  const fp = Number(process.hrtime.bigint() - t1) / N
  const wp = nsPer(writePlain, plain, N * PASSES)
  const wq = nsPer(writePersistent, points, N * PASSES)
  const rx = nsPer(readProxied, proxies, 2 * N * PASSES)
  const wx = nsPer(writeProxied, proxies, N * PASSES)
  tm.abort() // changed objects become ghosts: load them again for the next run
  tm.begin()
  for (const p of points) void p.x
  if (keep) {
    reads.plain.push(rp)
    reads.persistent.push(rq)
    writes.plain.push(wp)
    writes.persistent.push(wq)
    firstWrites.plain.push(fp)
    firstWrites.persistent.push(fq)
    proxy.reads.push(rx)
    proxy.writes.push(wx)
  }
}

const rows = [
  { workload: 'objects', figure: 'attribute read, active object', value: summarize(reads.persistent), unit: 'ns/read', baseline: 'plain object', baselineValue: summarize(reads.plain) },
  { workload: 'objects', figure: 'attribute write, changed object', value: summarize(writes.persistent), unit: 'ns/write', baseline: 'plain object', baselineValue: summarize(writes.plain) },
  { workload: 'objects', figure: 'attribute read, per-instance Proxy (rejected design)', value: summarize(proxy.reads), unit: 'ns/read', baseline: 'plain object', baselineValue: summarize(reads.plain) },
  { workload: 'objects', figure: 'attribute write, per-instance Proxy (rejected design)', value: summarize(proxy.writes), unit: 'ns/write', baseline: 'plain object', baselineValue: summarize(writes.plain) },
  { workload: 'objects', figure: 'first write in a transaction (registers)', value: summarize(firstWrites.persistent), unit: 'ns/write', baseline: 'plain object', baselineValue: summarize(firstWrites.plain) },
]
printRows(rows)
const readRatio = rows[0].value.median / rows[0].baselineValue.median
const writeRatio = rows[1].value.median / rows[1].baselineValue.median
console.log(`targets: reads within 3x (${readRatio.toFixed(2)}x ${readRatio <= 3 ? 'met' : 'MISSED'}), writes to changed objects within 5x (${writeRatio.toFixed(2)}x ${writeRatio <= 5 ? 'met' : 'MISSED'})`)
if (write) updateResults(rows)
tm.abort()
conn.close()
db.close()
