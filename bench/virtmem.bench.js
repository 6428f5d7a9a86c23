// Virtual memory manager figures named by issue 6, each beside a baseline measured in this run:
//   fault/no-op JS loadblk   µs per 2 MiB page fault through a loader worker, loadblk doing nothing
//                            (pages touched in a scrambled order, so readahead does not serve them)
//   fault/no-op native       the same with a native no-op loadblk (no loader worker, no JS)
//     baseline: copying 2 MiB between two warm buffers (the copy a real load adds)
//   read/cold sequential     GB/s reading a 2 GiB FileBigFile (512 MiB RAM limit) through a
//                            mapping: one access per 2 MiB page faults it in, the loader reads
//                            all of it into RAM (the bytes made addressable, as readSync does)
//     baseline: fs.readSync of the same file into a 2 MiB buffer (the OS page cache is warm
//               for both: this measures virtmem, not the disk); a second row compares with
//               readSync into a 512 MiB ring of buffers, whose memory is as cache-cold as the
//               RAM frames a load writes into. Readahead keeps up to 8 pages in flight, so
//               every loader worker copies at once where the cores are free: with two the
//               mapped read passed the single-threaded readSync (9.4 against 8.0 GB/s); the
//               default count is one per CPU beyond the first, one on the 2-vCPU machines
//               (5.9 against 9.0: this read only waits for the loaders)
//   read/overlay             the same read with the FileH in "mmap overlay" mode (the file's
//                            page cache mapped read-only: one access per 4 KiB page)
//   read/warm pass           GB/s summing a 256 MiB mapping whose pages are loaded
//     baseline: the same sum over a plain Float64Array in RAM — the same function (both are
//               Float64Arrays: one monomorphic loop), warmed up, runs interleaved with the
//               order alternating, over 6 fresh pairs of allocations, the mapping allocated
//               first in half of them and the plain array first in the other half (the one
//               allocated first tends to sum 5-25% slower on these VMs, whichever it is —
//               measured both ways round — and both drift by up to 2x over a run, hence
//               pairs). Before, the mapping always came first: that was most of its gap.
//               The plain loop is bound by its chain of dependent adds (~3.3 GB/s here, far
//               below the memory's ~26 GB/s); a second row uses 4 accumulators (~5 GB/s),
//               which leans harder on the memory and the TLB
// Writes its rows into bench/RESULTS.md, except with VIRTMEM_BENCH_ONLY=fault|read|warm (a
// comma-separated list): then only those parts run, and their rows are printed, not written.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { FileBigFile, FileH, PatternBigFile, RAM } from '@wendelin/bigfile'

import { printRows, repeat, secondsSince, summarize, updateResults } from './lib/harness.js'
import { NoopBigFile } from './lib/virtmem-files.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const PAGE = 2 * MiB

// ---- fault cost ------------------------------------------------------------------------------

/** µs per fault: read one byte of each of `pages` unloaded pages; frames are recycled. */
function faultMicros(makeFile, pages) {
  const ram = new RAM({ pageSize: PAGE, limit: 64 * MiB })
  return () => {
    const fh = new FileH(makeFile(), { ram })
    const m = fh.mmap(0, pages)
    const b = m.bytes()
    let s = 0
    const start = process.hrtime.bigint()
    // in a scrambled order: sequential faults would be served by readahead instead
    for (let i = 0; i < pages; i++) s += b[((i * 997) % pages) * PAGE]
    const us = (secondsSince(start) * 1e6) / pages
    m.unmap()
    fh.close()
    if (Number.isNaN(s)) throw new Error('unreachable')
    return us
  }
}

function copyMicros() {
  const a = Buffer.alloc(PAGE, 1)
  const b = Buffer.alloc(PAGE, 2)
  return () => {
    const n = 256
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) a.copy(b)
    return (secondsSince(start) * 1e6) / n
  }
}

// ---- sequential read -------------------------------------------------------------------------

