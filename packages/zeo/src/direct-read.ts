// The main thread reading its replies from the socket itself, while it spins for one.
//
// Normally the I/O worker reads the socket and posts what it read to the main thread: a reply
// then costs two wake-ups across CPUs (the worker's from epoll, the main thread's from
// Atomics.wait; tens of µs each on this VM when the vCPUs are idle) and the worker's JS on the way.
// A main thread that spins for its reply anyway can read it from the socket (a non-blocking
// read, ~3 µs when nothing is there), with no thread woken. But only one thread may read a stream
// at a time (two would split frames), Node's sockets keep reading while they are merely paused,
// and the main thread cannot sleep on a socket (no poll from JS), so reading is handed over:
//
// - The main thread asks for it (READER 0 → -1) when it is about to spin. The worker, after its
//   next batch with a reply that ends between frames (its reader holds no byte of the next one:
//   this thread's reader starts at a frame's length), stops its socket reading (an `onread`
//   socket whose callback returns false), posts the batch, and sets READER to the connection's
//   EPOCH: from then on the main thread reads, after draining the port (everything the worker
//   read comes first).
// - Before the main thread sleeps (a spin that ran out, a wait that does not spin) or returns to
//   its event loop (a microtask queued when it asked), it hands reading back: READER → 0 or -1,
//   then a 'read' message carrying the bytes of a frame it read only part of (a length alone
//   included), for the worker to go on from, before its socket reads again. A read error or a bad frame hands it back with
//   `failed` (the worker drops the connection); the end of the stream just hands it back (the
//   worker then reads the end itself, and reconnects as usual).
// - The worker never closes the socket while the main thread reads it (BUSY, as for its direct
//   writes), withdraws FD and resets READER when the connection ends: the main thread reads only
//   while READER equals EPOCH, FD is published and still refers to the worker's socket.

import { readSync } from 'node:fs'

import { BUSY, EPOCH, FD, GONE, POSTED, READER } from './ctl.js'
import { FrameReader } from './framing.js'

/** What the main thread hands back to the worker with the reading (a 'read' message). */
export interface ReadHandback {
  epoch: number
  /** The bytes of a frame read only in part. */
  rest?: Uint8Array
  /** The socket failed (a read error) or sent a bad frame: drop the connection. */
  failed?: boolean
}

export interface DirectReadHooks {
  /** Read what the worker posted (the port), in order, before this thread reads the socket. */
  drain(): void
  /** Whether `fd` still refers to the worker's socket (a dead worker leaves a closed number). */
  isPublished(fd: number): boolean
  /** The worker is gone (its descriptor no longer refers to its socket). */
  gone(): void
  /** One frame body read from the socket, in stream order. */
  frame(body: Uint8Array): void
  /** Hand the reading back (post a 'read' message to the worker). */
  handBack(m: ReadHandback): void
}

const SCRATCH_BYTES = 64 * 1024
/** Polls (a non-blocking read each, ~3 µs) between checks of the descriptor (fstat). */
const CHECK_EVERY = 32

export class DirectReader {
  readonly #ctl: Int32Array
  readonly #hooks: DirectReadHooks
  readonly #maxFrame: number
  #reader: FrameReader
  /** The connection #reader has read from. */
  #epoch = 0
  #scratch: Buffer | null = null
  #idleQueued = false
  /**
   * When the descriptor was last checked (fstat, ~2 µs with its Stats): the POSTED and GONE words
   * then (a worker that posts or goes may have closed it), and the polls since (a worker killed
   * without a word leaves no trace but the descriptor: checked again every CHECK_EVERY polls).
   * -1: check at the next poll.
   */
  #checkedPosted = -1
  #checkedGone = -1
  #pollsSinceCheck = 0
  /** Socket reads that brought something, and handbacks (statistics). */
  reads = 0
  handbacks = 0

  constructor(ctl: Int32Array, maxFrame: number, hooks: DirectReadHooks) {
    this.#ctl = ctl
    this.#hooks = hooks
    this.#maxFrame = maxFrame
    this.#reader = new FrameReader(maxFrame)
  }

