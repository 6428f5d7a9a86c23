// ClientStorage: a Storage whose data lives on a StorageServer, for ZODB's DB and Connection as
// ZEO's ClientStorage is. Every Storage method is synchronous: the main thread writes the request
// to the socket itself (or, over TLS or while not connected, posts it to the I/O worker) and
// blocks in Atomics.wait until the reply (or an invalidation, or news of the connection) arrives
// from the worker on the reply port. `prefetch` is the asynchronous way in, for code that must not
// block its event loop.

import { fstatSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs'
import { MessageChannel, type MessagePort, Worker, receiveMessageOnPort, threadId } from 'node:worker_threads'

import createDebug from 'debug'
import {
  ConflictError,
  ConnectionStateError,
  MAX_TID,
  POSError,
  ReadOnlyError,
  StorageNotShareableError,
  StorageTransactionError,
  idToHex,
  referencesIn,
  tidFromDate,
  tidToDate,
  tryToResolveConflict,
  type HistoryEntry,
  type InvalidationListener,
  type LoadedRevision,
  type Oid,
  type Storage,
  type Tid,
  type TransactionMetaData,
  type TransactionRecord,
} from '@wendelin/zodb'

import { RecordCache, type CachedRevision } from './cache.js'
import { BEAT, BUSY, CTL_WORDS, EPOCH, FD, FINISH_ID, GONE, HANDED, HANDLED, LAST_TID_OFFSET, POSTED, READER, SOCK_DEV, SOCK_INO, WAKE } from './ctl.js'
import { DirectReader } from './direct-read.js'
import { SpinWaiter } from './spin-wait.js'
import type { FromWorker, IoWorkerData, ToWorker } from './io-worker.js'
import {
  ClientDisconnected,
  DEFAULT_MAX_FRAME,
  MAGIC,
  ProtocolError,
  decodeBody,
  encodeFrame,
  errorFromWire,
  replyBudget,
  type IteratedTransaction,
  type WireError,
} from './protocol.js'

const log = createDebug('wendelin:zeo:client')

export interface ClientStorageOptions {
  host: string
  port: number
  /** Name of the storage on the server (default '1'). */
  storage?: string
  /** The server's token; default: $WENDELIN_TOKEN, or the file named by $WENDELIN_TOKEN_FILE. */
  token?: string
  /** Read the token from this file (its first line). */
  tokenFile?: string
  readOnly?: boolean
  /** Connect with TLS, verifying the server with `ca` (PEM) unless rejectUnauthorized is false. */
  tls?: { ca?: string; rejectUnauthorized?: boolean; servername?: string } | boolean
  /** How long the constructor waits for the first connection, in ms (default 10000). */
  connectTimeout?: number
  /** How long a call waits while disconnected before throwing ClientDisconnected, in ms (default 30000). */
  disconnectTimeout?: number
  /** Longest any call waits for its reply, in ms (default 5 minutes; pack waits without limit). */
  callTimeout?: number
  /** Record cache size in bytes (default 64 MiB; 0 disables it). */
  cacheSize?: number
  /**
   * Keep the cache in this file across processes: written at close(), read at the next open and
   * verified with the server's invalidations since (or dropped when they cannot be had).
   */
  cacheFile?: string
  /**
   * The size of a reply that brings, besides the record asked for, the records it refers to
   * (default 256 KiB; at most a quarter of `maxFrameBytes`; 0 disables): a B-tree walk then costs
   * one round trip per bucket, not per object.
   */
  prefetchBudget?: number
  /**
   * Levels of references asked for ahead when a record is read (default 1: the records it refers
   * to, e.g. a B-tree bucket's values; 2: theirs too; 0: none).
   */
  prefetchDepth?: number
  /**
   * Ask the server for its last tid on every `lastTransaction()` (default true), so that a
   * connection's new snapshot includes everything committed before it started. With false, the
   * last tid this client has heard of is used (as ZEO without server_sync).
   */
  serverSync?: boolean
  /** Reconnection backoff, in ms (default 50 doubling up to 2000). */
  backoffMin?: number
  backoffMax?: number
  maxFrameBytes?: number
}

/** Parse `zeo://host:port/name?readonly=1&timeout=ms&tokenFile=/path` (zeos:// for TLS). */
export function parseZeoSpec(spec: string): ClientStorageOptions {
  const m = /^(zeos?):\/\/(\[[^\]]+\]|[^:/?]+):(\d+)(?:\/([^?]*))?(?:\?(.*))?$/.exec(spec)
  if (m === null) throw new TypeError(`not a zeo storage spec (zeo://host:port/name): ${JSON.stringify(spec)}`)
  const options: ClientStorageOptions = { host: m[2]!.replace(/^\[|\]$/g, ''), port: Number(m[3]) }
  if (m[4]) options.storage = decodeURIComponent(m[4])
  if (m[1] === 'zeos') options.tls = true
  for (const [k, v] of new URLSearchParams(m[5] ?? '')) {
    if (k === 'readonly' || k === 'readOnly') options.readOnly = v !== '0' && v !== 'false'
    else if (k === 'timeout' && /^\d+$/.test(v)) options.disconnectTimeout = Number(v)
    else if (k === 'connectTimeout' && /^\d+$/.test(v)) options.connectTimeout = Number(v)
    else if (k === 'tokenFile') options.tokenFile = v
    else if (k === 'cacheSize' && /^\d+$/.test(v)) options.cacheSize = Number(v)
    else if (k === 'cacheFile') options.cacheFile = v
    else throw new TypeError(`zeo storage spec: unknown option ${k}=${v} in ${JSON.stringify(spec)}`)
  }
  return options
}

function readToken(options: ClientStorageOptions): string {
  if (options.token !== undefined) return options.token
  const file = options.tokenFile ?? process.env.WENDELIN_TOKEN_FILE
  if (file) return readFileSync(file, 'utf8').split(/\r?\n/)[0]!.trim()
  const env = process.env.WENDELIN_TOKEN
  if (env) return env
  throw new TypeError('ClientStorage: no token (pass `token`, `tokenFile`, or set WENDELIN_TOKEN or WENDELIN_TOKEN_FILE)')
}

interface Commit {
  txn: TransactionMetaData
  id: number
  generation: number
  stores: Map<Oid, { oldSerial: Tid; data: Uint8Array | null }>
  resolved: Oid[]
  voted: boolean
}

interface Reply {
  ok: boolean
  value: unknown
  /** An error thrown while the reply was applied (see #syncApply). */
  error?: Error
}

type Welcome = {
  name: string
  storageName: string
  readOnly: boolean
  lastTid: Tid
  supportsUndo: boolean
  invalidations: [Tid, Oid[]][] | null
}

let nextTxnId = 1

/** Most oids in one loadBeforeMany message (the server's limit is 10,000). */
const LOAD_MANY_MAX = 5_000

/** Commits finished by the clients of this thread (see #justCommitted). */
let commitsInThisThread = 0

/** How #prefetchAt asks for records. */
interface PrefetchPlan {
  /** How many more levels of the records they refer to are prefetched after them (default 0). */
  cascade?: number
  /** Runs as soon as a reply is in the cache (the main thread may not return to its event loop before it uses them). */
  then?: () => void
  /** loadBeforeMany's `follow`, sent with the last request. */
  follow?: [Oid, number, number, number]
  /** Each reply brings records only within this many bytes (the server leaves the rest out; they are loaded when asked for). */
  budget: number
  /** Collects the oids a reply left out (asked for, not sent, in a reply that brought some). */
  leftOut?: Oid[]
}
/** How many records of a chain (B-tree leaves) #readAhead asks the references of ahead. */
const READ_AHEAD = 3
/**
 * How many more records of the chain the server follows with each such request (loadBeforeMany's
 * `follow`): the references of the record after the last one asked for, and so on — fewer
 * requests, replies and wake-ups per leaf. A server before this ignores it.
 */