function makeFile(file, size) {
  if (fs.existsSync(file) && fs.statSync(file).size === size) return
  const fd = fs.openSync(file, 'w')
  const chunk = Buffer.alloc(16 * MiB)
  for (let off = 0; off < size; off += chunk.length) {
    chunk.writeDoubleLE(off, 0)
    fs.writeSync(fd, chunk, 0, chunk.length, off)
  }
  fs.closeSync(fd)
}

function mappedReadGBs(file, size, ram, mode = 'load') {
  return () => {
    const fh = new FileH(new FileBigFile(file, { blksize: PAGE, create: false }), { ram, mode })
    let sink = 0
    const stride = mode === 'overlay' ? 4096 : PAGE
    const window = 1 * GiB // several mappings: one ArrayBuffer is at most 4 GiB on Node 20
    const start = process.hrtime.bigint()
    for (let pg0 = 0; pg0 < size / PAGE; pg0 += window / PAGE) {
      const m = fh.mmap(pg0, window / PAGE)
      const b = m.bytes()
      // load mode: one fault loads all 2 MiB; overlay: every 4 KiB page is touched (mapped in)
      for (let off = 0; off < window; off += stride) sink += b[off]
      m.unmap()
    }
    const gbs = size / 1e9 / secondsSince(start)
    fh.close()
    if (Number.isNaN(sink)) throw new Error('unreachable')
    return gbs
  }
}

/** readSync into one 2 MiB buffer (cache-hot), or into a ring of `ringBytes` of buffers. */
function readSyncGBs(file, size, ringBytes = PAGE) {
  const ring = Array.from({ length: ringBytes / PAGE }, () => Buffer.alloc(PAGE, 1))
  return () => {
    const fd = fs.openSync(file, 'r')
    const start = process.hrtime.bigint()
    for (let off = 0, i = 0; off < size; off += PAGE, i = (i + 1) % ring.length) fs.readSync(fd, ring[i], 0, PAGE, off)
    const gbs = size / 1e9 / secondsSince(start)
    fs.closeSync(fd)
    return gbs
  }
}

// ---- warm pass -------------------------------------------------------------------------------

function sum(a) {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i]
  return s
}

/** The same sum with 4 independent accumulators: not bound by one chain of dependent adds. */
function sum4(a) {
  let s0 = 0
  let s1 = 0
  let s2 = 0
  let s3 = 0
  const n = a.length
  let i = 0
  for (; i + 3 < n; i += 4) {
    s0 += a[i]
    s1 += a[i + 1]
    s2 += a[i + 2]
    s3 += a[i + 3]
  }
  for (; i < n; i++) s0 += a[i]
  return s0 + s1 + s2 + s3
}

function sumGBs(f, array) {
  const start = process.hrtime.bigint()
  const s = f(array)
  const gbs = array.byteLength / 1e9 / secondsSince(start)
  if (Number.isNaN(s)) throw new Error('unreachable')
  return gbs
}

/**
 * Warm sums of a loaded 256 MiB mapping and of a plain Float64Array, interleaved (the order
 * alternating, so drifting load hits both alike), over `rounds` fresh pairs of allocations.
 */
function warmPass(f, { rounds = 6, warmup = 2, pairs = 5 } = {}) {
  const bytes = 256 * MiB
  const plainSamples = []
  const mappedSamples = []
  for (let r = 0; r < rounds; r++) {
    globalThis.gc?.()
    // Which of the two is allocated first matters here: the first one sums 10-25% slower
    // (measured both ways round), so the order alternates between rounds.
    let plain = r % 2 === 1 ? new Float64Array(bytes / 8).fill(100) : null
    const ram = new RAM({ pageSize: PAGE, limit: 512 * MiB })
    const fh = new FileH(new PatternBigFile({ blksize: PAGE }), { ram })
    const m = fh.mmap(0, bytes / PAGE)
    m.prefault()
    const mapped = new Float64Array(m.buffer)
    plain ??= new Float64Array(bytes / 8).fill(100)
    for (let i = 0; i < warmup + pairs; i++) {
      const mappedFirst = i % 2 === 1
      const q0 = mappedFirst ? sumGBs(f, mapped) : 0
      const p = sumGBs(f, plain)
      const q = mappedFirst ? q0 : sumGBs(f, mapped)
      if (i < warmup) continue
      plainSamples.push(p)
      mappedSamples.push(q)
    }
    m.unmap()
    fh.close()
    ram.close()
  }
  return { mapped: summarize(mappedSamples), plain: summarize(plainSamples) }
}

