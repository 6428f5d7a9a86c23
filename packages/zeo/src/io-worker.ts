// The client's I/O worker: owns the socket to the server, reconnects with backoff, and relays
// frames. Everything the server sends comes back to the main thread (ClientStorage) on a
// MessagePort, in order — the frames of one read from the socket in one message (a message costs
// both threads µs) — each batch followed by a bump of a shared counter (and, unless the batch
// holds only invalidations, Atomics.notify), so that a main thread blocked in Atomics.wait wakes
// and reads it with receiveMessageOnPort.
//
// Requests: on a plain TCP connection the main thread writes them to the socket itself (a
// synchronous write on its file descriptor, published in ctl[FD]): waking this thread to write
// them cost tens of µs per round trip and per commit. The worker writes only what the main thread
// posts to it (while not connected, or the rest of a frame the kernel did not take at once) and
// withdraws the descriptor while anything of its own waits to be written (ordering), and before
// the socket is closed (a descriptor number closed and reused could otherwise receive a request):
// it never closes or writes the socket while the main thread is writing to it. Should this thread
// die without closing the socket itself (out of memory, terminated), the main thread notices the
// descriptor no longer refers to the published socket (see ctl.ts).
//
// Replies: while the main thread spins for one it may read the socket itself; this thread then
// stops reading it until the main thread hands the reading back (see direct-read.ts).

import { fstatSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import { type MessagePort, workerData } from 'node:worker_threads'

import createDebug from 'debug'

import { BEAT, BUSY, EPOCH, FD, FINISH_ID, GONE, HANDLED, LAST_TID_OFFSET, POSTED, READER, SOCK_DEV, SOCK_INO, WAKE, WORKER_BEAT_MS } from './ctl.js'
import { FrameReader, MAGIC, PROTOCOL_VERSION, encodeFrame, peekId, peekTid, unpackBody, wholeFrameOf } from './framing.js'

const log = createDebug('wendelin:zeo:client-io')

export interface IoWorkerData {
  host: string
  port: number
  tls: { ca?: string; rejectUnauthorized?: boolean; servername?: string } | null
  token: string
  storage: string
  readOnly: boolean
  ctl: SharedArrayBuffer
  port_: MessagePort
  /** How long a call waits for a connection before failing with ClientDisconnected, in ms. */
  disconnectTimeout: number
  maxFrame: number
  backoffMin: number
  backoffMax: number
  /** The last tid a persistent cache file was valid at (sent in the first handshake). */
  lastTid: bigint | null
}

/** Main thread → worker. */
export type ToWorker =
  | { t: 'send'; id: number; b: Uint8Array; tidReply?: boolean }
  /** The rest of a frame the main thread began writing on connection `epoch`: for it only. */
  | { t: 'rest'; b: Uint8Array; epoch: number }
  /**
   * The main thread hands the reading of connection `epoch` back (direct-read.ts): `rest` is the
   * start of a frame it read only in part; `answered`, calls of ours whose replies it read.
   */
  | { t: 'read'; epoch: number; rest?: Uint8Array; failed?: boolean; answered?: number[] }
  | { t: 'close' }

/** Worker → main thread. */
export type FromWorker =
  /** Frames as on the wire (4-byte big-endian length, body), one after the other. */
  | { t: 'frames'; b: Uint8Array }
  | { t: 'connected'; b: Uint8Array }
  | { t: 'disconnected'; reason: string; epoch: number }
  | { t: 'failed'; id: number; name: string; message: string }
  | { t: 'refused'; message: string }

const data = workerData as IoWorkerData
const ctl = new Int32Array(data.ctl)
const sharedLastTid = new BigInt64Array(data.ctl, LAST_TID_OFFSET, 1)
const port = data.port_
/** The bytes of the socket a read of this thread's lands in (an `onread` socket reuses it). */
const readBuffer = Buffer.allocUnsafe(64 * 1024)

let socket: net.Socket | null = null
/** What handles the current connection's bytes (the main thread hands its partial frames back to it). */
let feed: ((chunk: Buffer, transient: boolean) => boolean) | null = null
let connected = false
let closing = false
let lastTid: bigint | null = data.lastTid ?? null
let backoff = data.backoffMin
let reconnectTimer: NodeJS.Timeout | null = null
/** Calls sent on the current connection and not answered yet. */
const inflight = new Set<number>()
/** Calls whose reply is a tid this client committed (finish): the next handshake's last tid. */
const tidReplies = new Set<number>()
/** Calls waiting for a connection, with their deadlines. */
let queued: { id: number; b: Uint8Array; deadline: number }[] = []
let queueTimer: NodeJS.Timeout | null = null
let outbox: FromWorker[] = []
let outboxWakes = false
let flushScheduled = false
/** The welcomed connections so far (ctl[EPOCH]). */
let epoch = 0

/**
 * A socket whose descriptor the main thread may be writing to: it is withdrawn, and a write in
 * progress finished, before the socket closes it (whatever the reason it is destroyed).
 */
class SharedSocket extends net.Socket {
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    afterDirectWrite(() => super._destroy(error, callback))
  }
}

