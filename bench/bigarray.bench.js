// W-ARR (shared/BENCHMARKS.md): a 1-D float64 ZBigArray on SQLiteStorage (a file on tmpfs),
// 2 MiB blocks, each figure beside a baseline measured in this run:
//   write           a fresh process fills a[i] = i * 0.5 through 64 MiB views, commits: MB/s
//                   (commits included). The RAM limit is 512 MiB and dirty pages cannot leave
//                   RAM before they are committed, so the fill commits every 256 MiB (4
//                   transactions per GiB).
//     baseline: a fresh process with better-sqlite3 inserting the same bytes as 2 MiB blobs,
//               same transactions
//   cold read       a fresh process with the workload's 512 MiB RAM limit sums every element
//                   through 64 MiB chunks: MB/s
//     baseline: a fresh process selecting every 2 MiB blob with better-sqlite3
//   warm read       another fresh process whose RAM limit (1.25 GiB) holds the array sums once
//                   (loading it), then sums again, timed: GB/s
//     baseline: the same sum (same loop, same 64 MiB windows) over a plain Float64Array of the
//               same size in that process
//   random          10,000 A.get(i) at random places of a WARR_RANDOM_MiB array (default 4096),
//                   cold, in a fresh process with a 512 MiB RAM limit: µs per read (each value
//                   checked); with ZBlk0 blocks (a read of a page not in memory reads a range of
//                   its 2 MiB record, up to 32 times per page, then loads the page) in a
//                   database created with the defaults (which keep SQLite's pointer map:
//                   the range read skips the pages before it without reading them) and in
//                   one created without it (autoVacuum: 'none': every page before the range
//                   is visited for its link), and with ZBlk1 blocks (a read of a page not in
//                   memory reads one 4 KiB chunk)
//     baseline: the same reads from a plain Float64Array (warm memory); for ZBlk0 also what
//               SQLite alone takes: a fresh process selecting the 2 MiB blob of random blocks
//   small updates   1,000 transactions each setting one element at a random place of the
//                   array: commits/s and database growth per transaction (after a WAL
//                   checkpoint), once with ZBlk0 blocks, once with ZBlk1 (every block converted
//                   to ZBlk1 by one commit each before measuring)
//     baseline: 1,000 better-sqlite3 transactions each rewriting one 4 KiB blob
// Size: WARR_MiB (default 1024). Writes its rows into bench/RESULTS.md (unless WARR_NO_RESULTS).
// WARR_ONLY (comma-separated of write, cold, warm, random, small) runs only those figures (and
// the write each needs first) without changing what any of them measures; a filtered run prints
// its rows but never writes RESULTS.md.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { RAM } from '@wendelin/bigfile'
import { ZBigArray } from '@wendelin/bigarray'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage } from '@wendelin/zodb'
import Database from 'better-sqlite3'

import { printRows, secondsSince, summarize, updateResults, xorshift } from './lib/harness.js'
import { chunkCommits, runInChild, sqliteFileSize, writeBlobs } from './lib/raw-sqlite.js'

/** The raw baseline of figure 1: the same bytes (i * 0.5) as 2 MiB blobs, same transactions. MB/s. */
function rawWrite(file, bytes) {
  const fill = (block, id) => {
    const base = id * block.length
    for (let i = 0; i < block.length; i++) block[i] = (base + i) * 0.5
  }
  return bytes / 1e6 / writeBlobs(file, { bytes, blockBytes: BLK, txnBytes: TXN_BYTES, fill })
}

const MiB = 1024 * 1024
const BLK = 2 * MiB
const SIZE = Number(process.env.WARR_MiB ?? 1024) * MiB
const RANDOM_SIZE = Number(process.env.WARR_RANDOM_MiB ?? 4096) * MiB
const RUNS = Number(process.env.WARR_RUNS ?? 3)
const FIGURES = ['write', 'cold', 'warm', 'random', 'small']
const ONLY = process.env.WARR_ONLY ? new Set(process.env.WARR_ONLY.split(',').map((f) => f.trim())) : null
for (const f of ONLY ?? []) if (!FIGURES.includes(f)) throw new Error(`WARR_ONLY: unknown figure ${f} (known: ${FIGURES.join(', ')})`)
/** Whether figure `f` is measured in this run. */
const runs = (f) => ONLY === null || ONLY.has(f)
const RAM_LIMIT = 512 * MiB
const VIEW = 64 * MiB
const TXN_BYTES = RAM_LIMIT / 2
const scratch = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
const self = fileURLToPath(import.meta.url)