const only = process.env.VIRTMEM_BENCH_ONLY ? new Set(process.env.VIRTMEM_BENCH_ONLY.split(',')) : null
for (const part of only ?? []) if (!['fault', 'read', 'warm'].includes(part)) throw new Error(`VIRTMEM_BENCH_ONLY: unknown part ${part} (fault, read, warm)`)
const runs = (part) => !only || only.has(part)

async function main() {
  const rows = []
  if (runs('fault')) await faultRows(rows)
  if (runs('read')) await readRows(rows)
  if (runs('warm')) warmRows(rows)
  printRows(rows)
  if (!only) updateResults(rows)
}

async function faultRows(rows) {
  const copy = await repeat(copyMicros(), { runs: 5, warmup: 1 })
  const noopJs = await repeat(faultMicros(() => new NoopBigFile(PAGE), 512), { runs: 5, warmup: 1 })
  const noopNative = await repeat(faultMicros(() => new PatternBigFile({ blksize: PAGE, noop: true }), 512), { runs: 5, warmup: 1 })
  rows.push({ workload: 'virtmem', figure: 'fault, no-op JS loadblk (2 MiB page)', value: noopJs, unit: 'µs/page', baseline: 'copy 2 MiB (warm)', baselineValue: copy })
  rows.push({ workload: 'virtmem', figure: 'fault, no-op native loadblk (2 MiB page)', value: noopNative, unit: 'µs/page', baseline: 'copy 2 MiB (warm)', baselineValue: copy })
}

async function readRows(rows) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wendelin-bench-'))
  try {
    const file = path.join(dir, 'big.bin')
    const size = 2 * GiB
    makeFile(file, size)
    const ram = new RAM({ pageSize: PAGE, limit: 512 * MiB })
    const baseline = await repeat(readSyncGBs(file, size), { runs: 3, warmup: 1 })
    const mapped = await repeat(mappedReadGBs(file, size, ram), { runs: 3, warmup: 1 })
    const st = ram.stats()
    if (st.bytesPeak > 512 * MiB) throw new Error(`RAM peak ${st.bytesPeak} above the limit`)
    rows.push({ workload: 'virtmem', figure: 'cold sequential read, 2 GiB file, 512 MiB RAM', value: mapped, unit: 'GB/s', baseline: 'fs.readSync 2 MiB chunks', baselineValue: baseline })
    // the same reads into 512 MiB of buffers: memory as cold as RAM frames are (no cache reuse)
    const ringBaseline = await repeat(readSyncGBs(file, size, 512 * MiB), { runs: 3, warmup: 1 })
    rows.push({ workload: 'virtmem', figure: 'cold sequential read, 2 GiB file, 512 MiB RAM (cold-buffer baseline)', value: mapped, unit: 'GB/s', baseline: 'fs.readSync into a 512 MiB ring of 2 MiB buffers', baselineValue: ringBaseline })
    const overlay = await repeat(mappedReadGBs(file, size, ram, 'overlay'), { runs: 3, warmup: 1 })
    rows.push({ workload: 'virtmem', figure: 'sequential read, overlay mode, 2 GiB file (touch every 4 KiB)', value: overlay, unit: 'GB/s', baseline: 'fs.readSync 2 MiB chunks', baselineValue: baseline })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

function warmRows(rows) {
  {
    const one = warmPass(sum)
    rows.push({ workload: 'virtmem', figure: 'warm pass, 256 MiB loaded mapping (sum f64)', value: one.mapped, unit: 'GB/s', baseline: 'plain Float64Array, same loop', baselineValue: one.plain })
    const four = warmPass(sum4)
    rows.push({ workload: 'virtmem', figure: 'warm pass, 256 MiB loaded mapping (sum f64, 4 accumulators)', value: four.mapped, unit: 'GB/s', baseline: 'plain Float64Array, same loop', baselineValue: four.plain })
  }
}

await main()