const FOLLOW = 2

/**
 * For tests: a ClientStorage's I/O worker and the words it shares with it (not part of the API).
 */
export const IO_INTERNALS = Symbol('wendelin.zeo.ioInternals')

/** How often a call blocked for its reply checks that the I/O worker's socket is still there, in ms. */
const PROBE_EVERY = 1_000
/** How long the worker's BEAT may stand still (its event loop stopped) before it counts as dead, in ms. */
const WORKER_SILENT_MS = 5_000

/** The references of a cached record (kept: a leaf of a walk is looked at several times). */
function refsOf(e: CachedRevision): Oid[] {
  return (e.refs ??= referencesIn(e.data))
}

/** A network client storage (see the package README). */
export class ClientStorage implements Storage {
  readonly spec: string
  readonly host: string
  readonly port: number
  readonly storageName: string
  readonly #options: ClientStorageOptions
  readonly #worker: Worker
  readonly #port: MessagePort
  readonly #ctl: Int32Array
  readonly #cache: RecordCache
  readonly #listeners = new Set<InvalidationListener>()
  readonly #replies = new Map<number, Reply>()
  readonly #async = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; apply: (v: unknown) => void }>()
  /** Waiting sync calls: their replies are kept in #replies. */
  readonly #syncIds = new Set<number>()
  /**
   * What a sync call's reply does to the cache and the known tids, run when the reply is handled:
   * in stream order, before any invalidation the server sent after it (which the same drain may
   * read from the port before the waiting caller runs again).
   */
  readonly #syncApply = new Map<number, (value: unknown) => unknown>()
  /** Calls written to the socket by this thread, not answered yet: id → the connection's epoch. */
  readonly #direct = new Map<number, number>()
  /** oid → id of the prefetch request that will bring it. */
  readonly #inflightPrefetch = new Map<Oid, number>()
  /** Invalidations not yet told to the listeners ('reset': drop everything). */
  #queue: ([Tid, Oid[]] | 'reset')[] = []
  #nextId = 1
  #lastTid: Tid = 0n
  /** The newest tid told to the listeners from #queue (our own commits are told at their finish). */
  #deliveredTid: Tid = 0n
  #connected = false
  #generation = 0
  #refused: string | null = null
  #welcome: Welcome | null = null
  #serverReadOnly = false
  #oids: Oid[] = []
  #oidBatch = 16
  #commit: Commit | null = null
  #closed = false
  /** Why the I/O worker is gone (it died: no reply will come), or null while it runs. */
  #workerGone: string | null = null
  #portRefs = 0
  /** The worker's BEAT as last seen by #probeWorker, when it was seen to change, and when #probeWorker last ran. */
  #beatSeen = -1
  #beatAt = 0
  #probedAt = 0
  readonly #callCounts = new Map<string, number>()
  /**
   * Set by our own tpc_finish until the current synchronous run ends (a microtask), to the
   * thread's count of commits then: the tid it returned is the server's newest, and nothing
   * committed since can be causally before a lastTransaction() call in the same run, which then
   * needs no round trip — unless another client of this thread committed meanwhile (the count
   * moved): that commit returned before the call, which must see it.
   */
  #justCommitted: number | null = null
  /** One-way frames (tpc_begin, store, checkCurrent) not yet handed to the worker. */
  #outgoing: Uint8Array[] = []
  #outgoingBytes = 0
  /** The worker's counter when the port was last read empty. */
  #drainedSeq = -1
  /** The tid the cache file was valid at, until the first connection verifies it. */
  #cacheFileTid: Tid | null = null
  /** The served storage's own name (its welcome's storageName) the cache file was written for. */
  #cacheFileStorage: unknown = undefined
  /** How the main thread waits for the worker's word: a short adaptive spin, then Atomics.wait. */
  readonly #spinner = new SpinWaiter()
  /** The socket read by this thread while it spins for a reply (see direct-read.ts). */
  readonly #reader: DirectReader
  /** The newest tid this thread has read, shared with the worker for its next handshake. */
  readonly #sharedLastTid: BigInt64Array
  /** Calls the worker wrote (its own records of them), and those of them whose replies this thread read from the socket. */
  readonly #viaWorker = new Set<number>()
  #answered: number[] = []
  /** The record loadBefore returned last: where #readAhead starts. */
  #lastRead: CachedRevision | null = null
  /** The chain #readAhead follows: the last record whose references it asked for, how many more. */
  #chain: { tid: Tid; fromEnd: number; last: CachedRevision; left: number } | null = null

  /**
   * Whether another thread (a ZBigFile's loader worker) can open `spec` and authenticate: the
   * spec carries `tokenFile`, not the token. A token given in code (`token`) reaches such a
   * thread only when its environment gives the same one (WENDELIN_TOKEN or WENDELIN_TOKEN_FILE).
   */
  get shareable(): boolean {
    return this.#notShareable() === null
  }

  /** `spec`, or StorageNotShareableError when another thread could not authenticate with it. */
  specForAnotherThread(): string {
    const why = this.#notShareable()
    if (why !== null) throw new StorageNotShareableError(`${this.spec}: ${why}`)
    return this.spec
  }

  #notShareable(): string | null {
    const given = this.#options.token
    if (given === undefined || this.#options.tokenFile !== undefined) return null
    let theirs: string | undefined
    try {
      theirs = readToken({ host: this.host, port: this.port })
    } catch {
      theirs = undefined
    }
    if (theirs === given) return null
    return (
      'another thread (a loader worker) opens its own client from this spec, which does not carry the token given in code: ' +
      'give it as `tokenFile` (or set WENDELIN_TOKEN or WENDELIN_TOKEN_FILE to it) instead'
    )
  }

  /** Open `zeo://host:port/name` (the spec's options, then `options`, apply). */
  static open(spec: string, options: Partial<ClientStorageOptions> = {}): ClientStorage {
    return new ClientStorage({ ...parseZeoSpec(spec), ...options })
  }

