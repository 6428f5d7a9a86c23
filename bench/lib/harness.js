// Shared benchmark helpers: repeat a measurement, summarize it as median with min–max, and
// merge rows into bench/RESULTS.md (one table, one row per workload + figure; see
// shared/BENCHMARKS.md). Benchmarks are scripts bench/*.bench.js run by `npm run bench`.

import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const RESULTS_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'RESULTS.md')

/**
 * @typedef {object} Summary
 * @property {number} median
 * @property {number} min
 * @property {number} max
 * @property {number[]} samples
 */

/** @param {number[]} samples @returns {Summary} */
export function summarize(samples) {
  if (samples.length === 0) throw new Error('summarize: no samples')
  const sorted = [...samples].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  return { median, min: sorted[0], max: sorted[sorted.length - 1], samples }
}

/**
 * Run `fn` `runs` times (after `warmup` unrecorded runs) and summarize what it returns: a rate
 * or a duration, whatever the benchmark measures. `fn` may be async.
 * @param {() => number | Promise<number>} fn
 * @param {{ runs?: number, warmup?: number }} [options]
 * @returns {Promise<Summary>}
 */
export async function repeat(fn, { runs = 3, warmup = 0 } = {}) {
  if (runs < 3) throw new Error('repeat: report at least 3 runs (shared/BENCHMARKS.md)')
  for (let i = 0; i < warmup; i++) await fn()
  const samples = []
  for (let i = 0; i < runs; i++) samples.push(await fn())
  return summarize(samples)
}

/** A deterministic pseudo-random sequence in [0, 1) (xorshift32), so every run does the same work. */
export function xorshift(seed) {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x / 2 ** 32
  }
}

/** Seconds elapsed since `start` (a process.hrtime.bigint() value). */
export function secondsSince(start) {
  return Number(process.hrtime.bigint() - start) / 1e9
}

/** Format a number with 3 significant digits (thousands grouped). */
export function fmt(x) {
  if (!Number.isFinite(x)) return String(x)
  const abs = Math.abs(x)
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3
  return x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 })
}

/** "median (min–max)" */
export function fmtSummary(s) {
  return `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`
}

/**
 * @typedef {object} Row
 * @property {string} workload   e.g. 'W-OBJ/sqlite'
 * @property {string} figure     e.g. 'populate'
 * @property {Summary} value
 * @property {string} unit       e.g. 'objects/s'
 * @property {string} baseline   e.g. 'better-sqlite3 rows'
 * @property {Summary} baselineValue
 */

const HEADER = '| workload | figure | value | unit | baseline | baseline value | ratio |'
const RULE = '| --- | --- | --- | --- | --- | --- | --- |'

/** The ratio column: value over baseline, medians. */
export function ratio(row) {
  const r = row.value.median / row.baselineValue.median
  return `${fmt(r)}x`
}

/**
 * Replace or add `rows` in bench/RESULTS.md's table, keyed by workload + figure; other rows and
 * the text around the table stay as they are.
 * @param {Row[]} rows
 * @param {string} [file]
 */
export function updateResults(rows, file = RESULTS_PATH) {
  const text = readFileSync(file, 'utf8')
  const lines = text.split('\n')
  const start = lines.indexOf(HEADER)
  if (start < 0 || lines[start + 1] !== RULE) throw new Error(`${file}: the results table header is missing`)
  let end = start + 2
  while (end < lines.length && lines[end].startsWith('|')) end++
  const existing = lines.slice(start + 2, end)
  const keyOf = (line) => line.split('|').slice(1, 3).map((c) => c.trim()).join('\u0000')
  const fresh = new Map(
    rows.map((row) => [
      `${row.workload}\u0000${row.figure}`,
      `| ${row.workload} | ${row.figure} | ${fmtSummary(row.value)} | ${row.unit} | ${row.baseline} | ${fmtSummary(row.baselineValue)} | ${ratio(row)} |`,
    ]),
  )
  const merged = existing.map((line) => {
    const k = keyOf(line)
    const replacement = fresh.get(k)
    if (replacement === undefined) return line
    fresh.delete(k)
    return replacement
  })
  merged.push(...fresh.values())
  lines.splice(start + 2, end - start - 2, ...merged)
  writeFileSync(file, lines.join('\n'))
}

/** Print rows as they would appear in the table (for a benchmark's own output). */
export function printRows(rows) {
  for (const row of rows) {
    console.log(`${row.workload} ${row.figure}: ${fmtSummary(row.value)} ${row.unit}  vs ${row.baseline}: ${fmtSummary(row.baselineValue)}  ratio ${ratio(row)}`)
  }
}
