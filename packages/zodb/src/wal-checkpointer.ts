// WalCheckpointer: copies a SQLite file's WAL back into the database file on a thread of its own,
// so that the commit that filled the WAL does not wait for the copy.
//
// SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, on the
// committing thread: for commits of big records (ZBigFile blocks) it was ~40% of a commit's
// time, most of it the kernel's first touch of the database file's new pages. Here a worker
// thread with its own connection to the file runs PASSIVE checkpoints when asked; the
// storage's own connection has wal_autocheckpoint = 0. A checkpoint only copies what the WAL
// already holds durably: commits stay durable when they return, whatever the checkpointer is
// doing, and a crash in the middle of a checkpoint is one SQLite recovers from (it copies again).
//
// The thread and the storage talk through a few words of shared memory (see Slot), so that
// the storage, whose API is synchronous, can wait for a checkpoint (Atomics.wait) without
// its event loop.
import { closeSync, existsSync, fstatSync, openSync, readSync, statSync } from 'node:fs'
import { endianness } from 'node:os'
import { Worker } from 'node:worker_threads'

import createDebug from 'debug'

const log = createDebug('wendelin:zodb:sqlite:checkpoint')

/** Words of the shared state (Int32Array indexes). */
export const Slot = {
  /** Checkpoints asked for (the storage counts up). */
  Requested: 0,
  /** The last request served (the worker sets it to what Requested was when it began). */
  Served: 1,
  /** 1 once the worker's module runs (a worker that never gets there is given up on; see STARTUP_MS). */
  Started: 2,
  /** 1: the worker is to close its connection and end. */
  Stop: 3,
  /** 1 once the worker closed its connection; 2 if it could not open the file or failed. */
  Ended: 4,
} as const
export const SLOTS = 5

export interface CheckpointWorkerData {
  file: string
  synchronous: 'FULL' | 'NORMAL'
  state: SharedArrayBuffer
}

/** How long close() waits for the worker to close its connection (a checkpoint under way). */
const CLOSE_WAIT_MS = 120_000
/**
 * How long a writer waits for a worker that has not started (its module failed to load, say:
 * the 'error' event that tells so needs the event loop, which a synchronous commit does not
 * give back). The worker is then given up on and checkpoints run on the storage's thread.
 */
const STARTUP_MS = 10_000
/**
 * How long a writer waits for a checkpoint under way before it writes anyway. Waiting only
 * keeps the WAL short (the next transaction restarts it): a writer beside a running checkpoint
 * is correct, so no commit ever hangs on a checkpoint that does not end.
 */
const WAIT_LIMIT_MS = 60_000

const WORKER_SCRIPT = new URL('./wal-checkpoint-worker.js', import.meta.url)

export class WalCheckpointer {
  readonly #state: Int32Array
  readonly #worker: Worker
  readonly #startupMs: number
  readonly #since = Date.now()
  #closed = false
  /** Checkpoints run, and how many of them a commit waited for (see SQLiteStorage). */
  readonly stats = { checkpoints: 0, waits: 0 }

