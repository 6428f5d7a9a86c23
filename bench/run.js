#!/usr/bin/env node
// Runs every benchmark file bench/*.bench.js in its own process, one after the other.
// Benchmarks print their figures; the ones that feed bench/RESULTS.md say so in their header.
import { readdirSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const only = process.argv.slice(2)
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort()

if (files.length === 0) {
  console.log('no benchmarks yet (bench/*.bench.js)')
  process.exit(0)
}
let failed = 0
for (const f of files) {
  console.log(`# ${f}`)
  const r = spawnSync(process.execPath, ['--expose-gc', path.join(here, f)], { stdio: 'inherit' })
  if (r.status !== 0) failed++
}
process.exit(failed === 0 ? 0 : 1)
