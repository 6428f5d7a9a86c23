// Shared helpers of the bigarray tests.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { FileBigFile, FileH, RAM } from '@wendelin/bigfile'

/** Small pages keep the tests light: 16 OS pages (as wendelin.core's tests use small blocks). */
export const PS = 64 * 1024

export const here = path.dirname(fileURLToPath(import.meta.url))

const dirs: string[] = []
const rams: RAM[] = []
const fhs: FileH[] = []

/** A fresh directory on tmpfs (/dev/shm) when there is one. */
export function tmpDir(): string {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()
  const d = fs.mkdtempSync(path.join(base, 'wendelin-bigarray-test-'))
  dirs.push(d)
  return d
}

export function ram(pages = 64, pageSize = PS): RAM {
  const r = new RAM({ pageSize, limit: pages * pageSize })
  rams.push(r)
  return r
}

/** A file handle over a fresh plain file (blocks read as zeros until written). */
export function fileH(pages = 64, pageSize = PS): FileH {
  const file = new FileBigFile(path.join(tmpDir(), 'data.bin'), { blksize: pageSize, create: true })
  const fh = new FileH(file, { ram: ram(pages, pageSize) })
  fhs.push(fh)
  return fh
}

/** Unmaps what is left, closes handles and RAMs, removes directories. */
export function cleanup(): void {
  for (const fh of fhs.splice(0)) {
    if (fh.isClosed) continue
    for (const m of fh.liveMappings()) m.unmap()
    fh.close()
  }
  for (const r of rams.splice(0)) if (!r.isClosed) r.close()
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
}
