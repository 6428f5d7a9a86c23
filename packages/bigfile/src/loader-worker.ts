// A loader worker: serves loads queued by faulting threads (and by fileh.load) in its own
// isolate, reopening each file handle's BigFile from its spec.
//
// A load that throws is retried while the error looks transient; then it is reported failed.
// For a fault that ends the process with a message naming file, block and cause (mapped
// memory must never show wrong data); for fileh.load the promise rejects.
import { parentPort, workerData } from 'node:worker_threads'

import { type BigFile, type BigFileSpec, openBigFile } from './bigfile.js'
import type { AsyncLoadResult, LoaderWorkerData } from './loader-pool.js'
import { loaderLog } from './log.js'
import { addon } from './native.js'

const options = workerData as LoaderWorkerData
const files = new Map<number, Promise<BigFile>>()

const transientCodes = new Set(['EAGAIN', 'EBUSY', 'EINTR', 'ETIMEDOUT', 'ECONNRESET', 'ECONNREFUSED', 'EMFILE', 'ENFILE'])

function isTransient(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false
  const err = e as { transient?: unknown; code?: unknown }
  return err.transient === true || (typeof err.code === 'string' && transientCodes.has(err.code))
}

function describeError(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e)
}

function fileFor(filehId: number): Promise<BigFile> {
  let file = files.get(filehId)
  if (!file) {
    const spec = addon.filehSpec(filehId)
    if (spec === undefined) return Promise.reject(new Error(`file handle ${filehId} is closed`))
    file = openBigFile(JSON.parse(spec) as BigFileSpec)
    files.set(filehId, file)
  }
  return file
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

async function serve(filehId: number, blk: number, dest: Uint8Array, job: number, asyncId: number | null) {
  let error: string | null = null
  for (let attempt = 1; ; attempt++) {
    try {
      const file = await fileFor(filehId)
      await file.loadblk(blk, dest)
      error = null
      break
    } catch (e) {
      error = describeError(e)
      if (!isTransient(e) || attempt >= options.attempts) break
      loaderLog('fileh %d block %d: attempt %d failed (%s), retrying', filehId, blk, attempt, error)
      await sleep(options.retryDelayMs * 2 ** (attempt - 1))
    }
  }
  if (error !== null) {
    loaderLog('fileh %d block %d: load failed: %s', filehId, blk, error)
    files.delete(filehId) // reopen next time
  }
  const status = addon.completeLoad(job, error)
  if (asyncId !== null) {
    const result: AsyncLoadResult = { asyncId, status, error }
    parentPort?.postMessage(result)
  }
}

addon.serveLoads((filehId, blk, dest, job, asyncId) => {
  void serve(filehId, blk, dest, job, asyncId)
})
loaderLog('loader serving')