function openZ(file, storageOptions = {}) {
  const db = new DB(new SQLiteStorage(file, storageOptions), { cacheSize: 50000 })
  const tm = new TransactionManager()
  const conn = db.open({ transactionManager: tm })
  return { db, tm, conn }
}

/** Creates root.a, bytes long, filled with i * 0.5 through 64 MiB views: MB/s. */
function writeArray(file, bytes, format = 'ZBlk0', storageOptions = {}) {
  const { db, tm, conn } = openZ(file, storageOptions)
  conn.root.a = new ZBigArray([bytes / 8], 'float64', { blksize: BLK, format })
  tm.commit()
  const ram = new RAM({ pageSize: BLK, limit: RAM_LIMIT })
  const A = conn.root.a
  A.open({ ram })
  const start = process.hrtime.bigint()
  let dirty = 0
  for (const c of A.chunks({ bytes: VIEW })) {
    const v = c.array
    const d = v.data
    for (let i = 0, at = v.offset, x = c.start * 0.5; i < v.size; i++, at++, x += 0.5) d[at] = x
    dirty += v.size * 8
    if (dirty >= TXN_BYTES) {
      tm.commit()
      dirty = 0
    }
  }
  tm.commit()
  const s = secondsSince(start)
  A.close()
  db.close()
  ram.close()
  return bytes / 1e6 / s
}

// ---- in a fresh process ----------------------------------------------------------------------

/** The one inner loop both sides of the warm-read comparison run. */
function sumRange(d, from, end) {
  let x = 0
  for (let i = from; i < end; i++) x += d[i]
  return x
}

function sumArray(A) {
  let s = 0
  for (const c of A.chunks({ bytes: VIEW })) s += sumRange(c.array.data, c.array.offset, c.array.offset + c.array.size)
  return s
}

/** The baseline: the same windows over a plain Float64Array. */
function sumPlainWindows(a) {
  let s = 0
  const w = VIEW / 8
  for (let from = 0; from < a.length; from += w) s += sumRange(a, from, Math.min(a.length, from + w))
  return s
}

function sumPlain(a) {
  let x = 0
  for (let i = 0; i < a.length; i++) x += a[i]
  return x
}

/** Cold read in a fresh process under the workload's RAM limit (frames recycled past it): MB/s. */
function childRead(file) {
  const { db, conn } = openZ(file)
  const ram = new RAM({ pageSize: BLK, limit: Number(process.env.WARR_COLD_LIMIT_MiB ?? RAM_LIMIT / MiB) * MiB })
  const A = conn.root.a
  A.open({ ram })
  const start = process.hrtime.bigint()
  const s = sumArray(A)
  const coldMBs = SIZE / 1e6 / secondsSince(start)
  checkSum(A, s, 'cold')
  A.close()
  db.close()
  return { coldMBs }
}

function checkSum(A, s, what) {
  const n = A.size
  const expect = (0.5 * n * (n - 1)) / 2
  if (Math.abs(s - expect) > expect * 1e-9) throw new Error(`${what} sum ${s} != ${expect}`)
}

/**
 * Warm read in a fresh process whose RAM limit holds the array: a first sum loads every page
 * (not timed: that is the cold read's figure), then the second sum is timed beside a plain array.
 */
function childWarmRead(file) {
  const { db, conn } = openZ(file)
  const ram = new RAM({ pageSize: BLK, limit: SIZE + 256 * MiB })
  const A = conn.root.a
  A.open({ ram })
  const n = A.size
  const s1 = sumArray(A)
  checkSum(A, s1, 'first')
  const plain = new Float64Array(n)
  for (let i = 0; i < n; i++) plain[i] = i * 0.5
  const warm = []
  const base = []
  for (let r = 0; r < 3; r++) {
    let start = process.hrtime.bigint()
    const s2 = sumArray(A)
    warm.push(SIZE / 1e9 / secondsSince(start))
    if (s2 !== s1) throw new Error('warm sum differs')
    start = process.hrtime.bigint()
    const s3 = sumPlainWindows(plain)
    base.push(SIZE / 1e9 / secondsSince(start))
    checkSum(A, s3, 'plain')
  }
  A.close()
  db.close()
  return { warm, base }
}