/** What waits for the main thread's direct write to end, in order; null: nothing waits. */
let waiting: (() => void)[] | null = null

/**
 * Stop the main thread's direct writes, and run `then` (a write or the close of the socket) once
 * none is in progress: at once, or after the ones that wait already. The main thread's write is
 * non-blocking syscalls: a short spin usually sees it end; a longer one (a GC pause, a debugger)
 * is polled for, never cut short — a thread stopped in the middle of one never clears BUSY, and
 * then leaving the socket open and unwritten is the safe outcome.
 */
function afterDirectWrite(then: () => void): void {
  Atomics.store(ctl, FD, -1)
  if (waiting !== null) {
    waiting.push(then)
    return
  }
  for (let i = 0; i < 4096; i++) {
    if (Atomics.load(ctl, BUSY) === 0) {
      then()
      return
    }
  }
  waiting = [then]
  const poll = (): void => {
    if (Atomics.load(ctl, BUSY) !== 0) {
      setTimeout(poll, 1)
      return
    }
    const run = waiting!
    waiting = null
    for (const f of run) f()
  }
  setTimeout(poll, 1)
}

/**
 * The options of a socket that reads into `readBuffer` and hands each read to `onChunk`, which
 * returns false to stop reading (Node's constructor takes `onread`; its types name it only for
 * connect).
 */
function readingInto(onChunk: (chunk: Buffer, transient: boolean) => boolean): net.SocketConstructorOpts {
  const onread: net.OnReadOpts = {
    buffer: readBuffer,
    // (the buffer is reused: the frame reader copies what it keeps)
    callback: (n: number, buf: Uint8Array): boolean => onChunk(Buffer.from(buf.buffer, buf.byteOffset, n), true),
  }
  return { onread } as net.SocketConstructorOpts
}

/** The inode and device numbers (as int32) the main thread checks the descriptor against. */
function socketIdentity(fd: number): [number, number] | null {
  try {
    const st = fstatSync(fd)
    return [st.ino | 0, st.dev | 0]
  } catch {
    return null
  }
}

/** Let the main thread write to `s` itself, if it is the welcomed plain TCP socket with nothing of ours queued. */
function publishFd(s: net.Socket): void {
  if (data.tls || s !== socket || !connected || s.destroyed || s.writableLength > 0 || waiting !== null) return
  const fd = (s as net.Socket & { _handle?: { fd?: unknown } })._handle?.fd
  if (typeof fd !== 'number' || fd < 0) return
  const id = socketIdentity(fd)
  if (id === null) return
  // The identity first: the main thread reads FD, then these.
  Atomics.store(ctl, SOCK_INO, id[0])
  Atomics.store(ctl, SOCK_DEV, id[1])
  Atomics.store(ctl, FD, fd)
}

// Withdraw the descriptor on the way out, whatever the reason (an uncaught exception,
// process.exit): Node closes the socket after this without calling its _destroy. (Out of memory
// or terminated, this does not run: see SOCK_INO.) Then wake a main thread waiting for a reply.
process.on('exit', () => {
  Atomics.store(ctl, FD, -1)
  Atomics.store(ctl, GONE, 1)
  // Nothing can be deferred now: wait a while for a direct write in progress to end.
  const deadline = Date.now() + 1000
  for (let i = 0; Atomics.load(ctl, BUSY) !== 0; i++) if ((i & 1023) === 0 && Date.now() > deadline) break
  Atomics.add(ctl, POSTED, 1)
  Atomics.add(ctl, WAKE, 1)
  Atomics.notify(ctl, WAKE)
})

/**
 * Queue `m` for the main thread. Every batch bumps ctl[POSTED]; a batch with anything but
 * invalidation pushes also bumps ctl[WAKE] and wakes a main thread blocked in
 * Atomics.wait. Invalidations alone wake nobody: the main thread reads them, in order, with the
 * next reply (every reply that matters for them — sync, vote, finish — comes after them).
 */
function post(m: FromWorker, wake = true): void {
  outbox.push(m)
  if (wake) outboxWakes = true
  if (!flushScheduled) {
    flushScheduled = true
    queueMicrotask(flush)
  }
}

/**
 * Post what is queued. `handOver`: the main thread asks for the socket's reading and this thread
 * has stopped reading: READER becomes the connection's epoch after the batch is posted (so the
 * main thread reads the port first) and before the main thread is woken. False if it did not.
 */
