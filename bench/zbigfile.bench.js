// ZBigFile figures named by issue 7, on SQLiteStorage (a file on tmpfs, durability 'full'),
// each beside a baseline measured in this run with raw better-sqlite3:
//   write+commit        MB/s writing the whole file through a mapping (ZBlk0, 2 MiB blocks),
//                       committing every RAM-limit/2 bytes (a transaction's dirty pages must
//                       fit in RAM: the RAM limit is a quarter of the file)
//     baseline: inserting the same bytes as 2 MiB blobs with better-sqlite3, one transaction
//               per the same amount
//   cold read           MB/s in a fresh process: open the database, map the file, touch one
//                       byte of every block (each block loaded in full by a loader worker)
//     baseline: a fresh process selecting every 2 MiB blob with better-sqlite3
//   warm read           GB/s summing (Float64Array) a RAM-limit/2 window whose pages are loaded
//     baseline: the same sum over a plain Float64Array
//   small commits       1,000 transactions each changing 8 bytes at a random place of a
//                       ZBIG_SMALL_MiB file (default 32 MiB), ZBlk0 then ZBlk1: commits/s, and
//                       database growth per transaction (file + WAL)
//     baseline: 1,000 better-sqlite3 transactions each rewriting one 4 KiB blob
//   formats             the same small commits with 'auto', and the bulk write of the
//                       ZBIG_SMALL_MiB file in one transaction in each format (the measure
//                       behind 'auto': ZBlk1 for small changes, ZBlk0 for bulk writes)
// ZBIG_ONLY=cold runs only the three write/cold-read/warm-read runs (each measured exactly as in a
// full run; the write makes the files the reads need), skips the small commits, prints its rows
// and never writes RESULTS.md.
// Size: ZBIG_MiB (default 1024). Rates are in MB/s of 10^6 bytes (as W-ARR's). Writes its rows
// into bench/RESULTS.md.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { RAM, ZBigFile } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage } from '@wendelin/zodb'
import Database from 'better-sqlite3'

import { printRows, secondsSince, summarize, updateResults, xorshift } from './lib/harness.js'
import { PAGE_SIZE, chunkCommits, runInChild, sqliteFileSize, writeBlobs } from './lib/raw-sqlite.js'

/** The raw baseline of write+commit: the same bytes as 2 MiB blobs, same transactions. MiB/s. */
function rawWrite(file) {
  const fill = (block, id) => {
    const base = id * block.length
    for (let i = 0; i < block.length; i++) block[i] = base + i
  }
  return SIZE / 1e6 / writeBlobs(file, { bytes: SIZE, blockBytes: BLK, txnBytes: CHUNK, fill })
}

const MiB = 1024 * 1024
const BLK = 2 * MiB
const SIZE = Number(process.env.ZBIG_MiB ?? 1024) * MiB
const SMALL = Number(process.env.ZBIG_SMALL_MiB ?? 32) * MiB
const RAM_LIMIT = SIZE / 4
const CHUNK = RAM_LIMIT / 2 // bytes per write transaction
const ONLY = process.env.ZBIG_ONLY
if (ONLY !== undefined && ONLY !== 'cold') throw new Error(`ZBIG_ONLY: 'cold' is the only filter (got '${ONLY}')`)
const scratch = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
const self = fileURLToPath(import.meta.url)

/**
 * Bytes of data in the database file: the WAL checkpointed into it first (the WAL file's own
 * size is a cache that is reused, not growth of the database).
 */
function openZ(file, options = {}) {
  const db = new DB(new SQLiteStorage(file, { pageSize: PAGE_SIZE }), { cacheSize: options.cacheSize ?? 10000 })
  const tm = new TransactionManager()
  const conn = db.open({ transactionManager: tm })
  return { db, tm, conn }
}

/** Write SIZE bytes through a mapping and commit: MB/s. Leaves the database at `file`. */
function writeCommit(file) {
  const { db, tm, conn } = openZ(file)
  const zf = new ZBigFile(BLK, { format: 'ZBlk0' })
  conn.root.zfile = zf
  tm.commit()
  const ram = new RAM({ pageSize: BLK, limit: RAM_LIMIT })
  const h = zf.open({ ram })
  const pages = SIZE / BLK
  const m = h.mmap(0, pages)
  const f64 = new Float64Array(m.buffer)
  const start = process.hrtime.bigint()
  const perChunk = CHUNK / 8
  for (let c = 0; c < SIZE / CHUNK; c++) {
    const base = c * perChunk
    for (let i = 0; i < perChunk; i++) f64[base + i] = base + i
    tm.commit()
  }
  const s = secondsSince(start)
  m.unmap()
  h.close()
  db.close()
  ram.close()
  return SIZE / 1e6 / s
}

// ---- in a fresh process ----------------------------------------------------------------------