function childRawRead(file) {
  const sq = new Database(file, { readonly: true })
  const sel = sq.prepare('SELECT data FROM blobs WHERE id = ?')
  const start = process.hrtime.bigint()
  let s = 0
  for (let id = 0; id < SIZE / BLK; id++) {
    const b = sel.get(id).data
    const f = new Float64Array(b.buffer, b.byteOffset, b.length / 8)
    s += sumPlain(f)
  }
  const secs = secondsSince(start)
  sq.close()
  return { coldMBs: SIZE / 1e6 / secs, s }
}

/** SQLite alone, cold: selecting the 2 MiB blob of a random block (what a ZBlk0 read loads). */
function childRawRandom(file) {
  const sq = new Database(file, { readonly: true })
  const sel = sq.prepare('SELECT data FROM blobs WHERE id = ?')
  const rnd = xorshift(13)
  const count = 500
  const ids = Array.from({ length: count }, () => Math.floor(rnd() * (SIZE / BLK)))
  const start = process.hrtime.bigint()
  let s = 0
  for (const id of ids) s += sel.get(id).data[8]
  const us = (secondsSince(start) * 1e6) / count
  sq.close()
  return { us, s }
}

function childRandom(file) {
  const { db, conn } = openZ(file)
  const ram = new RAM({ pageSize: BLK, limit: RAM_LIMIT })
  const A = conn.root.a
  A.open({ ram })
  const n = A.size
  const rnd = xorshift(11)
  const idx = Array.from({ length: 10000 }, () => Math.floor(rnd() * n))
  const start = process.hrtime.bigint()
  let bad = 0
  for (const i of idx) if (A.get(i) !== i * 0.5) bad++
  const us = (secondsSince(start) * 1e6) / idx.length
  if (bad) throw new Error(`${bad} random reads returned wrong values`)
  A.close()
  db.close()
  // baseline: the same reads from a plain array (1 GiB of it, indices folded into it)
  const m = Math.min(n, SIZE / 8)
  const plain = new Float64Array(m)
  for (let i = 0; i < m; i++) plain[i] = i * 0.5
  const t0 = process.hrtime.bigint()
  let s = 0
  for (const i of idx) s += plain[i % m]
  const baseUs = (secondsSince(t0) * 1e6) / idx.length
  return { us, baseUs, s }
}

// ---- small updates ---------------------------------------------------------------------------

function smallUpdates(file, format) {
  const { db, tm, conn } = openZ(file)
  const ram = new RAM({ pageSize: BLK, limit: RAM_LIMIT })
  const A = conn.root.a
  A.zfile.format = format
  tm.commit()
  A.open({ ram })
  const n = A.size
  const rnd = xorshift(format === 'ZBlk0' ? 5 : 7)
  if (format === 'ZBlk1') {
    // every block rewritten once as ZBlk1 (a block changes format when next written)
    for (let b = 0; b < SIZE / BLK; b++) {
      A.set(b * (BLK / 8), -1)
      tm.commit()
    }
  }
  const count = 1000
  const before = sqliteFileSize(file)
  const start = process.hrtime.bigint()
  for (let k = 0; k < count; k++) {
    A.set(Math.floor(rnd() * n), rnd())
    tm.commit()
  }
  const secs = secondsSince(start)
  const growth = (sqliteFileSize(file) - before) / count
  A.close()
  db.close()
  ram.close()
  return { perSec: count / secs, growth }
}

// ---- main ------------------------------------------------------------------------------------

function freshFile(tag) {
  const dir = fs.mkdtempSync(path.join(scratch, `wendelin-warr-bench-${tag}-`))
  return { dir, file: path.join(dir, 'db.sqlite') }
}