function flush(handOver = false): boolean {
  flushScheduled = false
  if (outbox.length === 0) return false
  const batch = outbox
  outbox = []
  for (const m of batch) {
    if ((m.t === 'frames' || m.t === 'connected') && m.b.byteOffset === 0 && m.b.byteLength === m.b.buffer.byteLength) {
      port.postMessage(m, [m.b.buffer as ArrayBuffer])
    } else {
      port.postMessage(m)
    }
  }
  Atomics.add(ctl, POSTED, 1)
  const handedOver = handOver && Atomics.compareExchange(ctl, READER, -1, epoch) === -1
  if (outboxWakes) {
    outboxWakes = false
    Atomics.add(ctl, WAKE, 1)
    Atomics.notify(ctl, WAKE)
  }
  return handedOver
}

/** Frame bodies as one buffer of frames (each its length, then its body), `bytes` long in all. */
function batchOf(bodies: Buffer[], bytes: number): Uint8Array {
  const b = new Uint8Array(bytes)
  const view = new DataView(b.buffer)
  let off = 0
  for (const body of bodies) {
    view.setUint32(off, body.length)
    b.set(body, off + 4)
    off += 4 + body.length
  }
  return b
}

function fail(id: number, message: string): void {
  post({ t: 'failed', id, name: 'ClientDisconnected', message })
}

function connect(): void {
  reconnectTimer = null
  if (closing) return
  const frames = new FrameReader(data.maxFrame)
  let welcomed = false
  /**
   * Handle bytes from the socket; false: stop reading it, the main thread reads it now (plain
   * TCP only: an `onread` socket whose callback returns false stops reading at once).
   */
  const onChunk = (chunk: Buffer, transient: boolean): boolean => {
    let bodies: Buffer[]
    try {
      bodies = frames.push(chunk, transient)
    } catch (error) {
      log('bad frame from the server: %s', (error as Error).message)
      s.destroy()
      return true
    }
    let batch: Buffer[] | null = null
    let batchBytes = 0
    let wake = false
    for (const body of bodies) {
      if (!welcomed) {
        const copy = new Uint8Array(body.length)
        copy.set(body)
        welcomed = true
        let welcome: unknown
        try {
          welcome = unpackBody(copy)
        } catch {
          welcome = null
        }
        const info = Array.isArray(welcome) && welcome[0] === MAGIC ? (welcome[2] as Record<string, unknown> | undefined) : undefined
        if (info === undefined || typeof info.error === 'string' || typeof info.lastTid !== 'bigint') {
          const message = typeof info?.error === 'string' ? info.error : 'the server answered the handshake with something unexpected'
          post({ t: 'refused', message })
          s.destroy()
          return true
        }
        lastTid = info.lastTid
        connected = true
        backoff = data.backoffMin
        Atomics.store(ctl, EPOCH, ++epoch)
        log('connected to %s:%d/%s', data.host, data.port, data.storage)
        post({ t: 'connected', b: copy })
        const q = queued
        queued = []
        for (const r of q) send(r.id, r.b)
        publishFd(s)
        continue
      }
      const id = peekId(body)
      if (id > 0) {
        inflight.delete(id)
        if (tidReplies.delete(id) || id === Atomics.load(ctl, FINISH_ID)) rememberTid(body, true)
      } else if (id === 0) rememberTid(body, false) // an invalidation push
      if (id !== 0) wake = true
      const whole = wholeFrameOf(body)
      if (whole !== null) {
        // A big frame in a buffer of its own: posted (transferred) as it is, in its place.
        if (batch !== null) post({ t: 'frames', b: batchOf(batch, batchBytes) }, wake)
        batch = null
        batchBytes = 0
        post({ t: 'frames', b: whole }, wake)
        continue
      }
      ;(batch ??= []).push(body)
      batchBytes += 4 + body.length
    }
    if (batch !== null) post({ t: 'frames', b: batchOf(batch, batchBytes) }, wake)
    else if (!wake) return true
    // A reply, and the main thread asks for the reading: hand it over with this batch. Only while
    // it may write to the socket too (FD published: nothing of ours waits to be written), and
    // between frames: bytes of the next frame read already would be lost to the main thread's
    // reader, which starts at a frame's length (it asks again; the next reply may end a read).
    const handOver = wake && !frames.pending && !data.tls && s === socket && connected && Atomics.load(ctl, READER) === -1 && Atomics.load(ctl, FD) >= 0
    return !(handOver && flush(true))
  }
  feed = onChunk
  const s = data.tls
    ? tls.connect({
        host: data.host,
        port: data.port,
        ...(data.tls.ca ? { ca: data.tls.ca } : {}),
        rejectUnauthorized: data.tls.rejectUnauthorized ?? true,
        ...(data.tls.servername || !net.isIP(data.host) ? { servername: data.tls.servername ?? data.host } : {}),
      })
    : new SharedSocket(readingInto(onChunk)).connect({ host: data.host, port: data.port })
  socket = s
  s.setNoDelay(true)
  s.on(data.tls ? 'secureConnect' : 'connect', () => {
    const known = Atomics.load(sharedLastTid, 0)
    if (known > 0n && (lastTid === null || known > lastTid)) lastTid = known
    s.write(encodeFrame([MAGIC, PROTOCOL_VERSION, data.token, data.storage, lastTid, data.readOnly]))
  })
  if (data.tls) s.on('data', (chunk: Buffer) => void onChunk(chunk, false))
  s.on('error', (e) => log('connection error: %s', e.message))
  s.on('close', () => {
    if (socket === s) {
      socket = null
      feed = null
    }
    // The main thread no longer reads this connection (it has stopped: FD was withdrawn first).
    if (Atomics.load(ctl, READER) > 0) Atomics.store(ctl, READER, 0)
    const wasConnected = connected
    connected = false
    for (const id of inflight) fail(id, 'the connection to the server was lost before the reply came')
    inflight.clear()
    tidReplies.clear()
    if (wasConnected) post({ t: 'disconnected', reason: 'connection lost', epoch })
    else if (!welcomed && !closing) post({ t: 'disconnected', reason: 'could not connect (or the server refused the handshake)', epoch })
    if (closing) return
    reconnectTimer = setTimeout(connect, backoff)
    backoff = Math.min(backoff * 2, data.backoffMax)
    armQueueTimer()
  })
}