async function childColdRead(file) {
  const { db, conn } = openZ(file)
  const zf = conn.root.zfile
  const ram = new RAM({ pageSize: BLK, limit: RAM_LIMIT })
  const h = zf.open({ ram })
  const pages = SIZE / BLK
  const m = h.mmap(0, pages)
  const b = m.bytes()
  const start = process.hrtime.bigint()
  let s = 0
  for (let pg = 0; pg < pages; pg++) s += b[pg * BLK + 8]
  const secs = secondsSince(start)
  if (Number.isNaN(s)) throw new Error('unreachable')
  // warm: a window of CHUNK bytes, loaded now, summed as f64; beside a plain Float64Array
  const wpages = CHUNK / BLK
  const w = new Float64Array(m.buffer, 0, CHUNK / 8)
  let t = 0
  for (let pg = 0; pg < wpages; pg++) t += b[pg * BLK]
  const sum = (a) => {
    let x = 0
    for (let i = 0; i < a.length; i++) x += a[i]
    return x
  }
  const plain = new Float64Array(CHUNK / 8).fill(1)
  sum(w)
  sum(plain)
  const warm = []
  const base = []
  for (let r = 0; r < 5; r++) {
    let st = process.hrtime.bigint()
    t += sum(w)
    warm.push(CHUNK / 1e9 / secondsSince(st))
    st = process.hrtime.bigint()
    t += sum(plain)
    base.push(CHUNK / 1e9 / secondsSince(st))
  }
  const stats = ram.stats()
  m.unmap()
  h.close()
  db.close()
  return { coldMBs: SIZE / 1e6 / secs, warm, base, peakBytes: stats.bytesPeak, t }
}

function childRawRead(file) {
  const sq = new Database(file, { readonly: true })
  const sel = sq.prepare('SELECT data FROM blobs WHERE id = ?')
  const start = process.hrtime.bigint()
  let s = 0
  for (let id = 0; id < SIZE / BLK; id++) s += sel.get(id).data[8]
  const secs = secondsSince(start)
  sq.close()
  return { coldMBs: SIZE / 1e6 / secs, s }
}

// ---- small commits ---------------------------------------------------------------------------

function smallCommits(file, format) {
  const { db, tm, conn } = openZ(file, { cacheSize: 50000 })
  const zf = new ZBigFile(BLK, { format })
  conn.root.zfile = zf
  tm.commit()
  const ram = new RAM({ pageSize: BLK, limit: SMALL })
  const h = zf.open({ ram })
  const pages = SMALL / BLK
  const m = h.mmap(0, pages)
  const b = m.bytes()
  const fill = new Float64Array(m.buffer)
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < fill.length; i++) fill[i] = i
  tm.commit()
  const bulkMBs = SMALL / 1e6 / secondsSince(t0)
  const rnd = xorshift(7)
  const view = new DataView(m.buffer)
  // warm up: every block once (chunks into the connection's cache)
  for (let pg = 0; pg < pages; pg++) {
    view.setFloat64(pg * BLK + 8 * Math.floor(rnd() * (BLK / 8)), rnd())
    tm.commit()
  }
  const n = 1000
  const before = sqliteFileSize(file)
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) {
    view.setFloat64(8 * Math.floor(rnd() * (SMALL / 8)), rnd())
    tm.commit()
  }
  const secs = secondsSince(start)
  const growth = (sqliteFileSize(file) - before) / n
  m.unmap()
  h.close()
  db.close()
  ram.close()
  return { perSec: n / secs, growth, bulkMBs, b: b.length }
}

// ---- main ------------------------------------------------------------------------------------

function freshFile(tag) {
  const dir = fs.mkdtempSync(path.join(scratch, `wendelin-zbig-bench-${tag}-`))
  return { dir, file: path.join(dir, 'db.sqlite') }
}