  /** The epoch whose socket this thread reads now, or 0. */
  get #owned(): number {
    const r = Atomics.load(this.#ctl, READER)
    return r > 0 && r === Atomics.load(this.#ctl, EPOCH) ? r : 0
  }

  /** Ask for the reading (`on`), or give it up (the worker reads while this thread sleeps). */
  want(on: boolean): void {
    const ctl = this.#ctl
    this.#checkedPosted = -1 // (a new wait)
    if (on) {
      if (Atomics.compareExchange(ctl, READER, 0, -1) === 0) this.#queueIdle()
      return
    }
    if (Atomics.compareExchange(ctl, READER, -1, 0) !== -1) this.release(false)
  }

  /**
   * Hand the reading back to the worker if this thread has it; `keepAsking`: the worker hands it
   * over again after its next reply (this thread only sleeps for one).
   */
  release(keepAsking: boolean): void {
    const epoch = this.#owned
    if (epoch === 0) return
    this.#handBack(epoch, keepAsking, false)
  }

  /**
   * If this thread has the reading: drain the port, then read what the socket has and handle its
   * frames. True if anything was read (a reply may have come).
   */
  poll(): boolean {
    if (this.#owned === 0) return false
    this.#hooks.drain() // what the worker read before it stopped comes first
    const ctl = this.#ctl
    const bodies: Buffer[] = []
    let got = false
    let failed = false
    let ended = false
    Atomics.store(ctl, BUSY, 1) // the worker does not close the socket meanwhile
    try {
      // Read after BUSY is set: the worker withdraws FD (and resets READER), then waits for BUSY.
      const fd = Atomics.load(ctl, FD)
      const epoch = this.#owned
      if (fd < 0 || epoch === 0) return false
      // As a direct write does before each call: a dead worker's closed number may have been
      // taken by another file. Again whenever the worker posted or went, and every few polls.
      const posted = Atomics.load(ctl, POSTED)
      const gone = Atomics.load(ctl, GONE)
      if (posted !== this.#checkedPosted || gone !== this.#checkedGone || ++this.#pollsSinceCheck >= CHECK_EVERY) {
        if (gone !== 0 || !this.#hooks.isPublished(fd)) {
          this.#checkedPosted = -1
          this.#hooks.gone()
          return false
        }
        this.#checkedPosted = posted
        this.#checkedGone = gone
        this.#pollsSinceCheck = 0
      }
      if (epoch !== this.#epoch) {
        // A new connection: nothing of the old one's stream carries over.
        this.#epoch = epoch
        this.#reader = new FrameReader(this.#maxFrame)
      }
      const scratch = (this.#scratch ??= Buffer.allocUnsafe(SCRATCH_BYTES))
      for (;;) {
        const n = readNonBlocking(fd, scratch)
        if (n === null) break // nothing more for now
        if (n < 0) {
          failed = true
          break
        }
        if (n === 0) {
          ended = true
          break
        }
        got = true
        this.reads++
        try {
          for (const body of this.#reader.push(scratch.subarray(0, n), true)) bodies.push(body)
        } catch {
          failed = true // a bad frame length
          break
        }
        if (n < scratch.length) break // the socket is empty (no read to learn that)
      }
    } finally {
      Atomics.store(ctl, BUSY, 0)
    }
    // The worker takes over at once: it drops the connection, or reads its end.
    if (failed || ended) this.#handBack(this.#epoch, false, failed)
    for (const body of bodies) this.#hooks.frame(body)
    return got || failed || ended
  }

  #handBack(epoch: number, keepAsking: boolean, failed: boolean): void {
    // No read of this thread's is in progress (it reads only in poll), and none starts after this.
    if (Atomics.compareExchange(this.#ctl, READER, epoch, keepAsking ? -1 : 0) !== epoch) return
    this.handbacks++
    if (keepAsking) this.#queueIdle()
    const m: ReadHandback = { epoch }
    if (failed) m.failed = true
    else if (this.#epoch === epoch && this.#reader.pending) m.rest = this.#reader.rest()
    this.#reader = new FrameReader(this.#maxFrame)
    this.#hooks.handBack(m)
  }

  /** Give the reading up when this thread returns to its event loop (it reads only while waiting). */
  #queueIdle(): void {
    if (this.#idleQueued) return
    this.#idleQueued = true
    queueMicrotask(() => {
      this.#idleQueued = false
      this.want(false)
    })
  }
}

/**
 * One non-blocking read of `fd` into `into`: the bytes read (0: the end of the stream), null if
 * nothing is there (EAGAIN), -1 on any other error. Node throws for EAGAIN: without a stack
 * trace that costs ~3 µs instead of ~4.7.
 */
function readNonBlocking(fd: number, into: Buffer): number | null {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return readSync(fd, into, 0, into.length, null)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR' ? null : -1
  } finally {
    Error.stackTraceLimit = limit
  }
}
