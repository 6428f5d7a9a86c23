// Shared helpers of the bigfile tests.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { FileH, PatternBigFile, RAM, type ZBigFile } from '@wendelin/bigfile'
import type { TransactionManager } from '@wendelin/transaction'

/** Small pages keep the unit tests light: 16 OS pages. */
export const PS = 64 * 1024

export const here = path.dirname(fileURLToPath(import.meta.url))

/**
 * A fresh directory on tmpfs when there is one, or in os.tmpdir() with `onDisk` (a base file
 * mapped in overlay mode counts as shared memory of ours when it lives on tmpfs).
 */
export function tmpDir(onDisk = false): string {
  const base = !onDisk && fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
  return fs.mkdtempSync(path.join(base, 'wendelin-bigfile-test-'))
}

/** Fresh SQLite file paths, each in a temporary directory of its own, removed together by `removeAll`. */
export class ScratchFiles {
  readonly #dirs: string[] = []

  sqlite(): string {
    const d = tmpDir()
    this.#dirs.push(d)
    return path.join(d, 'db.sqlite')
  }

  removeAll(): void {
    for (const d of this.#dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
  }
}

/** A pattern file handle on a RAM of `pages` pages (as wendelin.core's test_virtmem). */
export function patternFileH(
  pages = 3,
  options: { noop?: boolean; pageSize?: number } = {},
): { ram: RAM; file: PatternBigFile; fh: FileH } {
  const pageSize = options.pageSize ?? PS
  const ram = new RAM({ pageSize, limit: pages * pageSize })
  const file = new PatternBigFile({ blksize: pageSize, noop: options.noop ?? false })
  const fh = new FileH(file, { ram })
  return { ram, file, fh }
}

/**
 * Writes pages [0, pages) of `zf` through a mapping of a handle of its own in `ram` (`change`
 * gets their bytes), commits with `tm`, and closes the handle.
 */
export function writeAndCommit(zf: ZBigFile, tm: TransactionManager, ram: RAM, pages: number, change: (bytes: Uint8Array) => void): void {
  const h = zf.open({ ram })
  const m = h.mmap(0, pages)
  change(m.bytes())
  tm.commit()
  m.unmap()
  h.close()
}

/** Yields to the event loop until `predicate` holds (mocha's timeout bounds the wait). */
export async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise<void>((resolve) => setTimeout(resolve, 1))
}

export interface ChildResult {
  status: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs a compiled fixture (test/bigfile/fixtures/<name>.ts) in its own process. */
export function runFixture(name: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): ChildResult {
  const script = path.join(here, 'fixtures', `${name}.js`)
  const r = spawnSync(process.execPath, [script, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 60_000,
  })
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
}

/** The test-only exports of the native addon (the same instance the package loaded). */
export interface StressAddon {
  stressReadersStart(buffer: ArrayBuffer, pageSize: number, expected: Uint8Array, threads: number): object
  stressReadersStop(readers: object): { reads: number; mismatches: number; firstMismatch: string }
}

export function stressAddon(): StressAddon {
  const file = process.env.WENDELIN_VIRTMEM_ADDON || path.resolve(here, '../../../build/Release/virtmem.node')
  return createRequire(import.meta.url)(file) as StressAddon
}

/**
 * Close `ram` once its pages are released: a handle closed a moment ago may still hold pages
 * until its mappings are collected, and RAM.close refuses while pages are in use.
 */
export async function closeRamWhenFree(ram: RAM): Promise<void> {
  for (;;) {
    try {
      ram.close()
      return
    } catch {
      await new Promise<void>((resolve) => setTimeout(resolve, 1))
    }
  }
}