async function main() {
  const [mode, file] = process.argv.slice(2)
  if (mode === 'cold-read') return console.log(JSON.stringify(await childColdRead(file)))
  if (mode === 'raw-read') return console.log(JSON.stringify(childRawRead(file)))

  const label = `${SIZE / MiB} MiB, RAM limit ${RAM_LIMIT / MiB} MiB`
  const dirs = []
  const write = [], rawW = [], cold = [], rawR = [], warm = [], warmBase = []
  for (let run = 0; run < 3; run++) {
    const z = freshFile('z')
    const r = freshFile('raw')
    dirs.push(z.dir, r.dir)
    write.push(writeCommit(z.file))
    rawW.push(rawWrite(r.file))
    const c = runInChild(self, 'cold-read', z.file)
    cold.push(c.coldMBs)
    warm.push(...c.warm)
    warmBase.push(...c.base)
    rawR.push(runInChild(self, 'raw-read', r.file).coldMBs)
    console.log(`run ${run}: write ${write.at(-1).toFixed(0)} MB/s (raw ${rawW.at(-1).toFixed(0)}), cold read ${cold.at(-1).toFixed(0)} MB/s (raw ${rawR.at(-1).toFixed(0)}), RAM peak ${(c.peakBytes / MiB).toFixed(0)} MiB`)
    fs.rmSync(z.dir, { recursive: true, force: true })
    fs.rmSync(r.dir, { recursive: true, force: true })
  }
  const small = { ZBlk0: [], ZBlk1: [], auto: [] }
  const growth = { ZBlk0: [], ZBlk1: [], auto: [] }
  const bulk = { ZBlk0: [], ZBlk1: [], auto: [] }
  const rawSmall = []
  for (let run = 0; run < (ONLY ? 0 : 3); run++) {
    for (const format of ['ZBlk0', 'ZBlk1', 'auto']) {
      const z = freshFile('small')
      const r = smallCommits(z.file, format)
      small[format].push(r.perSec)
      growth[format].push(r.growth)
      bulk[format].push(r.bulkMBs)
      fs.rmSync(z.dir, { recursive: true, force: true })
    }
    const z = freshFile('rawsmall')
    rawSmall.push(chunkCommits(z.file, { bytes: SMALL }))
    fs.rmSync(z.dir, { recursive: true, force: true })
    console.log(`run ${run}: small commits ZBlk0 ${small.ZBlk0.at(-1).toFixed(0)}/s +${growth.ZBlk0.at(-1).toFixed(0)} B, ZBlk1 ${small.ZBlk1.at(-1).toFixed(0)}/s +${growth.ZBlk1.at(-1).toFixed(0)} B, auto ${small.auto.at(-1).toFixed(0)}/s +${growth.auto.at(-1).toFixed(0)} B; bulk ${bulk.ZBlk0.at(-1).toFixed(0)}/${bulk.ZBlk1.at(-1).toFixed(0)}/${bulk.auto.at(-1).toFixed(0)} MB/s; raw ${rawSmall.at(-1).toFixed(0)}/s`)
  }
  const coldRows = [
    { workload: 'ZBigFile/sqlite', figure: `write+commit, ${label}`, value: summarize(write), unit: 'MB/s', baseline: 'better-sqlite3 2 MiB blob inserts', baselineValue: summarize(rawW) },
    { workload: 'ZBigFile/sqlite', figure: `cold sequential read in a fresh process, ${label}`, value: summarize(cold), unit: 'MB/s', baseline: 'better-sqlite3 2 MiB blob selects, fresh process', baselineValue: summarize(rawR) },
    { workload: 'ZBigFile/sqlite', figure: `warm read, ${CHUNK / MiB} MiB loaded window (sum f64)`, value: summarize(warm), unit: 'GB/s', baseline: 'plain Float64Array', baselineValue: summarize(warmBase) },
  ]
  const rows = ONLY ? coldRows : [
    ...coldRows,
    { workload: 'ZBigFile/sqlite', figure: `1,000 commits of 8 bytes at random, ${SMALL / MiB} MiB file, ZBlk0`, value: summarize(small.ZBlk0), unit: 'commits/s', baseline: 'better-sqlite3 4 KiB blob update per transaction', baselineValue: summarize(rawSmall) },
    { workload: 'ZBigFile/sqlite', figure: `1,000 commits of 8 bytes at random, ${SMALL / MiB} MiB file, ZBlk1`, value: summarize(small.ZBlk1), unit: 'commits/s', baseline: 'better-sqlite3 4 KiB blob update per transaction', baselineValue: summarize(rawSmall) },
    { workload: 'ZBigFile/sqlite', figure: `1,000 commits of 8 bytes at random, ${SMALL / MiB} MiB file, auto`, value: summarize(small.auto), unit: 'commits/s', baseline: 'better-sqlite3 4 KiB blob update per transaction', baselineValue: summarize(rawSmall) },
    { workload: 'ZBigFile/sqlite', figure: 'database growth per small commit, auto', value: summarize(growth.auto), unit: 'bytes', baseline: 'chunk size', baselineValue: summarize([4096, 4096, 4096]) },
    ...['ZBlk0', 'ZBlk1', 'auto'].map((f) => ({ workload: 'ZBigFile/sqlite', figure: `bulk write+commit of a new ${SMALL / MiB} MiB file in one transaction, ${f}`, value: summarize(bulk[f]), unit: 'MB/s', baseline: 'better-sqlite3 2 MiB blob inserts', baselineValue: summarize(rawW) })),
    { workload: 'ZBigFile/sqlite', figure: 'database growth per small commit, ZBlk0', value: summarize(growth.ZBlk0), unit: 'bytes', baseline: 'block size', baselineValue: summarize([BLK, BLK, BLK]) },
    { workload: 'ZBigFile/sqlite', figure: 'database growth per small commit, ZBlk1', value: summarize(growth.ZBlk1), unit: 'bytes', baseline: 'chunk size', baselineValue: summarize([4096, 4096, 4096]) },
  ]
  printRows(rows)
  if (!process.env.ZBIG_NO_RESULTS && !ONLY) updateResults(rows)
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
}

await main()
