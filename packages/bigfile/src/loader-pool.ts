// The loader workers, seen from the owning thread: starts them and settles fileh.load().
//
// Loads for faults never pass through here: the faulting thread hands them to the loaders
// natively (native/binding/loader_pool.h). Only async loads report back, by message.
//
// Every thread that opens a file handle has a pool of its own, but the loaders are shared: a
// load asked for by one thread may be served by a loader another thread started. So a loader
// reports on a broadcast channel, not to its parent, and async ids are unique in the process.
import { availableParallelism } from 'node:os'
import { Worker, threadId } from 'node:worker_threads'

import { loaderLog } from './log.js'
import { addon } from './native.js'

export interface LoaderOptions {
  /** Number of loader workers (default: one per CPU beyond the first, 1 to 4; see defaultLoaderCount). */
  count?: number
  /** Attempts of a load failing with a transient error before it is given up (default 5). */
  attempts?: number
  /** Delay before the first retry in ms, doubled on every retry (default 10). */
  retryDelayMs?: number
}

export interface LoaderWorkerData {
  attempts: number
  retryDelayMs: number
}

/**
 * Main → loader: `warm` — a file handle opened: reopen its file and warm it up before the first
 * load; `closed` — a file handle closed: drop (and close) the loader's instance of its file.
 */
export type LoaderMessage = { warm: number } | { closed: number }

/** The broadcast channel loaders report async loads on (AsyncLoadResult). */
export const LOAD_RESULTS_CHANNEL = 'wendelin:bigfile:load-results'

export interface AsyncLoadResult {
  asyncId: number
  status: 'loaded' | 'invalidated' | 'failed'
  error: string | null
}

interface Pending {
  resolve: (status: 'loaded' | 'invalidated') => void
  reject: (error: Error) => void
}

class LoaderPool {
  private workers: Worker[] = []
  private pending = new Map<number, Pending>()
  // This thread's ids: [threadId * 2^32 + 1, ...) (native requests keep them as doubles).
  private nextAsyncId = threadId * 2 ** 32 + 1
  private readonly results = new BroadcastChannel(LOAD_RESULTS_CHANNEL)

  constructor(private readonly options: Required<LoaderOptions>) {
    this.results.onmessage = (e) => this.settle((e as { data: AsyncLoadResult }).data)
    this.results.unref() // referenced only while loads are awaited (after onmessage: it refs)
    for (let i = 0; i < options.count; i++) this.spawn(i)
  }

  private spawn(index: number): void {
    const workerData: LoaderWorkerData = {
      attempts: this.options.attempts,
      retryDelayMs: this.options.retryDelayMs,
    }
    addon.loaderStarting() // until it serves or stops, fault loads wait for it
    const worker = new Worker(new URL('./loader-worker.js', import.meta.url), { workerData })
    let serving = false
    worker.on('message', (m: { serving?: boolean }) => {
      if (m.serving === true) serving = true
    })
    worker.on('error', (e) => {
      loaderLog('loader %d failed: %O', index, e)
      process.emitWarning(`wendelin:bigfile loader worker ${index} failed: ${e.message}`)
    })
    worker.on('exit', (code) => this.exited(index, worker, serving, code))
    // loaders never keep the process alive by themselves (after on(): it refs)
    if (this.pending.size === 0) worker.unref()
    loaderLog('loader %d started', index)
    this.workers[index] = worker
  }

  /**
   * A loader stopped (an uncaught exception in it, or terminated): the loads it had taken were
   * failed or given to another loader natively; one that served is replaced, so that loads go
   * on being served (one that stopped before it served would only stop again).
   */
  private exited(index: number, worker: Worker, serving: boolean, code: number): void {
    if (!serving) addon.loaderStartFailed()
    if (this.workers[index] !== worker || processExiting || !serving) return
    loaderLog('loader %d stopped (exit code %d): starting another', index, code)
    this.spawn(index)
  }

  /** Registers an async load; the returned id goes to the native request. */
  expect(): { asyncId: number; done: Promise<'loaded' | 'invalidated'> } {
    const asyncId = this.nextAsyncId++
    const done = new Promise<'loaded' | 'invalidated'>((resolve, reject) => {
      this.pending.set(asyncId, { resolve, reject })
    })
    if (this.pending.size === 1) {
      // keep alive while awaited
      this.results.ref()
      for (const w of this.workers) w.ref()
    }
    return { asyncId, done }
  }

  /** Tells every loader that a file handle opened: each prepares its file in the background. */
  opened(filehId: number): void {
    const message: LoaderMessage = { warm: filehId }
    for (const w of this.workers) w.postMessage(message)
  }

  /** Tells every loader that a file handle closed. */
  closed(filehId: number): void {
    const message: LoaderMessage = { closed: filehId }
    for (const w of this.workers) w.postMessage(message)
  }

  forget(asyncId: number): void {
    if (this.pending.delete(asyncId) && this.pending.size === 0) {
      this.results.unref()
      for (const w of this.workers) w.unref()
    }
  }

  private settle(m: AsyncLoadResult): void {
    const p = this.pending.get(m.asyncId)
    if (!p) return // another thread's
    this.forget(m.asyncId)
    if (m.status === 'failed') p.reject(new Error(m.error ?? 'load failed'))
    else p.resolve(m.status)
  }
}

let processExiting = false
process.once('exit', () => {
  processExiting = true
})

let pool: LoaderPool | null = null
/**
 * Loader workers by default: one per CPU beyond the one the owning thread needs (it computes on
 * what they load, faults and maps), at least 1, at most 4. On the 2-vCPU machines a second
 * loader only competed with that thread: a W-ARR cold read (sum of 1 GiB in a fresh process)
 * ran at 1,583-1,638 MB/s with 2 loaders and 1,727-1,904 with 1, the second's start-up alone
 * ~110 ms of CPU. More loaders serve readers that wait rather than compute (touching one byte
 * per page: 3,030-3,475 against 2,187-2,620 MB/s there): configureLoaders({ count }).
 */
function defaultLoaderCount(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1))
}

let configured: Required<LoaderOptions> = { count: defaultLoaderCount(), attempts: 5, retryDelayMs: 10 }

/** Sets loader options; only before the first file handle is opened. */
export function configureLoaders(options: LoaderOptions): void {
  if (pool) throw new Error('configureLoaders: the loader workers are already running')
  configured = { ...configured, ...options }
  if (!(configured.count >= 1)) throw new RangeError('configureLoaders: count must be at least 1')
}

/** The loader pool if it was started. @internal */
export function runningLoaderPool(): LoaderPool | null {
  return pool
}

/** @internal */
export function loaderPool(): LoaderPool {
  pool ??= new LoaderPool(configured)
  return pool
}

/** How many loader workers are serving loads now. */
export function loaderCount(): number {
  return addon.loaderCount()
}