/**
 * A frame carrying a tid the client has seen (an invalidation push `[0, 'invalidate', tid, oids]`,
 * or the successful reply `[id, 0, tid]` of our finish): the next handshake's last tid.
 */
function rememberTid(frame: Uint8Array, isReply: boolean): void {
  const tid = peekTid(frame, isReply)
  if (tid !== null && (lastTid === null || tid > lastTid)) lastTid = tid
}

function send(id: number, b: Uint8Array, tidReply = false): void {
  const s = socket
  if (connected && s !== null) {
    if (id > 0) inflight.add(id)
    if (tidReply) tidReplies.add(id)
    // The main thread writes no more until this is in the kernel (it would overtake it).
    afterDirectWrite(() => s.write(b, () => publishFd(s)))
    return
  }
  if (id === 0) return // one-way messages are lost with the connection; the vote notices
  queued.push({ id, b, deadline: Date.now() + data.disconnectTimeout })
  armQueueTimer()
}

function armQueueTimer(): void {
  if (queueTimer !== null || queued.length === 0) return
  const next = Math.min(...queued.map((q) => q.deadline))
  queueTimer = setTimeout(
    () => {
      queueTimer = null
      const now = Date.now()
      const keep: typeof queued = []
      for (const q of queued) {
        if (q.deadline <= now) fail(q.id, `not connected to the server ${data.host}:${data.port} for ${data.disconnectTimeout} ms`)
        else keep.push(q)
      }
      queued = keep
      armQueueTimer()
    },
    Math.max(0, next - Date.now()),
  )
}

port.on('message', (m: ToWorker) => {
  if (m.t === 'send') {
    send(m.id, m.b, m.tidReply ?? false)
    Atomics.add(ctl, HANDLED, 1)
  } else if (m.t === 'rest') {
    // Never the first bytes of another connection: the stream would be out of step.
    if (connected && m.epoch === epoch) send(0, m.b)
    Atomics.add(ctl, HANDLED, 1)
  } else if (m.t === 'read') {
    for (const id of m.answered ?? []) {
      inflight.delete(id)
      tidReplies.delete(id)
    }
    const s = socket
    if (s === null || !connected || m.epoch !== epoch || s.destroyed) return
    if (m.failed) {
      s.destroy()
      return
    }
    if (m.rest !== undefined && m.rest.length > 0 && feed !== null && !feed(Buffer.from(m.rest.buffer, m.rest.byteOffset, m.rest.length), false)) return
    s.resume()
  } else if (m.t === 'close') {
    closing = true
    if (reconnectTimer) clearTimeout(reconnectTimer)
    if (queueTimer) clearTimeout(queueTimer)
    for (const q of queued) fail(q.id, 'the client storage is closed')
    queued = []
    if (socket) socket.end().resume()
    port.close()
  }
})

// A sign of life for a main thread blocked for a reply (see ctl.ts BEAT).
setInterval(() => Atomics.add(ctl, BEAT, 1), WORKER_BEAT_MS).unref()

connect()
