// wendelin demo: the main job in one command. In the current folder it creates a SQLite
// database holding a float64 ZBigArray larger than the RAM limit it sets, fills it (a progress
// bar on a terminal), commits, reopens it in a fresh connection, computes statistics over it in
// chunks, shows that another connection keeps its snapshot until its next transaction, and
// prints what it did and how fast.

import { existsSync, rmSync, statSync } from 'node:fs'
import path from 'node:path'

import type { Command } from 'commander'
import { InvalidArgumentError } from 'commander'
import type { NdArray } from 'ndarray'
import { RAM, virtmemStats } from '@wendelin/bigfile'
import { ZBigArray } from '@wendelin/bigarray'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage } from '@wendelin/zodb'

import { CliError, action, formatBytes, progress } from './common.js'

const MiB = 1024 * 1024
const BLKSIZE = 2 * MiB

interface DemoOptions {
  size: number
  ram: number
  file: string
  keep?: boolean
}

function mib(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive whole number of MiB')
  return n
}

function rate(bytes: number, ms: number): string {
  const perS = bytes / (ms / 1000)
  return perS >= 1e9 ? `${(perS / 1e9).toFixed(2)} GB/s` : `${(perS / 1e6).toFixed(0)} MB/s`
}

interface Stats {
  count: number
  sum: number
  min: number
  max: number
  sumsq: number
}

function statsOver(A: ZBigArray<'float64'>, window: number, onChunk?: (done: number) => void): Stats {
  const s: Stats = { count: 0, sum: 0, min: Infinity, max: -Infinity, sumsq: 0 }
  for (const c of A.chunks({ bytes: window })) {
    const v = c.array as NdArray<Float64Array>
    const d = v.data
    const end = v.offset + v.size // a 1-d window is contiguous
    let sum = 0
    let sumsq = 0
    let min = s.min
    let max = s.max
    for (let i = v.offset; i < end; i++) {
      const x = d[i]!
      sum += x
      sumsq += x * x
      if (x < min) min = x
      if (x > max) max = x
    }
    s.count += v.size
    s.sum += sum
    s.sumsq += sumsq
    s.min = min
    s.max = max
    onChunk?.(c.stop)
  }
  return s
}

async function demo(options: DemoOptions): Promise<number> {
  try {
    return await demoSteps(options)
  } finally {
    // --no-keep: no files left behind, also when a step failed (a full disk, say)
    if (options.keep === false) {
      const file = path.resolve(options.file)
      for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true })
    }
  }
}