  /** `script` and `startupMs`: the worker's module and its startup allowance (tests give others). */
  constructor(file: string, synchronous: 'FULL' | 'NORMAL', script = WORKER_SCRIPT, startupMs = STARTUP_MS) {
    // A missing module (a bundle without it) fails here, at once, rather than after STARTUP_MS.
    if (script.protocol === 'file:' && !existsSync(script)) throw new Error(`the checkpoint worker ${script.pathname} is missing`)
    const shared = new SharedArrayBuffer(SLOTS * 4)
    this.#state = new Int32Array(shared)
    this.#startupMs = startupMs
    const workerData: CheckpointWorkerData = { file, synchronous, state: shared }
    this.#worker = new Worker(script, { workerData })
    this.#worker.on('error', (e) => {
      Atomics.store(this.#state, Slot.Ended, 2)
      log('checkpointer of %s failed: %O', file, e)
    })
    this.#worker.unref() // it never keeps the process alive
    log('checkpointer started for %s', file)
  }

  /** False once the worker ended, failed or never started: the storage then checkpoints on its own thread. */
  get usable(): boolean {
    return !this.#closed && this.#alive()
  }

  #alive(): boolean {
    if (Atomics.load(this.#state, Slot.Ended) !== 0) return false
    if (Atomics.load(this.#state, Slot.Started) === 0 && Date.now() - this.#since > this.#startupMs) {
      log('checkpointer did not start within %d ms: checkpoints run on the storage thread', this.#startupMs)
      Atomics.store(this.#state, Slot.Ended, 2)
      return false
    }
    return true
  }

  /** Whether a checkpoint was asked for and is not finished. */
  get busy(): boolean {
    return Atomics.load(this.#state, Slot.Served) !== Atomics.load(this.#state, Slot.Requested)
  }

  /** Asks for a checkpoint (none is queued behind one under way: the caller asks again later). */
  request(): void {
    if (!this.usable || this.busy) return
    this.stats.checkpoints++
    Atomics.add(this.#state, Slot.Requested, 1)
    Atomics.notify(this.#state, Slot.Requested)
  }

  /** Waits for the checkpoint under way, if any, for at most WAIT_LIMIT_MS. */
  wait(): void {
    if (!this.busy) return
    this.stats.waits++
    const deadline = Date.now() + WAIT_LIMIT_MS
    while (this.busy && this.usable) {
      const left = deadline - Date.now()
      if (left <= 0) {
        log('a checkpoint ran over %d ms: writing beside it', WAIT_LIMIT_MS)
        return
      }
      Atomics.wait(this.#state, Slot.Served, Atomics.load(this.#state, Slot.Served), Math.min(left, 1000))
    }
  }

  /** Lets a checkpoint under way finish, closes the worker's connection and ends the worker. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    Atomics.store(this.#state, Slot.Stop, 1)
    Atomics.add(this.#state, Slot.Requested, 1)
    Atomics.notify(this.#state, Slot.Requested)
    const deadline = Date.now() + CLOSE_WAIT_MS
    while (this.#alive() && Date.now() < deadline) Atomics.wait(this.#state, Slot.Ended, 0, 100)
    if (Atomics.load(this.#state, Slot.Ended) === 0) log('checkpointer did not end within %d ms', CLOSE_WAIT_MS)
    void this.#worker.terminate()
  }
}

/** Frames not yet copied back after which a commit asks for a checkpoint (SQLite's autocheckpoint is 1,000). */
export const CHECKPOINT_FRAMES = 10_000
/**
 * A commit of at least this many frames has its checkpoint run by the checkpointer; after
 * smaller ones it runs on the committing thread, as SQLite's would: between small commits the
 * application does too little for the copy to overlap with (W-OBJ's updates of 1,000 objects
 * measured ~4% slower, within the noise, with every checkpoint on the thread).
 */
export const BIG_COMMIT_FRAMES = CHECKPOINT_FRAMES / 4
/**
 * Frames in the WAL from which a write transaction first has the WAL copied back whole when a
 * checkpoint it waited for (or none) left frames in it: readers of older snapshots kept them
 * then, or another process writes. The WAL file stays within about this plus the biggest commit
 * while readers let it (as with SQLite's own checkpoints).
 */
export const WAL_LIMIT_FRAMES = 4 * CHECKPOINT_FRAMES

/** Byte offsets in the WAL-index (the -shm file; https://sqlite.org/walformat.html#the_wal_index_file_format). */
const SHM_MX_FRAME = 16
/** aSalt[0]: changes each time the WAL restarts. */
const SHM_SALT = 32
const SHM_N_BACKFILL = 96
const SHM_HEADER_BYTES = 100
/** A 32-bit word of the WAL-index, which SQLite writes in the machine's byte order. */
const shmWord: (header: Buffer, at: number) => number =
  endianness() === 'LE' ? (header, at) => header.readUInt32LE(at) : (header, at) => header.readUInt32BE(at)

/**
 * The WAL-index (-shm) files this thread reads, one descriptor each, shared by the keepers of a
 * file. A descriptor is not closed while the file may be in use: close() of any descriptor of a
 * file drops every POSIX lock the process holds on it, and SQLite's WAL locks (the write lock,
 * readers' marks, the byte that says a connection has the file open) are such locks on the -shm
 * file, held by this process's other connections to the database (another instance, a worker
 * thread's). Closing a storage then gave them away: another process committed beside a voted
 * transaction of this one, whose commit then overwrote it in the WAL (a commit lost, the tid
 * index corrupt). So a descriptor is closed only once SQLite removed its file (the database's
 * last connection closed it): no lock on that file is left to drop (see releaseWalIndexes).
 */
interface WalIndex {
  fd: number
  dev: number
  ino: number
  /** Keepers reading it. */
  users: number
}
const walIndexes: WalIndex[] = []

function openWalIndex(path: string): WalIndex | null {
  releaseWalIndexes()
  try {
    // By the file's identity, found without opening it (a second descriptor closed would drop the locks).
    const st = statSync(path)
    let index = walIndexes.find((w) => w.dev === st.dev && w.ino === st.ino)
    if (index === undefined) {
      const fd = openSync(path, 'r')
      const opened = fstatSync(fd)
      walIndexes.push((index = { fd, dev: opened.dev, ino: opened.ino, users: 0 }))
    }
    index.users++
    return index
  } catch {
    return null
  }
}

/** Closes the descriptors of WAL-index files no keeper reads and SQLite removed (see WalIndex). */
export function releaseWalIndexes(): void {
  for (let i = walIndexes.length - 1; i >= 0; i--) {
    const index = walIndexes[i]!
    if (index.users > 0) continue
    let removed = false
    try {
      removed = fstatSync(index.fd).nlink === 0
    } catch {
      removed = true // not ours any more: nothing to close
    }
    if (!removed) continue
    walIndexes.splice(i, 1)
    try {
      closeSync(index.fd)
    } catch {
      // already closed
    }
  }
}

/**
 * Keeps the WAL of one writable SQLiteStorage short without checkpointing on the committing
 * thread: after a big commit (BIG_COMMIT_FRAMES) that left a WAL of CHECKPOINT_FRAMES or more
 * frames not all copied back it asks the checkpointer (started when first needed), and returns; the copy runs while the application
 * goes on (fills the next pages, stores the next blocks). The next write transaction waits for
 * that copy before it begins, so that it writes the WAL from its start again: the WAL keeps the
 * size SQLite's own checkpoints gave it, and new WAL pages are not touched for every commit.
 * With WAL_LIMIT_FRAMES or more frames left in the WAL it has it copied whole first. Where no
 * worker can run, it checkpoints on this thread after such commits (SQLite's autocheckpoint, at
 * our threshold).
 */
export class WalKeeper {
  readonly #file: string
  readonly #synchronous: 'FULL' | 'NORMAL'
  readonly #checkpointHere: () => void
  readonly #index: WalIndex
  readonly #shm: number
  #closed = false
  readonly #header = Buffer.alloc(SHM_HEADER_BYTES)
  #checkpointer: WalCheckpointer | null = null
  /** The worker could not be started: checkpoints run on this thread. */
  #noWorker = false
  /** Frames in the WAL after our last commit (beforeWrite reads the WAL-index only from the limit on), and its salt. */
  #framesAfterCommit = 0
  #saltAfterCommit = 0

  /** Null when the WAL-index cannot be read (no -shm file): SQLite's autocheckpoint is kept then. */
  static open(file: string, synchronous: 'FULL' | 'NORMAL', checkpointHere: () => void): WalKeeper | null {
    const index = openWalIndex(`${file}-shm`)
    return index === null ? null : new WalKeeper(file, synchronous, checkpointHere, index)
  }

  private constructor(file: string, synchronous: 'FULL' | 'NORMAL', checkpointHere: () => void, index: WalIndex) {
    this.#file = file
    this.#synchronous = synchronous
    this.#checkpointHere = checkpointHere
    this.#index = index
    this.#shm = index.fd
  }

  /** Checkpoints asked of the worker, and write transactions that waited for one. */
  get stats(): { checkpoints: number; waits: number } {
    return { ...(this.#checkpointer?.stats ?? { checkpoints: 0, waits: 0 }) }
  }

  /**
   * Frames in the WAL and frames of it already copied back, from the WAL-index header (read
   * without SQLite's locks: a torn read only moves a checkpoint by a commit).
   */
  #frames(): { frames: number; backfilled: number; salt: number } {
    const h = this.#header
    let n = 0
    try {
      n = readSync(this.#shm, h, 0, SHM_HEADER_BYTES, 0)
    } catch (e) {
      log('cannot read the WAL-index of %s: %O', this.#file, e)
    }
    if (n < SHM_HEADER_BYTES) return { frames: 0, backfilled: 0, salt: 0 }
    const frames = shmWord(h, SHM_MX_FRAME)
    return { frames, backfilled: Math.min(shmWord(h, SHM_N_BACKFILL), frames), salt: shmWord(h, SHM_SALT) }
  }

  #worker(): WalCheckpointer | null {
    if (this.#checkpointer === null && !this.#noWorker) {
      try {
        this.#checkpointer = new WalCheckpointer(this.#file, this.#synchronous)
      } catch (e) {
        this.#noWorker = true
        log('no checkpointer thread for %s: %O', this.#file, e)
      }
    }
    return this.#checkpointer?.usable === true ? this.#checkpointer : null
  }

  /** After a commit (its write lock released). */
  afterCommit(): void {
    const { frames, backfilled, salt } = this.#frames()
    // What this commit wrote (all of the WAL if it restarted since the last one).
    const written = salt === this.#saltAfterCommit && frames >= this.#framesAfterCommit ? frames - this.#framesAfterCommit : frames
    this.#framesAfterCommit = frames
    this.#saltAfterCommit = salt
    // SQLite's rule: while the WAL is past the threshold and not all copied back. A checkpoint
    // that a reader or another process's commit kept partial is tried again at the next commit;
    // waiting for a threshold of new frames instead let the WAL grow by one each time (three
    // writer processes and two readers: 190-250k frames, against 40-60k with SQLite's own).
    if (frames < CHECKPOINT_FRAMES || backfilled >= frames) return
    const worker = written >= BIG_COMMIT_FRAMES ? this.#worker() : null
    if (worker !== null) {
      worker.request()
      return
    }
    this.#checkpointer?.wait() // one copy at a time
    try {
      this.#checkpointHere()
    } catch (e) {
      // The commit is durable in the WAL already: a failed copy (disk full, I/O error) must not
      // report it failed. The next commit tries again, as SQLite's own checkpoints do.
      log('checkpoint of %s failed: %O', this.#file, e)
    }
  }

  /** Before a write transaction begins: the checkpoint under way ends first (see above). */
  beforeWrite(): void {
    const worker = this.#checkpointer
    if (worker === null || !worker.usable) return // none asked yet, or afterCommit checkpoints here
    worker.wait()
    if (this.#framesAfterCommit < WAL_LIMIT_FRAMES) return
    const { frames, backfilled } = this.#frames()
    if (frames >= WAL_LIMIT_FRAMES && backfilled < frames) {
      log('%d frames in the WAL, %d copied back: a whole copy first', frames, backfilled)
      worker.request()
      worker.wait()
    }
  }

  /** Ends the checkpointer; the WAL-index stays open until SQLite removes it (releaseWalIndexes). */
  close(): void {
    this.#checkpointer?.close()
    this.#checkpointer = null
    if (this.#closed) return
    this.#closed = true
    this.#index.users--
  }
}