async function main() {
  const [mode, file] = process.argv.slice(2)
  if (mode === 'read') return console.log(JSON.stringify(childRead(file)))
  if (mode === 'warm') return console.log(JSON.stringify(childWarmRead(file)))
  if (mode === 'raw-read') return console.log(JSON.stringify(childRawRead(file)))
  if (mode === 'random') return console.log(JSON.stringify(childRandom(file)))
  if (mode === 'raw-random') return console.log(JSON.stringify(childRawRandom(file)))
  if (mode === 'write') return console.log(JSON.stringify({ MBs: writeArray(file, SIZE) }))
  if (mode === 'raw-write') return console.log(JSON.stringify({ MBs: rawWrite(file, SIZE) }))

  const label = `${SIZE / MiB} MiB, 2 MiB blocks`
  const write = [], rawW = [], cold = [], rawR = [], warm = [], warmBase = [], rawRnd = []
  const small = { ZBlk0: [], ZBlk1: [] }
  const growth = { ZBlk0: [], ZBlk1: [] }
  const rawSmall = []
  const needArray = runs('write') || runs('cold') || runs('warm') || runs('small')
  const needRaw = runs('write') || runs('cold') || runs('random') // the raw blobs: baselines
  for (let run = 0; (needArray || needRaw) && run < RUNS; run++) {
    const z = freshFile('z')
    const r = freshFile('raw')
    try {
      // Each write in a fresh process, as the reads are: in this one it came after the last
      // run's small updates (ZBlk1 conversion of the whole array, in this process) and paid for
      // what they left — measured in one sitting, writes after them 360-394 MB/s against
      // 505-647 without them, while raw SQLite's writes did not change.
      if (needArray) write.push(runInChild(self, 'write', z.file).MBs)
      if (needRaw) rawW.push(runInChild(self, 'raw-write', r.file).MBs)
      if (runs('cold')) {
        cold.push(runInChild(self, 'read', z.file).coldMBs)
        rawR.push(runInChild(self, 'raw-read', r.file).coldMBs)
      }
      if (runs('warm')) {
        const w = runInChild(self, 'warm', z.file)
        warm.push(...w.warm)
        warmBase.push(...w.base)
      }
      if (runs('random')) rawRnd.push(runInChild(self, 'raw-random', r.file).us)
      fs.rmSync(r.dir, { recursive: true, force: true })
      if (runs('small')) {
        for (const format of ['ZBlk0', 'ZBlk1']) {
          const u = smallUpdates(z.file, format)
          small[format].push(u.perSec)
          growth[format].push(u.growth)
        }
        const rs = freshFile('rawsmall')
        rawSmall.push(chunkCommits(rs.file, { bytes: SIZE }))
        fs.rmSync(rs.dir, { recursive: true, force: true })
      }
    } finally {
      fs.rmSync(z.dir, { recursive: true, force: true })
      fs.rmSync(r.dir, { recursive: true, force: true })
    }
    const at = (list, digits = 0) => (list.length ? list.at(-1).toFixed(digits) : '-')
    console.log(
      `run ${run}: write ${at(write)} MB/s (raw ${at(rawW)}), cold read ${at(cold)} MB/s (raw ${at(rawR)}), ` +
        `warm ${at(warm, 2)} GB/s (plain ${at(warmBase, 2)}), small updates ZBlk0 ${at(small.ZBlk0)}/s +${at(growth.ZBlk0)} B, ` +
        `ZBlk1 ${at(small.ZBlk1)}/s +${at(growth.ZBlk1)} B (raw ${at(rawSmall)}/s)`,
    )
  }
  // random reads: one array of RANDOM_SIZE per block format (and ZBlk0 once more in a database
  // created without SQLite's pointer map), read cold by RUNS fresh processes
  const rnd = { ZBlk0: [], ZBlk0noPtrmap: [], ZBlk1: [] }
  const rndBase = []
  const randomArrays = [
    { key: 'ZBlk0', format: 'ZBlk0', options: {} },
    { key: 'ZBlk0noPtrmap', format: 'ZBlk0', options: { autoVacuum: 'none' } },
    { key: 'ZBlk1', format: 'ZBlk1', options: {} },
  ]
  for (const { key, format, options } of runs('random') ? randomArrays : []) {
    const z = freshFile('random')
    try {
      const wr = writeArray(z.file, RANDOM_SIZE, format, options)
      console.log(`random: wrote the ${RANDOM_SIZE / MiB} MiB array (${key}) at ${wr.toFixed(0)} MB/s`)
      for (let run = 0; run < RUNS; run++) {
        const r = runInChild(self, 'random', z.file)
        rnd[key].push(r.us)
        rndBase.push(r.baseUs)
        console.log(`random run ${run} (${key}): ${r.us.toFixed(1)} µs per read (plain array ${r.baseUs.toFixed(3)} µs)`)
      }
    } finally {
      fs.rmSync(z.dir, { recursive: true, force: true })
    }
  }
  // A figure left out by WARR_ONLY has no values: its row is dropped below.
  const summarized = (list) => (list.length ? summarize(list) : null)
  const allRows = [
    { only: 'write', workload: 'W-ARR/sqlite', figure: `write a[i] = i*0.5 through 64 MiB views + commit, ${label}, RAM limit 512 MiB`, value: summarized(write), unit: 'MB/s', baseline: 'better-sqlite3 2 MiB blob inserts', baselineValue: summarized(rawW) },
    { only: 'cold', workload: 'W-ARR/sqlite', figure: `cold read: sum in 64 MiB chunks, fresh process, ${label}, RAM limit 512 MiB`, value: summarized(cold), unit: 'MB/s', baseline: 'better-sqlite3 2 MiB blob selects + sum, fresh process', baselineValue: summarized(rawR) },
    { only: 'warm', workload: 'W-ARR/sqlite', figure: `warm read: second sum in 64 MiB chunks (fresh process), RAM limit ${(SIZE + 256 * MiB) / MiB} MiB, ${label}`, value: summarized(warm), unit: 'GB/s', baseline: 'plain Float64Array sum, same loop and windows', baselineValue: summarized(warmBase) },
    { only: 'random', workload: 'W-ARR/sqlite', figure: `random A.get(i), 10,000 cold reads in a ${RANDOM_SIZE / MiB} MiB array, fresh process, RAM limit 512 MiB`, value: summarized(rnd.ZBlk0), unit: 'µs/read', baseline: 'plain Float64Array random read', baselineValue: summarized(rndBase) },
    { only: 'random', workload: 'W-ARR/sqlite', figure: `random A.get(i), 10,000 cold reads in a ${RANDOM_SIZE / MiB} MiB array of ZBlk0 blocks, fresh process`, value: summarized(rnd.ZBlk0), unit: 'µs/read', baseline: 'better-sqlite3 select of a random 2 MiB blob, fresh process', baselineValue: summarized(rawRnd) },
    { only: 'random', workload: 'W-ARR/sqlite', figure: `random A.get(i), 10,000 cold reads in a ${RANDOM_SIZE / MiB} MiB array of ZBlk0 blocks, database created with autoVacuum: 'none' (no pointer map), fresh process`, value: summarized(rnd.ZBlk0noPtrmap), unit: 'µs/read', baseline: 'better-sqlite3 select of a random 2 MiB blob, fresh process', baselineValue: summarized(rawRnd) },
    { only: 'random', workload: 'W-ARR/sqlite', figure: `random A.get(i), 10,000 cold reads in a ${RANDOM_SIZE / MiB} MiB array of ZBlk1 blocks, fresh process, RAM limit 512 MiB`, value: summarized(rnd.ZBlk1), unit: 'µs/read', baseline: 'plain Float64Array random read', baselineValue: summarized(rndBase) },
    { only: 'small', workload: 'W-ARR/sqlite', figure: `1,000 commits of one element at random, ${label}, ZBlk0`, value: summarized(small.ZBlk0), unit: 'commits/s', baseline: 'better-sqlite3 4 KiB blob update per transaction', baselineValue: summarized(rawSmall) },
    { only: 'small', workload: 'W-ARR/sqlite', figure: `1,000 commits of one element at random, ${label}, ZBlk1`, value: summarized(small.ZBlk1), unit: 'commits/s', baseline: 'better-sqlite3 4 KiB blob update per transaction', baselineValue: summarized(rawSmall) },
    { only: 'small', workload: 'W-ARR/sqlite', figure: 'database growth per small commit, ZBlk0', value: summarized(growth.ZBlk0), unit: 'bytes', baseline: 'block size', baselineValue: summarized([BLK]) },
    { only: 'small', workload: 'W-ARR/sqlite', figure: 'database growth per small commit, ZBlk1', value: summarized(growth.ZBlk1), unit: 'bytes', baseline: 'chunk size', baselineValue: summarized([4096]) },
  ]
  // (`only`: the figure that fills the row, see WARR_ONLY)
  const rows = allRows.filter((r) => runs(r.only)).map(({ only: _, ...row }) => row)
  printRows(rows)
  if (!process.env.WARR_NO_RESULTS && ONLY === null) updateResults(rows)
}

await main()