async function demoSteps(options: DemoOptions): Promise<number> {
  const out = (line: string) => process.stdout.write(`${line}\n`)
  const file = path.resolve(options.file)
  const bytes = options.size * MiB
  const ramLimit = options.ram * MiB
  if (bytes <= ramLimit) throw new CliError(`--size (${options.size} MiB) must be larger than --ram (${options.ram} MiB): the point is an array that does not fit`)
  if (ramLimit < 4 * BLKSIZE) throw new CliError(`--ram must be at least ${(4 * BLKSIZE) / MiB} MiB`)
  const n = bytes / 8
  if (existsSync(file)) {
    for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true })
    out(`removed the previous ${path.basename(file)}`)
  }
  const window = Math.min(64 * MiB, Math.floor(ramLimit / 2 / BLKSIZE) * BLKSIZE)
  out(`wendelin demo: a float64 ZBigArray of ${n.toLocaleString('en-US')} elements (${formatBytes(bytes)}) with a RAM limit of ${formatBytes(ramLimit)}`)
  out(`database: ${file} (SQLite)`)

  // 1. create and fill
  let t0 = performance.now()
  let storage: SQLiteStorage
  try {
    storage = new SQLiteStorage(file)
  } catch (error) {
    throw new CliError(`cannot create ${file}: ${(error as Error).message.split('\n')[0]}`)
  }
  const db = new DB(storage)
  const tm = new TransactionManager()
  const conn = db.open({ transactionManager: tm })
  const root = conn.root as Record<string, unknown>
  root.demo = new ZBigArray([n], 'float64', { blksize: BLKSIZE, format: 'ZBlk0' })
  tm.commit()
  const ram = new RAM({ pageSize: BLKSIZE, limit: ramLimit })
  const A = root.demo as ZBigArray<'float64'>
  A.open({ ram })
  const bar = progress('filling', n)
  let commits = 0
  // dirty pages cannot leave RAM before they are committed: one transaction per window
  for (const c of A.chunks({ bytes: window })) {
    const v = c.array as NdArray<Float64Array>
    const d = v.data
    for (let i = 0, at = v.offset, x = c.start * 0.5; i < v.size; i++, at++, x += 0.5) d[at] = x
    tm.get().note(`demo: fill [${c.start}, ${c.stop})`)
    tm.commit()
    commits++
    bar.update(c.stop, formatBytes(c.stop * 8))
  }
  bar.stop()
  const writeMs = performance.now() - t0
  out(`1. filled a[i] = i * 0.5 through ${formatBytes(window)} views and committed it in ${commits} transactions: ${(writeMs / 1000).toFixed(2)} s, ${rate(bytes, writeMs)}`)
  A.close()
  conn.close()
  db.close()
  ram.close()

  // 2. reopen in a fresh connection and compute statistics in chunks (cold, then warm)
  const db2 = new DB(new SQLiteStorage(file))
  const tmB = new TransactionManager()
  const conn2 = db2.open({ transactionManager: tmB })
  const ram2 = new RAM({ pageSize: BLKSIZE, limit: ramLimit })
  const B = (conn2.root as Record<string, unknown>).demo as ZBigArray<'float64'>
  B.open({ ram: ram2 })
  const loads0 = virtmemStats().loads
  const bar2 = progress('reading', n)
  t0 = performance.now()
  const s = statsOver(B, window, (done) => bar2.update(done, formatBytes(done * 8)))
  bar2.stop()
  const coldMs = performance.now() - t0
  const loads = virtmemStats().loads - loads0
  const mean = s.sum / s.count
  const std = Math.sqrt(Math.max(0, s.sumsq / s.count - mean * mean))
  out(`2. reopened it in a fresh connection; statistics in ${formatBytes(window)} chunks (${loads} blocks loaded, at most ${formatBytes(ramLimit)} in RAM):`)
  out(`   count ${s.count.toLocaleString('en-US')}  sum ${s.sum.toExponential(6)}  mean ${mean.toFixed(3)}  min ${s.min}  max ${s.max}  std ${std.toFixed(1)}`)
  const expectSum = (0.5 * n * (n - 1)) / 2
  const ok = s.count === n && s.min === 0 && s.max === (n - 1) * 0.5 && Math.abs(s.sum - expectSum) <= expectSum * 1e-12
  out(`   check against the formula (sum = n(n-1)/4 = ${expectSum.toExponential(6)}): ${ok ? 'ok' : 'MISMATCH'}`)
  out(`   cold read: ${(coldMs / 1000).toFixed(2)} s, ${rate(bytes, coldMs)}`)
  t0 = performance.now()
  statsOver(B, window)
  const againMs = performance.now() - t0
  out(`   second pass (the array is larger than RAM, so most blocks are loaded again): ${rate(bytes, againMs)}`)

  // 3. isolation: another connection keeps its snapshot until its next transaction
  const tmC = new TransactionManager()
  const conn3 = db2.open({ transactionManager: tmC })
  const C = (conn3.root as Record<string, unknown>).demo as ZBigArray<'float64'>
  C.open({ ram: ram2 })
  const k = Math.floor(n / 3)
  const before = C.get(k)
  B.set(k, -1)
  B.append([42])
  tmB.get().note('demo: a[k] = -1 and one more element')
  tmB.commit()
  const seenBefore = `${C.get(k)} and length ${C.length.toLocaleString('en-US')}`
  tmC.begin()
  const seenAfter = `${C.get(k)} and length ${C.length.toLocaleString('en-US')}`
  out(`3. isolation: connection B set a[${k}] = -1 (was ${before}) and appended 42, and committed;`)
  out(`   connection C, still in its transaction, sees a[${k}] = ${seenBefore}`)
  out(`   after its next transaction boundary it sees a[${k}] = ${seenAfter}`)
  const isolated = C.get(k) === -1 && C.length === n + 1 && seenBefore === `${before} and length ${n.toLocaleString('en-US')}`
  C.close()
  conn3.close()
  B.close()
  conn2.close()
  db2.close()
  ram2.close()
  const onDisk = [file, `${file}-wal`].reduce((sum, f) => sum + (existsSync(f) ? statSync(f).size : 0), 0)
  out(`database file: ${formatBytes(onDisk)}${options.keep === false ? '' : ` (kept: ${path.basename(file)})`}`)
  if (options.keep === false) for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true })
  if (!ok || !isolated) {
    process.stderr.write('wendelin demo: the results are not what they must be\n')
    return 1
  }
  return 0
}

export function register(cli: Command): void {
  cli
    .command('demo')
    .description('create a SQLite database here with an array larger than RAM, fill it, read it back in chunks, show isolation')
    .option('--size <MiB>', 'array size in MiB', mib, 256)
    .option('--ram <MiB>', 'RAM limit for mapped pages in MiB (smaller than --size)', mib, 64)
    .option('--file <path>', 'database file (replaced if it exists)', 'wendelin-demo.sqlite')
    .option('--no-keep', 'remove the database file at the end')
    .action(action('demo', demo))
}