  constructor(options: ClientStorageOptions) {
    this.#options = { ...options }
    this.host = options.host
    this.port = options.port
    this.storageName = options.storage ?? '1'
    const params = new URLSearchParams()
    if (options.readOnly) params.set('readonly', '1')
    if (options.tokenFile) params.set('tokenFile', options.tokenFile)
    const host = this.host.includes(':') ? `[${this.host}]` : this.host
    this.spec = `${options.tls ? 'zeos' : 'zeo'}://${host}:${this.port}/${encodeURIComponent(this.storageName)}${params.size > 0 ? `?${params}` : ''}`
    this.#cache = new RecordCache(options.cacheSize ?? 64 * 1024 * 1024)
    const token = readToken(options)
    const persisted = options.cacheFile ? this.#readCacheFile(options.cacheFile) : null
    const sab = new SharedArrayBuffer(CTL_WORDS * 4) // see ctl.ts
    this.#ctl = new Int32Array(sab)
    this.#ctl[FD] = -1
    this.#sharedLastTid = new BigInt64Array(sab, LAST_TID_OFFSET, 1)
    const { port1, port2 } = new MessageChannel()
    this.#port = port1
    this.#reader = new DirectReader(this.#ctl, options.maxFrameBytes ?? DEFAULT_MAX_FRAME, {
      drain: () => this.#drain(),
      isPublished: (fd) => this.#isPublishedSocket(fd),
      gone: () => this.#onWorkerGone('the I/O worker stopped (its socket was closed without it)'),
      frame: (body) => {
        const id = this.#frame(body)
        if (id > 0 && this.#viaWorker.delete(id)) this.#answered.push(id)
      },
      handBack: (m) => {
        const answered = this.#answered
        this.#answered = []
        this.#post({ t: 'read', ...m, ...(answered.length > 0 ? { answered } : {}) }, m.rest ? [m.rest.buffer as ArrayBuffer] : undefined)
      },
    })
    const tlsOption = options.tls === true ? {} : options.tls === false || options.tls === undefined ? null : options.tls
    const data: IoWorkerData = {
      host: this.host,
      port: this.port,
      tls: tlsOption,
      token,
      storage: this.storageName,
      readOnly: options.readOnly ?? false,
      ctl: sab,
      port_: port2,
      disconnectTimeout: options.disconnectTimeout ?? 30_000,
      maxFrame: options.maxFrameBytes ?? DEFAULT_MAX_FRAME,
      backoffMin: options.backoffMin ?? 50,
      backoffMax: options.backoffMax ?? 2_000,
      lastTid: persisted,
    }
    this.#worker = new Worker(new URL('./io-worker.js', import.meta.url), { workerData: data, transferList: [port2] })
    this.#worker.unref()
    this.#worker.on('error', (e) => this.#onWorkerGone(`the I/O worker failed: ${e.message}`))
    this.#worker.on('exit', (code) => this.#onWorkerGone(`the I/O worker stopped (exit code ${code})`))
    this.#port.on('message', (m: FromWorker) => this.#handle(m))
    this.#port.unref()
    // Wait for the first connection.
    const deadline = Date.now() + (options.connectTimeout ?? 10_000)
    while (!this.#connected) {
      const seq = Atomics.load(this.#ctl, WAKE)
      this.#drain()
      if (this.#connected) break
      if (this.#refused !== null) {
        const message = this.#refused
        this.close()
        throw new ConnectionStateError(`${this.spec}: ${message}`)
      }
      if (this.#workerGone !== null) {
        const message = this.#workerGone
        this.close()
        throw new ClientDisconnected(`${this.spec}: ${message}`)
      }
      const remaining = deadline - Date.now()
      if (remaining <= 0) {
        this.close()
        throw new ClientDisconnected(`${this.spec}: could not connect to the server (is it running, and is the token right?)`)
      }
      Atomics.wait(this.#ctl, WAKE, seq, remaining)
    }
    this.#deliver()
  }

  // --- plumbing --------------------------------------------------------------------------------

  #post(m: ToWorker, transfer?: ArrayBuffer[]): void {
    this.#port.postMessage(m, transfer)
  }

  #drain(): void {
    // The worker bumps the counter after posting: nothing new since the last look, nothing to read
    // (receiveMessageOnPort costs microseconds even on an empty port).
    const seq = Atomics.load(this.#ctl, POSTED)
    if (seq === this.#drainedSeq) return
    this.#drainedSeq = seq
    for (;;) {
      const r = receiveMessageOnPort(this.#port)
      if (r === undefined) break
      this.#handle(r.message as FromWorker)
    }
    // After what it posted before going (its exit handler bumps POSTED).
    if (Atomics.load(this.#ctl, GONE) !== 0) this.#onWorkerGone('the I/O worker stopped')
  }

  /**
   * The I/O worker died (an uncaught exception, out of memory, terminated): no reply will come.
   * Every call waiting fails with ClientDisconnected, and so does every call after (the storage
   * must be opened again); the descriptor it published is never written to again.
   */
  #onWorkerGone(reason: string): void {
    if (this.#workerGone !== null || this.#closed) return
    this.#workerGone = reason
    log('%s: %s', this.spec, reason)
    Atomics.store(this.#ctl, FD, -1)
    Atomics.store(this.#ctl, GONE, 1)
    this.#outgoing = []
    this.#outgoingBytes = 0
    this.#direct.clear()
    this.#viaWorker.clear()
    this.#answered = []
    if (this.#connected) {
      this.#connected = false
      this.#generation++
    }
    const failure: Reply = { ok: false, value: { name: 'ClientDisconnected', message: `${reason}; open the storage again` } satisfies WireError }
    for (const id of [...this.#syncIds]) if (!this.#replies.has(id)) this.#settle(id, failure)
    for (const id of [...this.#async.keys()]) this.#settle(id, failure)
  }

  #checkWorker(): void {
    if (this.#workerGone !== null) throw new ClientDisconnected(`${this.spec}: ${this.#workerGone}; open the storage again`)
  }

  /** Whether `fd` still refers to the socket the worker published (see ctl.ts SOCK_INO). */
  #isPublishedSocket(fd: number): boolean {
    let ino: number, dev: number
    try {
      const st = fstatSync(fd)
      ino = st.ino | 0
      dev = st.dev | 0
    } catch {
      return false
    }
    return ino === Atomics.load(this.#ctl, SOCK_INO) && dev === Atomics.load(this.#ctl, SOCK_DEV)
  }

  /**
   * While blocked for a reply (every PROBE_EVERY): if the worker's heartbeat stopped, or it
   * publishes a descriptor that no longer refers to its socket, it died without a word (out of
   * memory, terminated: its 'exit' handler did not run, and its 'exit' event cannot reach this
   * thread while it blocks).
   */
  #probeWorker(): void {
    const ctl = this.#ctl
    if (this.#workerGone !== null) return
    // With no descriptor to check (disconnected, TLS), its heartbeat: a worker killed without a
    // word stops it. Silence counts only over probes that followed each other: after a gap (this
    // thread busy elsewhere, or the whole process stopped — SIGSTOP, a paused VM — which stopped
    // the worker's timer too) the worker gets a fresh window to beat in.
    const beat = Atomics.load(ctl, BEAT)
    const now = Date.now()
    const gap = now - this.#probedAt
    this.#probedAt = now
    if (beat !== this.#beatSeen || gap > 2 * PROBE_EVERY) {
      this.#beatSeen = beat
      this.#beatAt = now
    } else if (now - this.#beatAt > WORKER_SILENT_MS) {
      this.#onWorkerGone(`the I/O worker stopped (no sign of life for ${WORKER_SILENT_MS} ms)`)
      return
    }
    if (Atomics.load(ctl, FD) < 0) return
    Atomics.store(ctl, BUSY, 1) // the worker does not close the socket meanwhile
    try {
      const fd = Atomics.load(ctl, FD)
      if (fd >= 0 && !this.#isPublishedSocket(fd)) this.#onWorkerGone('the I/O worker stopped (its socket was closed without it)')
    } finally {
      Atomics.store(ctl, BUSY, 0)
    }
  }

  #handle(m: FromWorker): void {
    switch (m.t) {
      case 'frames': {
        const b = m.b
        const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
        for (let off = 0; off < b.length; ) {
          const n = view.getUint32(off)
          const id = this.#frame(b.subarray(off + 4, off + 4 + n))
          if (id > 0) this.#viaWorker.delete(id)
          off += 4 + n
        }
        return
      }
      case 'failed':
        this.#viaWorker.delete(m.id)
        this.#settle(m.id, { ok: false, value: { name: m.name, message: m.message } satisfies WireError })
        return
      case 'connected':
        this.#onConnected(decodeBody(m.b) as [string, number, Welcome])
        return
      case 'disconnected':
        // The calls this thread wrote on that connection get no reply (the worker fails its own).
        for (const [id, epoch] of this.#direct) {
          if (epoch <= m.epoch) this.#settle(id, { ok: false, value: { name: 'ClientDisconnected', message: 'the connection to the server was lost before the reply came' } satisfies WireError })
        }
        if (this.#connected) {
          log('%s: disconnected (%s)', this.spec, m.reason)
          this.#connected = false
          this.#generation++
        }
        return
      case 'refused':
        this.#refused = m.message
        return
    }
  }

  /** One frame from the server: a reply, or an invalidation push. Its id (0: a push). */
  #frame(body: Uint8Array): number {
    const msg = decodeBody(body) as unknown[]
    const id = msg[0] as number
    if (id === 0) {
      if (msg[1] === 'invalidate') this.#invalidate(msg[2] as Tid, msg[3] as Oid[])
      return 0
    }
    this.#settle(id, { ok: msg[1] === 0, value: msg[2] })
    return id
  }

  /** A tid this thread has read (an invalidation, our finish): the worker's next handshake knows it. */
  #noteTid(tid: Tid): void {
    if (tid > Atomics.load(this.#sharedLastTid, 0)) Atomics.store(this.#sharedLastTid, 0, tid)
  }

  #settle(id: number, reply: Reply): void {
    this.#direct.delete(id)
    if (this.#syncIds.has(id)) {
      const apply = this.#syncApply.get(id)
      if (apply !== undefined && reply.ok) {
        try {
          reply = { ok: true, value: apply(reply.value) }
        } catch (error) {
          reply = { ok: false, value: null, error: error as Error }
        }
      }
      this.#replies.set(id, reply)
      return
    }
    const a = this.#async.get(id)
    if (a === undefined) return
    this.#async.delete(id)
    if (--this.#portRefs === 0) this.#port.unref()
    if (reply.ok) {
      try {
        a.apply(reply.value)
      } catch (error) {
        a.reject(error as Error)
        return
      }
      a.resolve(reply.value)
    } else a.reject(errorFromWire(reply.value as WireError))
  }

  #onConnected(welcome: [string, number, Welcome]): void {
    const w = welcome[2]
    if (welcome[0] !== MAGIC) throw new ProtocolError('bad welcome')
    const first = this.#welcome === null
    const before = this.#welcome
    this.#welcome = w
    this.#serverReadOnly = w.readOnly
    this.#connected = true
    this.#generation++
    if (first) {
      if (this.#cacheFileTid !== null) {
        // A cache read from its file: keep what the server's invalidations say is still valid.
        // Another database served at the same address and name (a file of other tids and
        // records), whose invalidations since the file's tid say nothing of the records in it.
        if (w.invalidations === null || w.lastTid < this.#cacheFileTid || this.#cacheFileStorage !== w.storageName) {
          log('%s: the cache file cannot be verified (server at %s): dropped', this.spec, idToHex(w.lastTid))
          this.#cache.clear()
        } else {
          for (const [tid, oids] of w.invalidations) this.#cache.invalidate(tid, oids)
          log('%s: cache file verified with %d transactions', this.spec, w.invalidations.length)
        }
      }
      this.#lastTid = this.#deliveredTid = w.lastTid
      return
    }
    // A reconnection: verify the cache with what the server says changed since our last tid.
    if (w.invalidations === null || w.lastTid < this.#lastTid || before!.storageName !== w.storageName) {
      log('%s: reconnected; the server cannot tell what changed since %s: dropping the cache', this.spec, idToHex(this.#lastTid))
      this.#cache.clear()
      this.#queue.push('reset')
      this.#lastTid = w.lastTid
    } else {
      log('%s: reconnected; %d transactions to apply to the cache', this.spec, w.invalidations.length)
      for (const [tid, oids] of w.invalidations) this.#invalidate(tid, oids)
      if (w.lastTid > this.#lastTid) this.#lastTid = w.lastTid
    }
  }

  #invalidate(tid: Tid, oids: Oid[]): void {
    if (tid <= this.#lastTid) return // already known (our own commit, or told before a reconnection)
    this.#cache.invalidate(tid, oids)
    this.#queue.push([tid, oids])
    this.#lastTid = tid
    this.#noteTid(tid)
  }

  /** Tell the listeners every invalidation received so far, in tid order. */
  #deliver(): void {
    while (this.#queue.length > 0) {
      const item = this.#queue.shift()!
      if (item === 'reset') {
        for (const l of [...this.#listeners]) l.invalidateCache?.()
        continue
      }
      const [tid, oids] = item
      if (tid <= this.#deliveredTid) continue
      this.#deliveredTid = tid
      for (const l of [...this.#listeners]) l.invalidate(tid, oids)
    }
  }

  /**
   * Send a call (id > 0) with the one-way messages buffered before it, in one message to the
   * worker and one socket write; a one-way message (id 0) is only buffered, up to 256 KiB.
   */
  #send(id: number, message: unknown[], tidReply = false): void {
    const frame = encodeFrame(message)
    this.#outgoing.push(frame)
    this.#outgoingBytes += frame.length
    if (id === 0 && this.#outgoingBytes < 256 * 1024) return
    this.#flush(id, tidReply)
  }

  /**
   * Hand the buffered frames to the worker (`id`: the call among them, if any, else 0;
   * `tidReply`: its reply is a tid we committed, which the worker remembers for reconnecting).
   */
  #flush(id = 0, tidReply = false): void {
    if (this.#outgoing.length === 0) return
    if (this.#workerGone !== null) {
      // Nobody to send it: the calls waiting have failed already.
      this.#outgoing = []
      this.#outgoingBytes = 0
      return
    }
    let b = this.#outgoing[0]!
    if (this.#outgoing.length > 1) {
      b = new Uint8Array(this.#outgoingBytes)
      let off = 0
      for (const f of this.#outgoing) {
        b.set(f, off)
        off += f.length
      }
    }
    this.#outgoing = []
    this.#outgoingBytes = 0
    if (this.#writeDirect(id, b, tidReply)) return
    if (id > 0) this.#viaWorker.add(id)
    Atomics.add(this.#ctl, HANDED, 1)
    this.#post(tidReply ? { t: 'send', id, b, tidReply } : { t: 'send', id, b }, [b.buffer as ArrayBuffer])
  }

  /**
   * Write `b` to the socket from this thread, if the worker publishes its descriptor and has
   * handled everything posted to it (else a direct write could overtake it). What the kernel
   * does not take at once goes to the worker, which waits for the socket to drain. False: not
   * written, post it.
   */
  #writeDirect(id: number, b: Uint8Array, tidReply: boolean): boolean {
    const ctl = this.#ctl
    if (Atomics.load(ctl, FD) < 0) return false
    Atomics.store(ctl, BUSY, 1)
    try {
      // Read after BUSY is set: the worker withdraws the descriptor, then waits for BUSY to clear.
      const fd = Atomics.load(ctl, FD)
      if (fd < 0 || Atomics.load(ctl, HANDED) !== Atomics.load(ctl, HANDLED)) return false
      // Published but not the worker's socket any more (a closed number, or another file's): the
      // worker died without withdrawing it. ~0.7 us; what it costs to write elsewhere is worse.
      if (!this.#isPublishedSocket(fd)) {
        this.#onWorkerGone('the I/O worker stopped (its socket was closed without it)')
        return true // the call has failed (#onWorkerGone settled it)
      }
      const epoch = Atomics.load(ctl, EPOCH)
      if (tidReply) Atomics.store(ctl, FINISH_ID, id)
      if (id > 0) this.#direct.set(id, epoch)
      let off = 0
      while (off < b.length) {
        try {
          off += writeSync(fd, b, off, b.length - off)
        } catch {
          // EAGAIN: the socket's buffer is full. Anything else: the connection is failing.
          break
        }
      }
      if (off === 0) {
        // Nothing sent: the worker sends it as any call (or fails it when the connection drops).
        this.#direct.delete(id)
        return false
      }
      if (off < b.length) {
        // The rest is for this connection only; if it is failing, the worker's write of it fails
        // and drops it, and the call fails through 'disconnected'.
        const rest = b.slice(off)
        Atomics.add(ctl, HANDED, 1)
        this.#post({ t: 'rest', b: rest, epoch }, [rest.buffer as ArrayBuffer])
      }
      return true
    } finally {
      Atomics.store(ctl, BUSY, 0)
    }
  }

  /** A synchronous call: blocks until the reply (or a failure) comes. */
  #call(method: string, ...args: unknown[]): unknown {
    return this.#callApplying(undefined, method, ...args)
  }

  /**
   * A synchronous call whose reply, if it succeeds, goes through `apply` as soon as it is read
   * from the port (see #syncApply); the call returns what `apply` returns.
   */
  #callApplying(apply: ((value: unknown) => unknown) | undefined, method: string, ...args: unknown[]): unknown {
    this.#checkOpen()
    this.#checkWorker()
    this.#callCounts.set(method, (this.#callCounts.get(method) ?? 0) + 1)
    const id = this.#nextId++
    this.#syncIds.add(id)
    if (apply !== undefined) this.#syncApply.set(id, apply)
    try {
      // A vote may wait for other clients' locks, a pack for long: not worth a spin.
      const kind = method === 'vote' || method === 'pack' || method === 'undo' ? null : method
      this.#spinner.beforeCall(kind, this.#reader)
      this.#send(id, [id, method, ...args], method === 'finish')
      return this.#wait(id, method === 'pack' ? Infinity : (this.#options.callTimeout ?? 300_000), kind)
    } finally {
      this.#syncApply.delete(id)
    }
  }

  #wait(id: number, timeout: number, kind: string | null): unknown {
    this.#syncIds.add(id)
    const deadline = Date.now() + timeout
    try {
      for (;;) {
        const seq = Atomics.load(this.#ctl, WAKE)
        this.#drain()
        const reply = this.#replies.get(id)
        if (reply !== undefined) {
          this.#replies.delete(id)
          if (reply.ok) return reply.value
          throw reply.error ?? errorFromWire(reply.value as WireError)
        }
        const remaining = deadline - Date.now()
        if (remaining <= 0) throw new ClientDisconnected(`${this.spec}: no reply from the server within ${timeout} ms`)
        this.#spinner.wait(this.#ctl, WAKE, seq, Math.min(remaining, PROBE_EVERY), kind, this.#reader)
        if (Atomics.load(this.#ctl, WAKE) === seq) this.#probeWorker()
      }
    } finally {
      this.#syncIds.delete(id)
      this.#direct.delete(id) // (a timeout: a reply coming later is dropped)
    }
  }

  /** Block until the asynchronous call `id` is settled (its reply applied, in stream order). */
  #waitSettled(id: number, timeout: number): void {
    const deadline = Date.now() + timeout
    while (this.#async.has(id)) {
      const seq = Atomics.load(this.#ctl, WAKE)
      this.#drain()
      if (!this.#async.has(id)) return
      const remaining = deadline - Date.now()
      if (remaining <= 0) throw new ClientDisconnected(`${this.spec}: no reply from the server within ${timeout} ms`)
      this.#spinner.wait(this.#ctl, WAKE, seq, Math.min(remaining, PROBE_EVERY), 'prefetch', this.#reader)
      if (Atomics.load(this.#ctl, WAKE) === seq) this.#probeWorker()
    }
  }

  /** An asynchronous call. */
  #callAsync(apply: (value: unknown) => void, method: string, ...args: unknown[]): Promise<unknown> {
    this.#checkOpen()
    // A rejection, not a throw: prefetches are started from synchronous reads that must not fail.
    if (this.#workerGone !== null) return Promise.reject(new ClientDisconnected(`${this.spec}: ${this.#workerGone}; open the storage again`))
    const id = this.#nextId++
    const p = new Promise<unknown>((resolve, reject) => this.#async.set(id, { resolve, reject, apply }))
    if (this.#portRefs++ === 0) this.#port.ref()
    this.#send(id, [id, method, ...args])
    return p
  }

  #oneWay(method: string, ...args: unknown[]): void {
    this.#send(0, [0, method, ...args])
  }

  /** Block until connected (up to the disconnect timeout), or throw ClientDisconnected. */
  #ensureConnected(): void {
    this.#drain()
    this.#checkWorker()
    if (this.#connected) return
    const timeout = this.#options.disconnectTimeout ?? 30_000
    const deadline = Date.now() + timeout
    while (!this.#connected) {
      const seq = Atomics.load(this.#ctl, WAKE)
      this.#drain()
      this.#checkWorker()
      if (this.#connected) return
      const remaining = deadline - Date.now()
      if (remaining <= 0) throw new ClientDisconnected(`${this.spec}: not connected to the server for ${timeout} ms`)
      if (Atomics.wait(this.#ctl, WAKE, seq, Math.min(remaining, PROBE_EVERY)) === 'timed-out') this.#probeWorker()
    }
  }

  // --- facts -----------------------------------------------------------------------------------

  get closed(): boolean {
    return this.#closed
  }

  /** Whether the I/O worker is connected to the server now (as far as this thread knows). */
  get connected(): boolean {
    if (this.#closed) return false // its worker and socket are gone, whatever was last heard
    this.#drain()
    return this.#connected
  }

  getName(): string {
    return `ClientStorage(${this.spec})`
  }

  getSize(): number {
    return this.#call('getSize') as number
  }

  len(): number {
    return this.#call('len') as number
  }

  isReadOnly(): boolean {
    return (this.#options.readOnly ?? false) || this.#serverReadOnly
  }

  sortKey(): string {
    return this.spec
  }

  lastTransaction(): Tid {
    this.#checkOpen()
    if ((this.#options.serverSync ?? true) && this.#justCommitted !== commitsInThisThread) {
      const last = this.#call('sync') as Tid
      // Every invalidation up to `last` came before the reply.
      if (last > this.#lastTid) this.#lastTid = last
    } else {
      this.#drain()
    }
    this.#deliver()
    return this.#lastTid
  }

  // --- reading ---------------------------------------------------------------------------------

  loadBefore(oid: Oid, tid: Tid): LoadedRevision | null {
    this.#checkOpen()
    this.#drain()
    let hit = this.#cache.lookup(oid, tid, this.#lastTid)
    if (hit === undefined) {
      const pending = this.#inflightPrefetch.get(oid)
      if (pending !== undefined && this.#async.has(pending)) {
        // A prefetch is bringing it: wait for that reply rather than asking again. The reply is
        // applied to the cache when it is read, before the invalidations that follow it.
        this.#waitSettled(pending, this.#options.callTimeout ?? 300_000)
        hit = this.#cache.lookup(oid, tid, this.#lastTid)
      }
    }
    if (hit !== undefined) {
      this.#lastRead = hit
      if (!hit.refsDone) this.#prefetchReferences(hit, tid)
      return { data: hit.data, serial: hit.serial, nextSerial: hit.next }
    }
    // The records go into the cache as the reply is read: a revision current when the server
    // answered must be there before an invalidation sent after the reply closes its range.
    const entry = this.#callApplying(
      (value) => {
        const [rev, extras] = value as [[Uint8Array, Tid, Tid | null] | null, [Oid, Uint8Array, Tid, Tid | null][]]
        for (const [o, data, serial, next] of extras) this.#cache.put(o, { data, serial, next })
        if (rev === null) return null
        const e: CachedRevision = { data: rev[0], serial: rev[1], next: rev[2] }
        this.#cache.put(oid, e)
        return e
      },
      'loadBefore',
      oid,
      tid,
      this.#prefetchBudget() > 0 ? this.#replyBudget() : 0,
    ) as CachedRevision | null
    if (entry === null) return null
    const result = { data: entry.data, serial: entry.serial, nextSerial: entry.next }
    this.#lastRead = entry
    this.#prefetchReferences(entry, tid)
    return result
  }

  /**
   * The revisions of `oids` current before `tid` (a connection asks for the values of a B-tree
   * leaf it iterates): from the cache, from the prefetches bringing them, and the rest in one
   * round trip. Objects that did not exist before `tid` are left out. Then reads ahead (see
   * #readAhead).
   */
  loadBeforeMany(oids: readonly Oid[], tid: Tid): Map<Oid, LoadedRevision> {
    this.#checkOpen()
    this.#drain()
    const found = new Map<Oid, LoadedRevision>()
    const take = (oid: Oid, e: CachedRevision) => {
      e.read = true
      found.set(oid, { data: e.data, serial: e.serial, nextSerial: e.next })
    }
    let missing: Oid[] = []
    const pending = new Set<number>()
    for (const oid of oids) {
      const hit = this.#cache.lookup(oid, tid, this.#lastTid)
      if (hit !== undefined) {
        take(oid, hit)
        continue
      }
      const p = this.#inflightPrefetch.get(oid)
      if (p !== undefined && this.#async.has(p)) pending.add(p)
      missing.push(oid)
    }
    const timeout = this.#options.callTimeout ?? 300_000
    if (pending.size > 0) {
      // Prefetches are bringing some: their replies come before any new one would.
      for (const id of pending) this.#waitSettled(id, timeout)
      const still: Oid[] = []
      for (const oid of missing) {
        const hit = this.#cache.peek(oid, tid, this.#lastTid)
        if (hit !== undefined) take(oid, hit)
        else still.push(oid)
      }
      missing = still
    }
    // Each reply within a budget (a quarter of a frame, at most 16 MiB): without one, the values
    // of a leaf of big records (file blocks) come in one reply larger than a frame, which ends
    // the connection, and every try after. What the budget left out is asked for again, until a
    // reply brings nothing (what is missing then did not exist: the first record always comes).
    const budget = this.#frameBudget()
    while (missing.length > 0) {
      const again: Oid[] = []
      for (let i = 0; i < missing.length; i += LOAD_MANY_MAX) {
        const part = missing.slice(i, i + LOAD_MANY_MAX)
        // Into the cache as the reply is read, before any invalidation sent after it. (A follow
        // of count 0 before the budget: what version-2 servers from before the budget accept.)
        const revs = this.#callApplying((value) => this.#putMany(value, false), 'loadBeforeMany', part, tid, [part[0]!, 1, 0, 0], budget) as [Oid, CachedRevision][]
        for (const [oid, e] of revs) take(oid, e)
        if (revs.length > 0) for (const oid of part) if (!found.has(oid)) again.push(oid)
      }
      missing = again
    }
    this.#readAhead(tid, new Set(oids))
    return found
  }

  /** A loadBeforeMany reply into the cache: `[[oid, data, serial, next | nil], …]`. */
  #putMany(value: unknown, refsDone: boolean): [Oid, CachedRevision][] {
    const out: [Oid, CachedRevision][] = []
    for (const [oid, data, serial, next] of value as [Oid, Uint8Array, Tid, Tid | null][]) {
      const e: CachedRevision = { data, serial, next }
      if (refsDone) e.refsDone = true
      this.#cache.put(oid, e)
      out.push([oid, e])
    }
    return out
  }

  /**
   * A walk that reads a record's references together (the values of a B-tree leaf, `batch`)
   * goes on with the record's other reference (the next leaf, which came with the prefetch of the
   * record's references): ask now, asynchronously, for what the next READ_AHEAD records of that
   * chain refer to — each found at the same place from the end of its predecessor's references —
   * so that their values arrive while this leaf is used instead of a round trip later.
   */
  #readAhead(tid: Tid, batch: ReadonlySet<Oid>): void {
    const from = this.#lastRead
    this.#lastRead = null
    this.#chain = null
    if (from === null || this.#prefetchBudget() <= 0 || (this.#options.prefetchDepth ?? 1) <= 0) return
    let refs: Oid[]
    try {
      refs = refsOf(from)
    } catch {
      return // not a record this version can read: nothing to follow
    }
    let k = refs.length - 1
    while (k >= 0 && batch.has(refs[k]!)) k--
    if (k < 0) return
    this.#chain = { tid, fromEnd: refs.length - k, last: from, left: READ_AHEAD }
    this.#extendChain()
  }

  /**
   * Ask for the references of the chain's next records, as far as they are cached, up to its
   * window; the reply that brings the next one goes on from there.
   */
  #extendChain(): void {
    const chain = this.#chain
    if (chain === null) return
    const wanted: Oid[] = []
    /** The record after the last one whose references are asked for: the server goes on from it. */
    let after: Oid | null = null
    try {
      while (chain.left > 0) {
        const refs = refsOf(chain.last)
        const next = refs.length >= chain.fromEnd ? this.#cache.peek(refs[refs.length - chain.fromEnd]!, chain.tid, this.#lastTid) : undefined
        if (next === undefined) break // on its way (or the chain ends)
        if (next.read) {
          this.#chain = null // values, not a chain of leaves
          break
        }
        if (!next.refsDone) {
          next.refsDone = true
          const nextRefs = refsOf(next)
          for (const o of nextRefs) wanted.push(o)
          after = nextRefs.length >= chain.fromEnd ? nextRefs[nextRefs.length - chain.fromEnd]! : null
        }
        chain.last = next
        chain.left--
      }
    } catch {
      this.#chain = null
    }
    if (wanted.length > 0) {
      const budget = this.#replyBudget()
      const follow: [Oid, number, number, number] | undefined = after !== null && this.#chain !== null ? [after, chain.fromEnd, FOLLOW, budget] : undefined
      this.#prefetchAt(wanted, chain.tid, { then: () => this.#extendChain(), follow, budget }).catch((error: unknown) => log('prefetch failed: %s', (error as Error).message))
    }
  }



  /**
   * Ask (without waiting) for the records `rev` refers to that are not cached: when a B-tree
   * bucket is read, its values are likely to be read next, and come in one round trip.
   */
  #prefetchReferences(rev: CachedRevision, tid: Tid): void {
    rev.refsDone = true
    if (this.#prefetchBudget() <= 0) return
    let refs: Oid[]
    try {
      refs = referencesIn(rev.data)
    } catch {
      return
    }
    const wanted = refs.filter((o) => !this.#inflightPrefetch.has(o) && !this.#cache.has(o, tid, this.#lastTid))
    if (wanted.length === 0) return
    const depth = this.#options.prefetchDepth ?? 1
    if (depth <= 0) return
    // Within the budget: the references of a B-tree leaf of file blocks are 2 MiB records each,
    // which the reader may never need (a ZBigFile loader reads one block per bucket lookup).
    this.#prefetchAt(wanted, tid, { cascade: depth - 1, budget: this.#replyBudget() }).catch((error: unknown) => log('prefetch failed: %s', (error as Error).message))
  }

  loadSerial(oid: Oid, serial: Tid): Uint8Array {
    this.#checkOpen()
    const hit = this.#cache.bySerial(oid, serial)
    if (hit !== undefined) return hit
    return this.#call('loadSerial', oid, serial) as Uint8Array
  }

  /**
   * Load the revisions of `oids` current before `tid` (default: this client's newest snapshot)
   * into the cache, without blocking the event loop. Later loadBefore calls find them there.
   */
  async prefetch(oids: Iterable<Oid>, tid?: Tid): Promise<void> {
    this.#checkOpen()
    this.#drain()
    const at = tid ?? this.#lastTid + 1n
    // Replies within a quarter of a frame each; what a budget left out is asked for again, until
    // a reply brings nothing (the rest did not exist).
    let wanted = [...oids]
    while (wanted.length > 0) {
      const leftOut: Oid[] = []
      await this.#prefetchAt(wanted, at, { budget: this.#frameBudget(), leftOut })
      wanted = leftOut
    }
  }

  /** The prefetchBudget option, or its default (256 KiB). */
  #prefetchBudget(): number {
    return this.#options.prefetchBudget ?? 256 * 1024
  }

  /** A quarter of a frame as the server takes a reply's budget (at most 16 MiB). */
  #frameBudget(): number {
    return replyBudget((this.#options.maxFrameBytes ?? DEFAULT_MAX_FRAME) / 4)
  }

  /** prefetchBudget as the server takes a reply's budget: whole bytes, 1 to a quarter of a frame. */
  #replyBudget(): number {
    return Math.min(replyBudget(this.#prefetchBudget()), this.#frameBudget())
  }

  /**
   * Prefetch `oids` before `at` (see PrefetchPlan for the rest).
   */
  #prefetchAt(oids: Iterable<Oid>, at: Tid, plan: PrefetchPlan): Promise<void> {
    const { cascade = 0, then, follow, budget, leftOut } = plan
    const wanted: Oid[] = []
    for (const oid of oids) {
      if (!this.#cache.has(oid, at, this.#lastTid) && !this.#inflightPrefetch.has(oid)) wanted.push(oid)
    }
    const chunks: Promise<void>[] = []
    for (let i = 0; i < wanted.length; i += 1000) {
      const part = wanted.slice(i, i + 1000)
      const id = this.#nextId // the id #callAsync will use
      const apply = (value: unknown) => {
        for (const o of part) if (this.#inflightPrefetch.get(o) === id) this.#inflightPrefetch.delete(o)
        const next: Oid[] = []
        const got = this.#putMany(value, cascade > 0)
        if (leftOut !== undefined && got.length > 0) {
          const came = new Set(got.map(([oid]) => oid))
          for (const o of part) if (!came.has(o)) leftOut.push(o)
        }
        for (const [, entry] of got) {
          if (cascade <= 0) continue
          try {
            for (const ref of referencesIn(entry.data)) next.push(ref)
          } catch {
            // not a record this version can read: nothing to follow
          }
        }
        if (next.length > 0) {
          this.#prefetchAt(next, at, { cascade: cascade - 1, budget }).catch((error: unknown) => log('prefetch failed: %s', (error as Error).message))
        }
        then?.()
      }
      const last = i + 1000 >= wanted.length
      // With no walk to follow, a follow that does nothing (count 0): servers of protocol
      // version 2 from before the budget take it, and send every record asked for.
      const p = this.#callAsync(apply, 'loadBeforeMany', part, at, follow !== undefined && last ? follow : [part[0]!, 1, 0, 0], budget)
      for (const o of part) this.#inflightPrefetch.set(o, id)
      chunks.push(
        p.then(
          () => undefined,
          (error: unknown) => {
            for (const o of part) if (this.#inflightPrefetch.get(o) === id) this.#inflightPrefetch.delete(o)
            throw error
          },
        ),
      )
    }
    return Promise.all(chunks).then(() => undefined)
  }

  newOid(): Oid {
    this.#checkWritable('newOid')
    if (this.#oids.length === 0) {
      this.#oids = (this.#call('newOids', this.#oidBatch) as Oid[]).reverse()
      if (this.#oidBatch < 1024) this.#oidBatch *= 2
    }
    return this.#oids.pop()!
  }

  // --- two-phase commit --------------------------------------------------------------------------

  tpc_begin(txn: TransactionMetaData): void {
    this.#checkWritable('tpc_begin')
    if (this.#commit !== null) {
      if (this.#commit.txn === txn) return
      throw new StorageTransactionError(`${this.getName()}: tpc_begin while another transaction is committing (one commit at a time)`)
    }
    this.#ensureConnected()
    const id = nextTxnId++
    this.#commit = { txn, id, generation: this.#generation, stores: new Map(), resolved: [], voted: false }
    this.#oneWay('tpc_begin', id, txn.user, txn.description, txn.extension ?? {})
  }

  store(oid: Oid, oldSerial: Tid, data: Uint8Array, txn: TransactionMetaData): void {
    this.#checkWritable('store')
    const commit = this.#committing(txn, 'store')
    if (typeof oid !== 'bigint' || typeof oldSerial !== 'bigint') throw new TypeError('store: oid and serial must be bigints')
    if (!(data instanceof Uint8Array)) throw new TypeError('store: data must be a Uint8Array record')
    if (commit.voted) throw new StorageTransactionError(`${this.getName()}: store after tpc_vote`)
    const limit = (this.#options.maxFrameBytes ?? DEFAULT_MAX_FRAME) - 64
    if (data.length > limit) {
      throw new POSError(`store: the record of object 0x${idToHex(oid)} is ${data.length} bytes, more than a message may carry (${limit}); split the object`)
    }
    commit.stores.set(oid, { oldSerial, data })
    this.#oneWay('store', commit.id, oid, oldSerial, data)
  }

  checkCurrentSerialInTransaction(oid: Oid, serial: Tid, txn: TransactionMetaData): void {
    const commit = this.#committing(txn, 'checkCurrentSerialInTransaction')
    this.#oneWay('checkCurrent', commit.id, oid, serial)
  }

  /** Undo transaction `tid` as part of the committing transaction (if the server's storage can). */
  undo(tid: Tid, txn: TransactionMetaData): Oid[] {
    this.#checkWritable('undo')
    const commit = this.#committing(txn, 'undo')
    const oids = this.#call('undo', commit.id, tid) as Oid[]
    for (const oid of oids) if (!commit.stores.has(oid)) commit.stores.set(oid, { oldSerial: tid, data: null })
    return oids
  }

  /** The newest transactions, newest first (for undo). */
  undoLog(limit = 20): { tid: Tid; time: Date; user: string; description: string }[] {
    return (this.#call('undoLog', limit) as [Tid, string, string][]).map(([tid, user, description]) => ({ tid, time: tidToDate(tid), user, description }))
  }

  tpc_vote(txn: TransactionMetaData): Oid[] {
    const commit = this.#committing(txn, 'tpc_vote')
    if (commit.voted) return [...commit.resolved]
    for (let round = 0; ; round++) {
      this.#checkGeneration(commit)
      let reply: { conflicts: [Oid, Tid][] }
      try {
        reply = this.#call('vote', commit.id) as { conflicts: [Oid, Tid][] }
      } finally {
        this.#deliver() // what others committed before us reaches the listeners first
      }
      this.#checkGeneration(commit)
      if (reply.conflicts.length === 0) break
      if (round >= 50) throw new ConflictError('conflicts kept coming back after 50 rounds of resolution')
      // Resolve here, where the application's classes are, and store the merged states.
      for (const [oid, committed] of reply.conflicts) {
        const pending = commit.stores.get(oid)
        if (pending === undefined) throw new ProtocolError(`the server reported a conflict on an object this transaction did not store (0x${idToHex(oid)})`)
        if (committed === 0n || pending.data === null) {
          throw new ConflictError(committed === 0n ? 'store of an object based on a revision that does not exist' : 'undo of an object that changed meanwhile', {
            oid,
            oldSerial: pending.oldSerial,
            committedSerial: committed === 0n ? null : committed,
          })
        }
        const data = tryToResolveConflict(oid, committed, pending.oldSerial, pending.data, (o, s) => this.loadSerial(o, s))
        commit.stores.set(oid, { oldSerial: committed, data })
        if (!commit.resolved.includes(oid)) commit.resolved.push(oid)
        this.#oneWay('store', commit.id, oid, committed, data)
      }
    }
    commit.voted = true
    return [...commit.resolved]
  }

  tpc_finish(txn: TransactionMetaData, onTid?: (tid: Tid) => void): Tid {
    const commit = this.#committing(txn, 'tpc_finish')
    if (!commit.voted) throw new StorageTransactionError(`${this.getName()}: tpc_finish before tpc_vote`)
    const oids = [...commit.stores.keys()]
    let tid: Tid
    try {
      this.#checkGeneration(commit)
      // Our records enter the cache as the reply is read: an invalidation the server sent after
      // it (another client committing right after us) must find them there and close them.
      tid = this.#callApplying(
        (value) => {
          const t = value as Tid
          this.#cache.invalidate(t, oids)
          for (const [oid, s] of commit.stores) if (s.data !== null) this.#cache.put(oid, { data: s.data, serial: t, next: null })
          if (t > this.#lastTid) this.#lastTid = t
          this.#noteTid(t)
          return t
        },
        'finish',
        commit.id,
      ) as Tid
    } finally {
      this.#commit = null
    }
    // What is queued now (others' commits that finished between our vote and our finish, or
    // right after ours) stays queued for the next boundary (lastTransaction, which the connection
    // calls at the end of this transaction): told now, it would reach the committing connection
    // while it finishes, which ignores invalidations, and be lost to it.
    commitsInThisThread++
    if (this.#justCommitted === null) queueMicrotask(() => (this.#justCommitted = null))
    this.#justCommitted = commitsInThisThread
    log('committed %s (%d objects)', idToHex(tid), oids.length)
    onTid?.(tid)
    for (const l of [...this.#listeners]) l.invalidate(tid, oids)
    return tid
  }

  tpc_abort(txn: TransactionMetaData): void {
    const commit = this.#commit
    if (commit === null || commit.txn !== txn) return
    this.#commit = null
    // Whatever of it is still buffered here never reaches the server; what did is forgotten there.
    this.#outgoing = []
    this.#outgoingBytes = 0
    if (!this.#closed) {
      this.#oneWay('abort', commit.id)
      this.#flush() // the abort goes now: the server releases the commit lock at once
    }
  }

  #checkGeneration(commit: Commit): void {
    this.#drain()
    if (commit.generation !== this.#generation || !this.#connected) {
      throw new ClientDisconnected(`${this.spec}: the connection to the server was lost during the commit; the transaction was aborted`)
    }
  }

  // --- history, iteration, pack ---------------------------------------------------------------------

  history(oid: Oid, size = 1): HistoryEntry[] {
    return (this.#call('history', oid, size) as [Tid, string, string, Record<string, unknown>, number][]).map(([tid, user, description, extension, sz]) => ({
      tid,
      time: tidToDate(tid),
      user,
      description,
      extension,
      size: sz,
    }))
  }

  *iterator(start: Tid = 0n, stop: Tid = MAX_TID): IterableIterator<TransactionRecord> {
    const budget = this.#frameBudget()
    let from = start
    // A transaction whose records came in part (the reply was cut within it), and how many came.
    let partial: TransactionRecord | null = null
    for (;;) {
      if (from > stop) return
      // `after`, the oid of the last record of the partial transaction: a count (`skip`, for
      // servers before `after`) skips records not sent yet if a pack removed some meanwhile.
      const page = this.#call('iterator', from, stop, 100, budget, partial?.records.length ?? 0, partial?.records.at(-1)?.oid ?? null) as IteratedTransaction[]
      if (page.length === 0) {
        if (partial !== null) throw new POSError(`${this.getName()}: transaction 0x${idToHex(partial.tid)} went away (packed?) while its records were being read`)
        return
      }
      for (const [tid, status, user, description, extension, records, cut] of page) {
        const got = records.map(([oid, data]) => ({ oid, tid, data }))
        let t: TransactionRecord
        if (partial !== null) {
          if (tid !== partial.tid) throw new POSError(`${this.getName()}: transaction 0x${idToHex(partial.tid)} went away (packed?) while its records were being read`)
          for (const r of got) partial.records.push(r)
          t = partial
        } else {
          t = { tid, status, user, description, extension, records: got }
        }
        partial = cut === true ? t : null
        if (partial === null) yield t
      }
      const last = page[page.length - 1]![0]
      from = partial !== null ? last : last + 1n
    }
  }

  pack(packTime: Date | Tid, gc = true): void {
    this.#checkWritable('pack')
    if (this.#commit !== null) throw new StorageTransactionError(`${this.getName()}: cannot pack while a transaction is committing`)
    this.#call('pack', typeof packTime === 'bigint' ? packTime : tidFromDate(packTime), gc)
    this.#cache.clear()
  }

  supportsUndo(): boolean {
    return this.#welcome?.supportsUndo ?? false
  }

  // --- listeners, life ----------------------------------------------------------------------------

  addListener(listener: InvalidationListener): void {
    this.#listeners.add(listener)
  }

  removeListener(listener: InvalidationListener): void {
    this.#listeners.delete(listener)
  }

  /** Synchronous round trips made so far, by method. */
  get roundTrips(): Record<string, number> {
    return Object.fromEntries(this.#callCounts)
  }

  /** Cache statistics: hits, misses, entries, bytes. */
  get cacheStats(): { hits: number; misses: number; entries: number; bytes: number } {
    return this.#cache.stats
  }

  /** The cache file: a version, whose server it is, the last tid, and the current revisions. */
  #readCacheFile(file: string): Tid | null {
    let content: unknown
    try {
      content = decodeBody(readFileSync(file))
    } catch {
      return null // none yet, or unreadable: start empty
    }
    const c = content as { v?: unknown; server?: unknown; storage?: unknown; lastTid?: unknown; entries?: unknown }
    if (c?.v !== 1 || c.server !== this.#cacheFileKey() || typeof c.lastTid !== 'bigint' || !Array.isArray(c.entries)) {
      log('%s: ignoring the cache file %s (another server or version)', this.spec, file)
      return null
    }
    for (const e of c.entries as unknown[]) {
      if (!Array.isArray(e) || typeof e[0] !== 'bigint' || !(e[1] instanceof Uint8Array) || typeof e[2] !== 'bigint') continue
      this.#cache.put(e[0], { data: e[1], serial: e[2], next: null })
    }
    this.#cacheFileTid = c.lastTid
    this.#cacheFileStorage = c.storage
    return c.lastTid
  }

  #cacheFileKey(): string {
    return `${this.host}:${this.port}/${this.storageName}`
  }

  #writeCacheFile(file: string): void {
    const entries: [Oid, Uint8Array, Tid][] = []
    for (const [oid, r] of this.#cache.entries()) if (r.next === null) entries.push([oid, r.data, r.serial])
    // Of this thread: clients in two threads of one process may share a cache file.
    const tmp = `${file}.${process.pid}.${threadId}.tmp`
    try {
      writeFileSync(tmp, encodeFrame({ v: 1, server: this.#cacheFileKey(), storage: this.#welcome?.storageName, lastTid: this.#lastTid, entries }).subarray(4))
      renameSync(tmp, file)
    } catch (error) {
      log('%s: could not write the cache file %s: %s', this.spec, file, (error as Error).message)
    }
  }

  close(): void {
    if (this.#closed) return
    if (this.#options.cacheFile && this.#welcome !== null) {
      try {
        this.#drain()
        this.#writeCacheFile(this.#options.cacheFile)
      } catch (error) {
        log('%s: cache file not written: %s', this.spec, (error as Error).message)
      }
    }
    this.#closed = true
    this.#commit = null
    this.#listeners.clear()
    this.#cache.clear()
    for (const [, a] of this.#async) a.reject(new ConnectionStateError(`storage ${this.getName()} is closed`))
    this.#async.clear()
    try {
      this.#reader.want(false) // (the worker reads the end of the connection)
      this.#post({ t: 'close' })
    } catch {
      // the port is gone already
    }
    this.#port.close()
    void this.#worker.terminate()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  get [IO_INTERNALS](): {
    worker: Worker
    ctl: Int32Array
    words: { FD: number; BUSY: number; READER: number; EPOCH: number }
    spinner: SpinWaiter
    stats: { spins: number; caught: number; directReads: number; handbacks: number }
  } {
    const stats = { spins: this.#spinner.spins, caught: this.#spinner.caught, directReads: this.#reader.reads, handbacks: this.#reader.handbacks }
    return { worker: this.#worker, ctl: this.#ctl, words: { FD, BUSY, READER, EPOCH }, spinner: this.#spinner, stats }
  }

  #checkOpen(): void {
    if (this.#closed) throw new ConnectionStateError(`storage ${this.getName()} is closed`)
  }

  #checkWritable(what: string): void {
    this.#checkOpen()
    if (this.isReadOnly()) throw new ReadOnlyError(`${what}: storage ${this.getName()} is read-only`)
  }

  #committing(txn: TransactionMetaData, what: string): Commit {
    this.#checkOpen()
    if (this.#commit === null) throw new StorageTransactionError(`${this.getName()}: ${what} without tpc_begin`)
    if (this.#commit.txn !== txn) throw new StorageTransactionError(`${this.getName()}: ${what} with a transaction that is not the committing one`)
    return this.#commit
  }
}

