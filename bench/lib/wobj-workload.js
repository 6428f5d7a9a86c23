// The object workload W-OBJ of shared/BENCHMARKS.md, figures 1-5, shared by the benchmarks
// that run it on different storages (bench/wobj.bench.js locally, bench/zeo.bench.js through
// the server): a persistent class with five attributes, 100,000 of them in an integer-keyed
// B-tree, populated, read cold and hot, updated, and changed in small commits.

import { TransactionManager } from '@wendelin/transaction'
import { DB, Persistent, registerClass } from '@wendelin/zodb'
import { IOBTree } from '@wendelin/btrees'

import { secondsSince, xorshift } from './harness.js'

export const BATCH = 1_000
export const UPDATE_TXNS = 100
export const SMALL_COMMITS = 1_000

export class Item extends Persistent {
  i = 0
  x = 0
  s = ''
  l = [0, 0, 0]
  prev = null
}
registerClass('bench.wobj.Item', Item)

/**
 * Let the previous run's objects go before the next run: await this between runs. A connection's
 * cache holds ghosts through WeakRefs, and V8 keeps every WeakRef target alive until the current
 * job (macrotask) ends; a benchmark that runs one workload after the other synchronously never
 * ends its job, so each run's 100k objects stayed in the heap (measured: +40-50 MB per run,
 * 48 -> 210 MB after five runs, slower GC and hot reads in the later runs). Then collects.
 */
export async function settle() {
  await new Promise((resolve) => setImmediate(resolve))
  if (globalThis.gc) globalThis.gc()
}

/** Object `i` of the workload: x = i * 0.5, a 20-character string, 3 integers, the previous object. */
export function makeItem(i, prev) {
  const o = new Item()
  o.i = i
  o.x = i * 0.5
  o.s = `item-${String(i).padStart(15, '0')}`.slice(0, 20)
  o.l = [i, i + 1, i + 2]
  o.prev = prev
  return o
}

/**
 * One run of figures 1-5 with `n` objects on the fresh storage `open()` gives; `reopen(storage)`
 * gives an instance over the same data for the cold read (the same one for a storage that
 * cannot be reopened, whose first database then stays open, idle). Returns rates per second.
 */
export function runObjectWorkload(n, open, reopen) {
  const storage = open()
  let db = new DB(storage)
  let tm = new TransactionManager({ explicit: true })
  let conn = db.open({ transactionManager: tm })
  tm.begin()
  const tree = new IOBTree()
  conn.root.items = tree
  tm.commit()

  // 1. populate, in transactions of BATCH
  let t0 = process.hrtime.bigint()
  let prev = null
  for (let base = 0; base < n; base += BATCH) {
    tm.begin()
    for (let i = base; i < base + BATCH; i++) {
      prev = makeItem(i, prev)
      tree.set(i, prev)
    }
    tm.commit()
  }
  const populate = n / secondsSince(t0)
  conn.close()

  // 2. cold read: a new DB (empty caches) over the same data
  const first = db
  const second = reopen(storage)
  if (second !== storage) first.close()
  db = new DB(second, { cacheSize: n * 2 })
  tm = new TransactionManager({ explicit: true })
  conn = db.open({ transactionManager: tm })
  tm.begin()
  const items = conn.root.items
  t0 = process.hrtime.bigint()
  let sum = 0
  for (const o of items.values()) sum += o.x
  const cold = n / secondsSince(t0)
  // 3. hot read: the same iteration again in the same connection
  t0 = process.hrtime.bigint()
  for (const o of items.values()) sum += o.x
  const hot = n / secondsSince(t0)
  if (!(sum > 0)) throw new Error('bad sum')
  tm.abort()

  // 4. update: UPDATE_TXNS transactions each changing x of BATCH random objects
  const r = xorshift(7)
  t0 = process.hrtime.bigint()
  for (let t = 0; t < UPDATE_TXNS; t++) {
    tm.begin()
    for (let j = 0; j < BATCH; j++) items.get(Math.floor(r() * n)).x += 1
    tm.commit()
  }
  const update = (UPDATE_TXNS * BATCH) / secondsSince(t0)

  // 5. small commits: SMALL_COMMITS transactions each changing one object
  t0 = process.hrtime.bigint()
  for (let t = 0; t < SMALL_COMMITS; t++) {
    tm.begin()
    items.get(Math.floor(r() * n)).x += 1
    tm.commit()
  }
  const small = SMALL_COMMITS / secondsSince(t0)
  conn.close()
  db.close()
  if (!first.closed) first.close()
  return { populate, cold, hot, update, small }
}
