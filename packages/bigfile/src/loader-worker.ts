// A loader worker: serves loads queued by faulting threads (and by fileh.load) in its own
// isolate, reopening each file handle's BigFile from its spec.
//
// A load that throws is retried while the error looks transient; then it is reported failed.
// For a fault that ends the process with a message naming file, block and cause (mapped
// memory must never show wrong data); for fileh.load the promise rejects.
import { parentPort, workerData } from 'node:worker_threads'

import { TransientError } from '@wendelin/transaction'

import { type BigFile, type BigFileSpec, openBigFile } from './bigfile.js'
import { type AsyncLoadResult, LOAD_RESULTS_CHANNEL, type LoaderMessage, type LoaderWorkerData } from './loader-pool.js'
import { loaderLog } from './log.js'
import { addon } from './native.js'

const options = workerData as LoaderWorkerData
const opening = new Map<number, Promise<BigFile>>()
const opened = new Map<number, BigFile>()
// Async loads are reported to every thread's pool: the one that asked may not be our parent.
const results = new BroadcastChannel(LOAD_RESULTS_CHANNEL)
results.unref()

const transientCodes = new Set(['EAGAIN', 'EBUSY', 'EINTR', 'ETIMEDOUT', 'ECONNRESET', 'ECONNREFUSED', 'EMFILE', 'ENFILE'])

function isTransient(e: unknown): boolean {
  // The network client's ClientDisconnected is one: a call in flight when the connection drops
  // fails at once, and the client reconnects by itself.
  if (e instanceof TransientError) return true
  if (typeof e !== 'object' || e === null) return false
  const err = e as { transient?: unknown; code?: unknown }
  return err.transient === true || (typeof err.code === 'string' && transientCodes.has(err.code))
}

function describeError(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e)
}

function open(filehId: number): Promise<BigFile> {
  let file = opening.get(filehId)
  if (!file) {
    const spec = addon.filehSpec(filehId)
    if (spec === undefined) return Promise.reject(new Error(`file handle ${filehId} is closed`))
    const started = openBigFile(JSON.parse(spec) as BigFileSpec)
    started.then(
      (f) => {
        if (addon.filehSpec(filehId) === undefined) closeFile(filehId, f) // closed while opening (a warm-up)
        else if (opening.get(filehId) === started) opened.set(filehId, f)
      },
      () => {
        if (opening.get(filehId) === started) opening.delete(filehId)
      },
    )
    file = started
    opening.set(filehId, file)
  }
  return file
}

function closeFile(filehId: number, file: BigFile): void {
  try {
    file.close()
  } catch (e) {
    loaderLog('closing the file of fileh %d: %s', filehId, describeError(e))
  }
}

/** Loads and warm-ups under way per instance: one dropped meanwhile is closed when they end. */
const users = new Map<BigFile, number>()
const dropped = new Set<BigFile>()

function use(file: BigFile): void {
  users.set(file, (users.get(file) ?? 0) + 1)
}

function release(filehId: number, file: BigFile): void {
  const n = (users.get(file) ?? 1) - 1
  if (n > 0) {
    users.set(file, n)
    return
  }
  users.delete(file)
  if (dropped.delete(file)) closeFile(filehId, file)
}

/** A handle opened: open its file and let it prepare (imports, storage) before the first load. */
function warm(filehId: number): void {
  open(filehId)
    .then(async (f) => {
      if (addon.filehSpec(filehId) === undefined) return
      use(f)
      try {
        await f.warm({ filehId })
      } finally {
        release(filehId, f)
      }
    })
    .catch((e: unknown) => loaderLog('fileh %d: warm-up failed (the first load opens again): %s', filehId, describeError(e)))
}

function forget(filehId: number): void {
  opening.delete(filehId)
  opened.delete(filehId)
}

/**
 * A load failed: the next one opens the file afresh, and this instance is closed (at once, or
 * when the loads using it end) — dropped without a close it kept what it had opened (a
 * ZBigFile's: its connection and its share of the loader's storage, never closed then).
 */
function drop(filehId: number): void {
  const file = opened.get(filehId)
  forget(filehId)
  if (file === undefined) return
  if (users.has(file)) dropped.add(file)
  else closeFile(filehId, file)
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A loadblk's result: a report (Uint8Array) for the owning thread, or nothing. */
function reportOf(result: unknown): Uint8Array | undefined {
  return result instanceof Uint8Array ? result : undefined
}

function complete(filehId: number, blk: number, job: number, asyncId: number | null, error: string | null, report?: Uint8Array): void {
  if (error !== null) {
    loaderLog('fileh %d block %d: load failed: %s', filehId, blk, error)
    drop(filehId) // reopen next time
  }
  const status = report ? addon.completeLoad(job, error, report) : addon.completeLoad(job, error)
  if (asyncId !== null) {
    const result: AsyncLoadResult = { asyncId, status, error }
    results.postMessage(result)
  }
}

/**
 * The slow path: open the file, await loadblk, retry transient errors (`earlier`: the failure
 * of a first attempt made by serve()).
 */
async function serveAsync(filehId: number, blk: number, dest: Uint8Array, job: number, asyncId: number | null, earlier?: { error: unknown }): Promise<void> {
  let attempts = earlier ? 1 : 0
  let failed = earlier
  for (;;) {
    if (failed) {
      if (!isTransient(failed.error) || attempts >= options.attempts) {
        complete(filehId, blk, job, asyncId, describeError(failed.error))
        return
      }
      loaderLog('fileh %d block %d: attempt %d failed (%s), retrying', filehId, blk, attempts, describeError(failed.error))
      await sleep(options.retryDelayMs * 2 ** (attempts - 1))
    }
    attempts++
    try {
      const file = await open(filehId)
      use(file)
      let result: Awaited<ReturnType<BigFile['loadblk']>>
      try {
        result = await file.loadblk(blk, dest, { filehId })
      } finally {
        release(filehId, file)
      }
      complete(filehId, blk, job, asyncId, null, reportOf(result))
      return
    } catch (e) {
      failed = { error: e }
    }
  }
}

/** Serves one load: synchronously when the file is open and loadblk is synchronous. */
function serve(filehId: number, blk: number, dest: Uint8Array, job: number, asyncId: number | null, failure?: string): void {
  if (failure !== undefined) {
    complete(filehId, blk, job, asyncId, failure)
    return
  }
  const file = opened.get(filehId)
  if (file) {
    use(file)
    let result: ReturnType<BigFile['loadblk']>
    try {
      result = file.loadblk(blk, dest, { filehId })
    } catch (e) {
      release(filehId, file)
      void serveAsync(filehId, blk, dest, job, asyncId, { error: e })
      return
    }
    if (typeof (result as PromiseLike<unknown> | undefined)?.then !== 'function') {
      release(filehId, file)
      complete(filehId, blk, job, asyncId, null, reportOf(result))
      return
    }
    ;(result as PromiseLike<unknown>).then(
      (r) => {
        release(filehId, file)
        complete(filehId, blk, job, asyncId, null, reportOf(r))
      },
      (e: unknown) => {
        release(filehId, file)
        void serveAsync(filehId, blk, dest, job, asyncId, { error: e })
      },
    )
    return
  }
  void serveAsync(filehId, blk, dest, job, asyncId)
}

addon.serveLoads(serve)
parentPort?.postMessage({ serving: true }) // a loader that stops from now on is replaced

parentPort?.on('message', (m: LoaderMessage) => {
  if ('warm' in m) return warm(m.warm)
  const file = opened.get(m.closed)
  forget(m.closed)
  if (file) closeFile(m.closed, file)
})
loaderLog('loader serving')
