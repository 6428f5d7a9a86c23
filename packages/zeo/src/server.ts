// The storage server: serves named storages to network clients (ClientStorage) over the
// protocol in protocol.ts, as ZEO's StorageServer does for ZODB.
//
// Commits: tpc_begin and the stores are buffered per client without any lock. tpc_vote locks the
// objects the transaction writes (and those it read with readCurrent) against other voters: a
// voter that needs an object locked by a voted, unfinished transaction waits, in arrival order;
// voters with nothing in common go on at once. Holding its locks, the vote compares every stored
// object's serial with the current one and every readCurrent serial; conflicts go back to the
// client, which has the application's classes, resolves them, re-stores and votes again (the
// locks are released meanwhile). Without conflicts the transaction is voted: nothing another
// voter could do can make it fail any more. tpc_finish then writes it to the storage and commits
// it in one synchronous step (storage tpc_begin … tpc_finish, the storage's own lock held only
// there, not across the client's round trip), and replies once the storage says it is durable.
// The storage's listener pushes the invalidation to every other client, in tid order, before
// anything else is sent to them. A transaction with undos is written at vote, as before, and holds
// the whole storage until its finish.

import { createHash, timingSafeEqual } from 'node:crypto'
import net from 'node:net'
import tls from 'node:tls'

import createDebug from 'debug'
import {
  MAX_TID,
  POSKeyError,
  ReadConflictError,
  ReadOnlyError,
  StorageTransactionError,
  idToHex,
  referencesIn,
  type InvalidationListener,
  type LoadedRevision,
  type Oid,
  type Storage,
  type DataRecord,
  type Tid,
  type TransactionMetaData,
  type TransactionRecord,
} from '@wendelin/zodb'

import {
  ClientDisconnected,
  DEFAULT_MAX_FRAME,
  FrameReader,
  MAGIC,
  MAX_REPLY_BUDGET,
  type IteratedTransaction,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  ProtocolError,
  REPLY_RECORD_OVERHEAD,
  decodeBody,
  encodeFrame,
  errorToWire,
  frameParts,
  isBigint,
  isBytes,
} from './protocol.js'

const log = createDebug('wendelin:zeo:server')

/** A storage as the server serves it. */
export interface ServedStorageOptions {
  /** Refuse every write from every client of this storage. */
  readOnly?: boolean
}

export interface TlsServerOptions {
  key: string | Buffer
  cert: string | Buffer
  /** CA certificates to verify client certificates with (with requestCert). */
  ca?: string | Buffer
  requestCert?: boolean
}

export interface StorageServerOptions {
  /** The shared secret every client must present first. */
  token: string | Uint8Array
  /** Storages by name; more can be added with addStorage. */
  storages?: Record<string, Storage | ({ storage: Storage } & ServedStorageOptions)>
  tls?: TlsServerOptions
  /** Largest frame accepted from a client, in bytes (default 64 MiB). */
  maxFrameBytes?: number
  /** Calls of one client awaiting their reply at once (default 128); more drops the client. */
  maxPendingRequests?: number
  /** Simultaneous connections (default 256); more are closed at once. */
  maxConnections?: number
  /** Bytes of records one transaction may buffer (default 1 GiB). */
  maxTransactionBytes?: number
  /** How long a client may hold the commit lock between vote and finish, in ms (default 30000). */
  transactionTimeout?: number
  /** How long a new connection may take to present its token, in ms (default 5000). */
  handshakeTimeout?: number
  /** Transactions remembered for verifying reconnecting clients' caches (default 10000). */
  invalidationHistory?: number
  /**
   * How long an invalidation push may wait, in ms, to go out with others or with the client's
   * next reply (default 2; 0: at once). A push always precedes any later reply to that client.
   */
  invalidationDelay?: number
  /** Close the storages when the server closes (default true). */
  closeStorages?: boolean
}

/** One record of a load reply: `[oid, data, serial, nextSerial | nil]`. */
type Revision = [Oid, Uint8Array, Tid, Tid | null]

/** What a transaction's metadata counts against an iterator page's budget, besides its strings. */
const TRANSACTION_OVERHEAD = 64

/**
 * An iterator page for clients that send no budget (before it existed): up to `limit` whole
 * transactions (at most 1,000), ending after the one that passes 8 MiB.
 */
function iteratorPageWhole(transactions: Iterable<TransactionRecord>, limit: number): IteratedTransaction[] {
  const out: IteratedTransaction[] = []
  let bytes = 0
  for (const t of transactions) {
    out.push([t.tid, t.status, t.user, t.description, t.extension, t.records.map((r) => [r.oid, r.data])])
    for (const r of t.records) bytes += (r.data?.length ?? 0) + 16
    if (out.length >= Math.min(limit, 1000) || bytes > 8 * 1024 * 1024) break
  }
  return out
}

/**
 * An iterator page within `budget` bytes (records counting their data and REPLY_RECORD_OVERHEAD,
 * transactions their strings and TRANSACTION_OVERHEAD): up to `limit` transactions (at most
 * 1,000); the first record always comes. A transaction whose records do not all fit comes with
 * those that do and `true` after them (cut): the client asks again from its tid, with `after` the
 * oid of the last record it has (or `skip`, the number it has, from clients before `after`).
 * Records come in oid order, so that `after` holds even if a pack removed records of the
 * transaction between the two replies (a count then skipped records not sent yet). `skip` and
 * `after` apply to the transaction at `start` only (if it is gone, there is nothing to skip).
 */
function iteratorPage(transactions: Iterable<TransactionRecord>, start: Tid, limit: number, budget: number, skip: number, after: Oid | null): IteratedTransaction[] {
  const out: IteratedTransaction[] = []
  let bytes = 0
  for (const t of transactions) {
    // Their encoding as sent: JSON cannot size an extension with a bigint (msgpack carries it) and counted characters, not bytes.
    bytes += TRANSACTION_OVERHEAD + encodeFrame([t.user, t.description, t.extension]).length
    if (out.length > 0 && bytes > budget) break
    const all = byOid(t.records)
    const records: [Oid, Uint8Array | null][] = []
    let from = 0
    if (t.tid === start) {
      if (after === null) from = skip
      else while (from < all.length && all[from]!.oid <= after) from++
    }
    let cut = false
    for (let i = from; i < all.length; i++) {
      const r = all[i]!
      const size = (r.data?.length ?? 0) + REPLY_RECORD_OVERHEAD
      if (bytes + size > budget && (out.length > 0 || records.length > 0)) {
        cut = true
        break
      }
      records.push([r.oid, r.data])
      bytes += size
    }
    // Not one record of it fits after the transactions before it: it begins the next page.
    if (cut && records.length === 0) break
    out.push(cut ? [t.tid, t.status, t.user, t.description, t.extension, records, true] : [t.tid, t.status, t.user, t.description, t.extension, records])
    if (cut || out.length >= Math.min(limit, 1000)) break
  }
  return out
}

/** `records` in oid order (as they are, when they already are: SQLiteStorage's come so). */
function byOid(records: readonly DataRecord[]): readonly DataRecord[] {
  for (let i = 1; i < records.length; i++) {
    if (records[i - 1]!.oid > records[i]!.oid) return [...records].sort((x, y) => (x.oid < y.oid ? -1 : x.oid > y.oid ? 1 : 0))
  }
  return records
}

interface PendingStore {
  oldSerial: Tid
  data: Uint8Array
}

interface ServerTxn {
  id: number
  meta: TransactionMetaData
  stores: Map<Oid, PendingStore>
  readCurrent: Map<Oid, Tid>
  undos: Tid[]
  bytes: number
  error: Error | null
  state: 'open' | 'waiting' | 'voted'
  timer: NodeJS.Timeout | null
  /** Written to the storage at vote (it undoes transactions): holds the whole storage until finish. */
  exclusive: boolean
}

class Served {
  readonly clients = new Set<ClientConn>()
  /** Voted, unfinished transactions (their clients). */
  readonly voted = new Set<ClientConn>()
  /** The voted transaction written to the storage at vote (an undo), which holds it alone. */
  exclusive: ClientConn | null = null
  /** Objects written by voted transactions, and those they read with readCurrent (how many). */
  readonly writeLocks = new Map<Oid, ClientConn>()
  readonly readLocks = new Map<Oid, number>()
  /** Oids handed out by newOids and not committed yet: certainly new, no need to look them up. */
  readonly freshOids = new Set<Oid>()
  waiters: { conn: ClientConn; id: number }[] = []
  /** The client whose tpc_finish is running: the storage's listener skips it. */
  committer: ClientConn | null = null
  /**
   * Recent transactions, for verifying reconnecting clients: [(tid, oids)], from `recentFrom`; at
   * most `historySize` of them and MAX_WELCOME_OIDS oids in all (a client further behind is told
   * to drop its cache anyway).
   */
  recent: [Tid, Oid[]][] = []
  recentFrom: Tid
  /** How many oids `recent` lists. */
  #recentOids = 0
  /** Whether `recent` let older transactions go: a client from before `recentFrom` is too far behind. */
  #recentTrimmed = false
  /** The newest committed tid (a voted transaction's tid is not committed until its finish). */
  lastCommitted: Tid
  /** Set at shutdown: voters waiting for the lock are turned away. */
  closing = false
  readonly listener: InvalidationListener

  constructor(
    readonly name: string,
    readonly storage: Storage,
    readonly readOnly: boolean,
    readonly historySize: number,
  ) {
    this.recentFrom = storage.lastTransaction()
    this.lastCommitted = this.recentFrom
    this.listener = {
      invalidate: (tid, oids) => this.#broadcast(tid, oids),
      invalidateCache: () => {
        // The storage cannot say what changed: reconnecting clients must drop their caches.
        // (Connected clients are not told: no storage served today calls this.)
        this.recent = []
        this.#recentOids = 0
        this.recentFrom = MAX_TID
      },
    }
    storage.addListener(this.listener)
  }

  #broadcast(tid: Tid, oids: readonly Oid[]): void {
    const list = [...oids]
    if (tid > this.lastCommitted) this.lastCommitted = tid
    this.recent.push([tid, list])
    this.#recentOids += list.length
    let drop = 0
    let dropOids = 0
    while (drop < this.recent.length && (this.recent.length - drop > this.historySize || this.#recentOids - dropOids > MAX_WELCOME_OIDS)) {
      dropOids += this.recent[drop]![1].length
      drop++
    }
    if (drop > 0) {
      this.recentFrom = this.recent[drop - 1]![0]
      this.recent.splice(0, drop)
      this.#recentOids -= dropOids
      this.#recentTrimmed = true
    }
    const frame = encodeFrame([0, 'invalidate', tid, list])
    for (const c of this.clients) if (c !== this.committer) c.push(frame)
  }

  /**
   * (tid, oids) of every transaction after `since`, or null if they are not known — or too many
   * to tell in a welcome a client can read (over `limit` transactions or MAX_WELCOME_OIDS oids):
   * the client then drops its cache.
   */
  changesSince(since: Tid, limit: number): [Tid, Oid[]][] | null {
    const last = this.readLimit() ?? this.storage.lastTransaction()
    if (since > last) return null
    if (since === last) return []
    let oids = 0
    if (since >= this.recentFrom) {
      const out = this.recent.filter(([t]) => t > since)
      for (const [, o] of out) if ((oids += o.length) > MAX_WELCOME_OIDS) return null
      return out
    }
    // Only transactions from before this server started are read back from the storage.
    if (this.#recentTrimmed) return null
    const out: [Tid, Oid[]][] = []
    try {
      for (const t of this.storage.iterator(since + 1n, last)) {
        if (out.length >= limit || (oids += t.records.length) > MAX_WELCOME_OIDS) return null
        out.push([t.tid, t.records.map((r) => r.oid)])
      }
    } catch {
      return null
    }
    return out
  }

  /**
   * The newest tid other clients may read, or null for no limit. Between a transaction's vote
   * and its finish the storage may already show its records (SQLite does, to its own
   * connection): reads are then held to the last committed tid.
   */
  readLimit(): Tid | null {
    return this.exclusive !== null ? this.lastCommitted : null
  }

  /** A voted transaction's locks. */
  lock(conn: ClientConn, txn: ServerTxn): void {
    this.voted.add(conn)
    if (txn.exclusive) this.exclusive = conn
    for (const oid of txn.stores.keys()) this.writeLocks.set(oid, conn)
    for (const oid of txn.readCurrent.keys()) this.readLocks.set(oid, (this.readLocks.get(oid) ?? 0) + 1)
  }

  unlock(conn: ClientConn, txn: ServerTxn): void {
    if (!this.voted.delete(conn)) return
    if (this.exclusive === conn) this.exclusive = null
    for (const oid of txn.stores.keys()) if (this.writeLocks.get(oid) === conn) this.writeLocks.delete(oid)
    for (const oid of txn.readCurrent.keys()) {
      const n = (this.readLocks.get(oid) ?? 1) - 1
      if (n <= 0) this.readLocks.delete(oid)
      else this.readLocks.set(oid, n)
    }
  }

  close(closeStorage: boolean): void {
    this.storage.removeListener(this.listener)
    if (closeStorage && !this.storage.closed) this.storage.close()
  }
}

/**
 * Most oids a welcome lists (~9 bytes each): a client's frame limit (64 MiB by default, less if it
 * says so) must not be what keeps it from reconnecting. Beyond, it is told to drop its cache.
 */
const MAX_WELCOME_OIDS = 100_000

function digest(token: string | Uint8Array): Buffer {
  return createHash('sha256').update(token).digest()
}

const ONE_WAY = new Set(['tpc_begin', 'store', 'checkCurrent', 'abort'])

/** Most records one loadBeforeMany reply holds, the records `follow` adds included (as many as oids asked). */
const MAX_MANY = 10_000

/**
 * The bytes of a record up to the end of its class name (`[version, className, state]` in
 * MessagePack), to compare classes without decoding the record; null if it is not of that shape.
 */
function classPrefix(data: Uint8Array): Uint8Array | null {
  if (data[0] !== 0x93 || data.length < 3 || data[1]! >= 0x80) return null
  const h = data[2]!
  let end: number
  if (h >= 0xa0 && h <= 0xbf) end = 3 + (h - 0xa0)
  else if (h === 0xd9 && data.length > 3) end = 4 + data[3]!
  else if (h === 0xda && data.length > 4) end = 5 + ((data[3]! << 8) | data[4]!)
  else return null
  return end <= data.length ? data.subarray(0, end) : null
}

/** The server. Start it with `listen`, stop it with `close` (or `await using`). */
export class StorageServer {
  readonly #storages = new Map<string, Served>()
  readonly #tokenDigest: Buffer
  readonly #server: net.Server
  readonly #conns = new Set<ClientConn>()
  readonly options: Required<Omit<StorageServerOptions, 'storages' | 'tls' | 'token'>>
  #closing: Promise<void> | null = null
  #address: { host: string; port: number } | null = null

  constructor(options: StorageServerOptions) {
    if (options.token === undefined || options.token.length === 0) throw new TypeError('StorageServer: a token is required')
    this.#tokenDigest = digest(options.token)
    this.options = {
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME,
      maxPendingRequests: options.maxPendingRequests ?? 128,
      maxConnections: options.maxConnections ?? 256,
      maxTransactionBytes: options.maxTransactionBytes ?? 1024 * 1024 * 1024,
      transactionTimeout: options.transactionTimeout ?? 30_000,
      handshakeTimeout: options.handshakeTimeout ?? 5_000,
      invalidationHistory: options.invalidationHistory ?? 10_000,
      invalidationDelay: options.invalidationDelay ?? 2,
      closeStorages: options.closeStorages ?? true,
    }
    for (const [name, s] of Object.entries(options.storages ?? {})) {
      if ('storage' in s && !('loadBefore' in s)) this.addStorage(name, s.storage, { readOnly: s.readOnly ?? false })
      else this.addStorage(name, s as Storage)
    }
    const onConnection = (socket: net.Socket) => this.#accept(socket)
    this.#server = options.tls
      ? tls.createServer({ key: options.tls.key, cert: options.tls.cert, ca: options.tls.ca, requestCert: options.tls.requestCert ?? false }, onConnection)
      : net.createServer(onConnection)
    this.#server.on('error', (e) => log('server error: %s', e.message))
  }

  /** Serve `storage` under `name` (a client's spec ends with /name). */
  addStorage(name: string, storage: Storage, options: ServedStorageOptions = {}): void {
    // close() has closed (or passed) the storages already: this one would never be closed.
    if (this.#closing) throw new Error(`StorageServer.addStorage(${name}): the server is closed`)
    if (!/^[A-Za-z0-9_.-]{1,100}$/.test(name)) throw new TypeError(`not a valid storage name: ${JSON.stringify(name)}`)
    if (this.#storages.has(name)) throw new Error(`a storage named ${name} is already served`)
    const readOnly = (options.readOnly ?? false) || storage.isReadOnly()
    this.#storages.set(name, new Served(name, storage, readOnly, this.options.invalidationHistory))
    log('serving %s as %s%s', storage.getName(), name, readOnly ? ' (read-only)' : '')
  }

  get storageNames(): string[] {
    return [...this.#storages.keys()]
  }

  /** Listen on `port` (0: any free port) of `host` (default 127.0.0.1); resolves to the address. */
  listen(port = 0, host = '127.0.0.1'): Promise<{ host: string; port: number }> {
    // A closed server would accept only to drop every connection, and its socket, which close()
    // does not see any more, would keep the process alive.
    if (this.#closing) return Promise.reject(new Error('StorageServer.listen: the server is closed'))
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e)
      this.#server.once('error', onError)
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError)
        const a = this.#server.address() as net.AddressInfo
        this.#address = { host: a.address, port: a.port }
        log('listening on %s:%d', a.address, a.port)
        resolve(this.#address)
      })
    })
  }

  get address(): { host: string; port: number } | null {
    return this.#address
  }

  /** Number of connected sockets (authenticated or not). */
  get connectionCount(): number {
    return this.#conns.size
  }

  /**
   * Stop: accept nothing more, let a transaction that has voted finish (up to `grace` ms), abort
   * every other transaction, close the connections and (by default) the storages.
   */
  close(options: { grace?: number } = {}): Promise<void> {
    if (this.#closing) return this.#closing
    this.#closing = (async () => {
      const grace = options.grace ?? 5_000
      this.#server.close()
      for (const s of this.#storages.values()) {
        s.closing = true
        pump(s, this.options.transactionTimeout)
      }
      const deadline = Date.now() + grace
      const busy = () => [...this.#storages.values()].some((s) => s.voted.size > 0)
      while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
      for (const c of [...this.#conns]) c.shutdown()
      const until = Date.now() + 1000
      while (this.#conns.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5))
      for (const c of [...this.#conns]) c.destroy('server closed')
      for (const s of this.#storages.values()) s.close(this.options.closeStorages)
      log('closed')
    })()
    return this.#closing
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  #accept(socket: net.Socket): void {
    if (this.#closing || this.#conns.size >= this.options.maxConnections) {
      log('refusing a connection from %s (%s)', socket.remoteAddress, this.#closing ? 'closing' : 'too many connections')
      socket.destroy()
      return
    }
    const conn = new ClientConn(this, socket)
    this.#conns.add(conn)
    socket.once('close', () => this.#conns.delete(conn))
  }

  /** Constant-time check of a presented token. */
  _checkToken(token: unknown): boolean {
    if (typeof token !== 'string' && !(token instanceof Uint8Array)) return false
    return timingSafeEqual(digest(token), this.#tokenDigest)
  }

  _storage(name: string): Served | undefined {
    return this.#storages.get(name)
  }

  get _closing(): boolean {
    return this.#closing !== null
  }
}

let nextConnId = 1

/** The largest handshake frame the server reads (the token, the storage's name, a few numbers). */
const MAX_HANDSHAKE_BYTES = 64 * 1024

class ClientConn {
  readonly id = nextConnId++
  readonly #reader: FrameReader
  served: Served | null = null
  readOnly = false
  txn: ServerTxn | null = null
  pending = 0
  closed = false
  readonly #handshakeTimer: NodeJS.Timeout

  constructor(
    readonly server: StorageServer,
    readonly socket: net.Socket,
  ) {
    // Before the token is shown, only a handshake's worth: a peer without it must not make the
    // server hold maxFrameBytes per connection (up to maxConnections of them) until it times out.
    this.#reader = new FrameReader(server.options.maxFrameBytes, Math.min(server.options.maxFrameBytes, MAX_HANDSHAKE_BYTES))
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('error', (e) => log('client %d: %s', this.id, e.message))
    socket.on('close', () => this.#onClose())
    this.#handshakeTimer = setTimeout(() => this.destroy('no handshake in time'), server.options.handshakeTimeout)
    this.#handshakeTimer.unref()
  }

  send(frame: Uint8Array): void {
    if (this.closed) return
    this.#write([frame])
  }

  /** Waiting invalidations, then `parts` of a frame, in one write; drops a client that does not read. */
  #write(parts: readonly Uint8Array[]): void {
    if (this.#pushes.length > 0 || parts.length > 1) {
      this.socket.cork()
      this.#flushPushes()
      for (const p of parts) this.socket.write(p)
      this.socket.uncork()
    } else if (parts.length === 1) this.socket.write(parts[0]!)
    if (this.socket.writableLength > 256 * 1024 * 1024) this.destroy('does not read its replies')
  }

  /**
   * An invalidation push: it waits (up to the server's invalidationDelay) to go out with others
   * or with the next reply, so that a commit does not wake every other client at once.
   */
  push(frame: Uint8Array): void {
    if (this.closed) return
    const delay = this.server.options.invalidationDelay
    if (delay <= 0) {
      this.send(frame)
      return
    }
    this.#pushes.push(frame)
    if (this.#pushTimer === null) {
      this.#pushTimer = setTimeout(() => {
        this.#pushTimer = null
        if (!this.closed) this.#write([])
      }, delay)
    }
  }

  #pushes: Uint8Array[] = []
  #pushTimer: NodeJS.Timeout | null = null

  #flushPushes(): void {
    const pushes = this.#pushes
    this.#pushes = []
    if (this.#pushTimer !== null) {
      clearTimeout(this.#pushTimer)
      this.#pushTimer = null
    }
    for (const f of pushes) this.socket.write(f)
  }

  reply(id: number, result: unknown): void {
    this.pending--
    if (!this.closed) this.#write(frameParts([id, 0, result]))
  }

  replyError(id: number, error: unknown): void {
    this.pending--
    if (!this.closed) this.#write(frameParts([id, 1, errorToWire(error)]))
  }

  /** Drop this client (and only it): its transaction is aborted. */
  destroy(reason: string): void {
    if (this.closed) return
    log('dropping client %d: %s', this.id, reason)
    this.#cleanup()
    this.socket.destroy()
  }

  /** Clean end at server shutdown: abort the transaction, flush what is written, close. */
  shutdown(): void {
    if (this.closed) return
    if (this.#pushes.length > 0) this.#flushPushes()
    this.#cleanup()
    this.socket.end()
  }

  #cleanup(): void {
    this.closed = true
    clearTimeout(this.#handshakeTimer)
    if (this.#pushTimer !== null) clearTimeout(this.#pushTimer)
    this.#pushes = []
    this.abortTxn()
    this.served?.clients.delete(this)
  }

  #onClose(): void {
    if (!this.closed) log('client %d disconnected', this.id)
    this.#cleanup()
  }

  #onData(chunk: Buffer): void {
    if (this.closed) return
    try {
      for (const body of this.#reader.push(chunk)) {
        if (this.closed) return
        const msg = decodeBody(body)
        if (this.served === null) this.#handshake(msg)
        else this.#dispatch(msg)
      }
    } catch (error) {
      if (error instanceof ProtocolError) this.destroy(error.message)
      else this.destroy(`internal error: ${(error as Error).stack ?? String(error)}`)
    }
  }

  #handshake(msg: unknown): void {
    // [MAGIC, version, token, storage name, client's last tid or null, read-only]
    if (!Array.isArray(msg) || msg.length !== 6 || msg[0] !== MAGIC || !isVersion(msg[1])) {
      throw new ProtocolError('not a handshake of a protocol version this server speaks')
    }
    const version = msg[1]
    if (!this.server._checkToken(msg[2])) throw new ProtocolError('wrong token')
    const [, , , name, lastTid, readOnly] = msg as [string, number, unknown, unknown, unknown, unknown]
    if (typeof name !== 'string' || (lastTid !== null && !isBigint(lastTid)) || typeof readOnly !== 'boolean') {
      throw new ProtocolError('malformed handshake')
    }
    clearTimeout(this.#handshakeTimer)
    const served = this.server._storage(name)
    if (served === undefined) {
      this.send(encodeFrame([MAGIC, version, { error: `no storage named ${JSON.stringify(name)} is served here` }]))
      this.closed = true
      this.socket.end()
      return
    }
    this.served = served
    this.readOnly = readOnly || served.readOnly
    served.clients.add(this)
    const storage = served.storage
    let invalidations: [Tid, Oid[]][] | null = []
    if (lastTid !== null) invalidations = served.changesSince(lastTid, this.server.options.invalidationHistory)
    log('client %d authenticated for %s (last tid %s, %s)', this.id, name, lastTid === null ? 'none' : idToHex(lastTid), invalidations === null ? 'cache to drop' : `${invalidations.length} transactions to verify`)
    this.send(
      encodeFrame([
        MAGIC,
        version,
        {
          name,
          storageName: storage.getName(),
          readOnly: this.readOnly,
          lastTid: served.readLimit() ?? storage.lastTransaction(),
          supportsUndo: storage.supportsUndo() && typeof (storage as { undo?: unknown }).undo === 'function',
          invalidations,
        },
      ]),
    )
  }

  #dispatch(msg: unknown): void {
    if (!Array.isArray(msg) || msg.length < 2) throw new ProtocolError('a message is [id, method, ...args]')
    const [id, method] = msg as [unknown, unknown]
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffff_ffff || typeof method !== 'string') {
      throw new ProtocolError('a message is [id, method, ...args]')
    }
    const args = msg.slice(2)
    if (ONE_WAY.has(method)) {
      if (id !== 0) throw new ProtocolError(`${method} is one-way: its id must be 0`)
      this.#oneWay(method, args)
      return
    }
    if (id === 0) throw new ProtocolError(`${method} needs a reply: its id must not be 0`)
    if (++this.pending > this.server.options.maxPendingRequests) throw new ProtocolError('too many pending requests')
    let result: unknown
    try {
      result = this.#call(id, method, args)
    } catch (error) {
      if (error instanceof ProtocolError) throw error
      this.replyError(id, error)
      return
    }
    if (result !== DEFERRED) this.reply(id, result)
  }

  /** loadBefore as other clients may see it: nothing of a transaction voted but not finished. */
  #loadBefore(oid: Oid, tid: Tid): LoadedRevision | null {
    const limit = this.served!.readLimit()
    if (limit === null) return this.served!.storage.loadBefore(oid, tid)
    const rev = this.served!.storage.loadBefore(oid, tid > limit + 1n ? limit + 1n : tid)
    if (rev !== null && rev.nextSerial !== null && rev.nextSerial > limit) return { ...rev, nextSerial: null }
    return rev
  }

  /**
   * `[[oid, data, serial, nextSerial | nil], …]` of the objects that existed before `tid`. Read
   * after every commit this client was told of (tid > lastCommitted), the revisions are current:
   * the storage's own loadBeforeMany (one query per batch) gives them, next nil. An older snapshot
   * needs the real next serial for the client's cache: one loadBefore each.
   */
  #loadBeforeMany(oids: Oid[], tid: Tid): Revision[] {
    const served = this.served!
    const storage = served.storage
    const limit = served.readLimit()
    const before = limit !== null && tid > limit + 1n ? limit + 1n : tid
    const out: Revision[] = []
    if (before > served.lastCommitted && typeof storage.loadBeforeMany === 'function') {
      for (const [oid, rev] of storage.loadBeforeMany(oids, before)) out.push([oid, rev.data, rev.serial, null])
      return out
    }
    for (const oid of oids) {
      try {
        const rev = this.#loadBefore(oid, tid)
        if (rev !== null) out.push([oid, rev.data, rev.serial, rev.nextSerial])
      } catch (error) {
        if (!(error instanceof POSKeyError)) throw error
      }
    }
    return out
  }

  /**
   * #loadBeforeMany of `oids` in their order while the reply stays within `budget` bytes (each
   * record counting its data and REPLY_RECORD_OVERHEAD; the first record comes whatever its
   * size): the first that would not fit and those after it are left out, as if they had not
   * existed — the client asks again for what did not come. Loaded in
   * batches the budget left should hold at the mean size so far (one record first): file blocks
   * stop it after the first record or two, small objects come in a second query.
   */
  #loadBeforeManyWithin(oids: Oid[], tid: Tid, budget: number): Revision[] {
    const out: Revision[] = []
    let bytes = 0
    for (let k = 0; k < oids.length && bytes < budget; ) {
      const n = out.length === 0 ? 1 : Math.max(1, Math.ceil((budget - bytes) / (bytes / out.length)))
      const batch = oids.slice(k, k + n)
      k += batch.length
      for (const r of this.#loadBeforeMany(batch, tid)) {
        const size = r[1].length + REPLY_RECORD_OVERHEAD
        if (out.length > 0 && bytes + size > budget) return out
        out.push(r)
        bytes += size
      }
    }
    return out
  }

  /**
   * loadBeforeMany's optional `[next, fromEnd, count, budget]`: the walk of a chain of records
   * (B-tree leaves) goes on here instead of a round trip per record. `next` is the chain's next
   * record (loaded if not among `out`); the records it refers to are added to `out`, then those
   * of the record `fromEnd` places from the end of its references, `count` records in all, while
   * the whole reply (`out` included) stays within `budget` bytes: the first record that would not
   * fit ends it.
   */
  #follow(out: Revision[], tid: Tid, follow: unknown): void {
    if (!Array.isArray(follow) || follow.length !== 4) throw new ProtocolError('malformed loadBeforeMany follow')
    const [first, fromEnd, count, budget] = follow as unknown[]
    const small = (n: unknown, max: number): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max
    if (!isBigint(first) || !small(fromEnd, 10_000) || fromEnd < 1 || !small(count, 16) || !small(budget, MAX_REPLY_BUDGET)) {
      throw new ProtocolError('malformed loadBeforeMany follow')
    }
    const have = new Map<Oid, Uint8Array>()
    for (const r of out) have.set(r[0], r[1])
    let bytes = 0
    for (const r of out) bytes += r[1].length + REPLY_RECORD_OVERHEAD
    /** Add one record if it fits; false once it did not, or the reply's cap of records is reached. */
    const add = (r: Revision): boolean => {
      const size = r[1].length + REPLY_RECORD_OVERHEAD
      if (bytes + size > budget) return false
      out.push(r)
      have.set(r[0], r[1])
      bytes += size
      return bytes < budget && out.length < MAX_MANY
    }
    /** How many records to load at once: as many as the budget left holds at the mean size (1 to 64; 4 while nothing is known). */
    const batchSize = (): number => {
      if (out.length === 0) return 4
      return Math.max(1, Math.min(64, Math.ceil((budget - bytes) / (bytes / out.length))))
    }
    let next: Oid = first
    /** The class of the chain's records (the record `next` was reached from), once known. */
    let chainClass: Uint8Array | null = null
    for (let i = 0; i < count && bytes < budget && out.length < MAX_MANY; i++) {
      let data = have.get(next)
      if (data === undefined) {
        const added = this.#loadBeforeMany([next], tid)[0]
        if (added === undefined) return
        data = added[1]
        if (!add(added)) return
      }
      // A chain's records are of one class: past the last leaf its last reference is a value.
      const cls = classPrefix(data)
      if (cls === null || (chainClass !== null && Buffer.compare(cls, chainClass) !== 0)) return
      chainClass = cls
      let refs: Oid[]
      try {
        refs = referencesIn(data)
      } catch {
        return // not a record this server can read
      }
      // Each object once (a record may refer to one many times), loaded in batches the budget
      // left should hold and added one by one, so that big records (file blocks) stop it at the
      // budget.
      const wanted = [...new Set(refs)].filter((o) => !have.has(o))
      for (let k = 0; k < wanted.length; ) {
        const n = Math.min(batchSize(), MAX_MANY - out.length)
        const batch = wanted.slice(k, k + n)
        k += n
        for (const r of this.#loadBeforeMany(batch, tid)) if (!add(r)) return
      }
      if (refs.length < fromEnd) return
      next = refs[refs.length - fromEnd]!
    }
  }

  #storage(): Storage {
    return this.served!.storage
  }

  #checkWritable(what: string): void {
    if (this.readOnly) throw new ReadOnlyError(`${what}: storage ${this.served!.name} is read-only for this client`)
  }

  #oneWay(method: string, args: unknown[]): void {
    if (method === 'tpc_begin') {
      const [txnId, user, description, extension] = args
      if (typeof txnId !== 'number' || typeof user !== 'string' || typeof description !== 'string' || typeof extension !== 'object' || extension === null) {
        throw new ProtocolError('malformed tpc_begin')
      }
      this.abortTxn()
      this.txn = {
        id: txnId,
        meta: { user, description, extension: extension as Record<string, unknown> },
        stores: new Map(),
        readCurrent: new Map(),
        undos: [],
        bytes: 0,
        error: null,
        state: 'open',
        timer: null,
        exclusive: false,
      }
      if (this.readOnly) this.txn.error = new ReadOnlyError(`tpc_begin: storage ${this.served!.name} is read-only for this client`)
      return
    }
    if (method === 'abort') {
      const [txnId] = args
      if (typeof txnId !== 'number') throw new ProtocolError('malformed abort')
      if (this.txn?.id === txnId) this.abortTxn()
      return
    }
    const txnId = args[0]
    if (typeof txnId !== 'number') throw new ProtocolError(`malformed ${method}`)
    const txn = this.txn
    if (method === 'store') {
      const [, oid, oldSerial, data] = args
      if (args.length !== 4 || !isBigint(oid) || !isBigint(oldSerial) || !isBytes(data)) throw new ProtocolError('malformed store')
      if (txn === null || txn.id !== txnId || txn.state !== 'open') return // reported at vote
      if (txn.error) return
      txn.bytes += data.length
      if (txn.bytes > this.server.options.maxTransactionBytes) {
        txn.error = new StorageTransactionError(`transaction larger than the server's limit of ${this.server.options.maxTransactionBytes} bytes`)
        txn.stores.clear()
        return
      }
      txn.stores.set(oid, { oldSerial, data })
    } else if (method === 'checkCurrent') {
      const [, oid, serial] = args
      if (args.length !== 3 || !isBigint(oid) || !isBigint(serial)) throw new ProtocolError('malformed checkCurrent')
      if (txn === null || txn.id !== txnId || txn.state !== 'open') return
      if (!txn.readCurrent.has(oid)) txn.readCurrent.set(oid, serial)
    }
  }

  #txn(txnId: unknown, what: string): ServerTxn {
    if (typeof txnId !== 'number') throw new ProtocolError(`malformed ${what}`)
    const txn = this.txn
    if (txn === null || txn.id !== txnId) throw new StorageTransactionError(`${what}: no such transaction is in progress on the server (was the connection lost?)`)
    return txn
  }

  #call(id: number, method: string, args: unknown[]): unknown {
    const storage = this.#storage()
    switch (method) {
      case 'sync':
        return this.served!.readLimit() ?? storage.lastTransaction()
      case 'loadBefore': {
        const [oid, tid, budget] = args
        if (!isBigint(oid) || !isBigint(tid) || typeof budget !== 'number') throw new ProtocolError('malformed loadBefore')
        const rev = this.#loadBefore(oid, tid)
        if (rev === null) return [null, []]
        const extras: Revision[] = []
        // The records it refers to come along while the whole reply stays within the budget
        // (at most MAX_REPLY_BUDGET): the first that would not fit ends them.
        const limit = Math.min(budget, MAX_REPLY_BUDGET)
        let bytes = rev.data.length + REPLY_RECORD_OVERHEAD
        if (bytes < limit) {
          let refs: Oid[] = []
          try {
            refs = referencesIn(rev.data)
          } catch {
            refs = []
          }
          const seen = new Set<Oid>([oid])
          for (const ref of refs) {
            if (extras.length >= 2000) break
            if (seen.has(ref)) continue
            seen.add(ref)
            let r: LoadedRevision | null
            try {
              r = this.#loadBefore(ref, tid)
            } catch (error) {
              if (!(error instanceof POSKeyError)) throw error
              continue
            }
            if (r === null) continue
            bytes += r.data.length + REPLY_RECORD_OVERHEAD
            if (bytes > limit) break
            extras.push([ref, r.data, r.serial, r.nextSerial])
          }
        }
        return [[rev.data, rev.serial, rev.nextSerial], extras]
      }
      case 'loadMany': {
        const [pairs] = args
        if (!Array.isArray(pairs) || pairs.length > 10_000) throw new ProtocolError('malformed loadMany')
        return pairs.map((p) => {
          if (!Array.isArray(p) || !isBigint(p[0]) || !isBigint(p[1])) throw new ProtocolError('malformed loadMany')
          try {
            const r = this.#loadBefore(p[0], p[1])
            return r === null ? null : [r.data, r.serial, r.nextSerial]
          } catch (error) {
            if (error instanceof POSKeyError) return 0
            throw error
          }
        })
      }
      case 'loadBeforeMany': {
        const [oids, tid, follow, budget] = args
        if (!Array.isArray(oids) || oids.length > MAX_MANY || !isBigint(tid) || !oids.every(isBigint)) throw new ProtocolError('malformed loadBeforeMany')
        if (budget !== undefined && budget !== null && !(typeof budget === 'number' && Number.isInteger(budget) && budget > 0 && budget <= MAX_REPLY_BUDGET)) {
          throw new ProtocolError('malformed loadBeforeMany budget')
        }
        const out = typeof budget === 'number' ? this.#loadBeforeManyWithin(oids, tid, budget) : this.#loadBeforeMany(oids, tid)
        if (follow !== undefined && follow !== null) this.#follow(out, tid, follow)
        return out
      }
      case 'loadSerial': {
        const [oid, serial] = args
        if (!isBigint(oid) || !isBigint(serial)) throw new ProtocolError('malformed loadSerial')
        const limit = this.served!.readLimit()
        if (limit !== null && serial > limit) throw new POSKeyError(oid, `no revision written by transaction 0x${idToHex(serial)}`)
        return storage.loadSerial(oid, serial)
      }
      case 'newOids': {
        const [n] = args
        if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 10_000) throw new ProtocolError('malformed newOids')
        this.#checkWritable('newOid')
        const out: Oid[] = []
        const fresh = this.served!.freshOids
        if (fresh.size + n > FRESH_OIDS_MAX) fresh.clear() // (forgotten ones are looked up at vote)
        for (let i = 0; i < n; i++) {
          const oid = storage.newOid()
          fresh.add(oid)
          out.push(oid)
        }
        return out
      }
      case 'len':
        return storage.len()
      case 'getSize':
        return storage.getSize()
      case 'history': {
        const [oid, size] = args
        if (!isBigint(oid) || typeof size !== 'number') throw new ProtocolError('malformed history')
        const limit = this.served!.readLimit()
        let entries = storage.history(oid, limit === null ? size : size + 1)
        if (limit !== null) {
          entries = entries.filter((h) => h.tid <= limit).slice(0, size)
          if (entries.length === 0) throw new POSKeyError(oid)
        }
        return entries.map((h) => [h.tid, h.user, h.description, h.extension, h.size])
      }
      case 'iterator': {
        const [start, stop, limit, budget, skip, after] = args
        if (!isBigint(start) || !isBigint(stop) || typeof limit !== 'number') throw new ProtocolError('malformed iterator')
        const within = budget !== undefined && budget !== null
        if (within && !(Number.isInteger(budget) && (budget as number) > 0 && (budget as number) <= MAX_REPLY_BUDGET)) throw new ProtocolError('malformed iterator budget')
        if (skip !== undefined && skip !== null && !(within && Number.isInteger(skip) && (skip as number) >= 0)) throw new ProtocolError('malformed iterator skip')
        if (after !== undefined && after !== null && !(within && isBigint(after))) throw new ProtocolError('malformed iterator after')
        const readLimit = this.served!.readLimit()
        const transactions = storage.iterator(start, readLimit !== null && readLimit < stop ? readLimit : stop)
        return within ? iteratorPage(transactions, start, limit, budget as number, (skip as number | null | undefined) ?? 0, (after as Oid | null | undefined) ?? null) : iteratorPageWhole(transactions, limit)
      }
      case 'pack': {
        const [tid, gc] = args
        if (!isBigint(tid) || typeof gc !== 'boolean') throw new ProtocolError('malformed pack')
        this.#checkWritable('pack')
        storage.pack(tid, gc)
        return null
      }
      case 'undoLog': {
        const [limit] = args
        if (typeof limit !== 'number') throw new ProtocolError('malformed undoLog')
        const s = storage as Storage & { undoLog?: (n: number) => { tid: Tid; user: string; description: string }[] }
        if (typeof s.undoLog !== 'function') return []
        return s.undoLog(limit).map((e) => [e.tid, e.user, e.description])
      }
      case 'undo': {
        const [txnId, tid] = args
        if (!isBigint(tid)) throw new ProtocolError('malformed undo')
        this.#checkWritable('undo')
        const txn = this.#txn(txnId, 'undo')
        if (typeof (storage as { undo?: unknown }).undo !== 'function') throw new StorageTransactionError(`${storage.getName()} does not support undo`)
        const oids: Oid[] = []
        for (const t of storage.iterator(tid, tid)) for (const r of t.records) oids.push(r.oid)
        txn.undos.push(tid)
        txn.exclusive = true
        return oids
      }
      case 'vote': {
        const txn = this.#txn(args[0], 'tpc_vote')
        if (txn.error) throw txn.error
        if (txn.state === 'voted') return { conflicts: [] }
        if (txn.state === 'waiting') throw new ProtocolError('vote while already voting')
        txn.state = 'waiting'
        this.served!.waiters.push({ conn: this, id })
        pump(this.served!, this.server.options.transactionTimeout)
        return DEFERRED
      }
      case 'finish': {
        const txn = this.#txn(args[0], 'tpc_finish')
        const served = this.served!
        if (txn.state !== 'voted' || !served.voted.has(this)) throw new StorageTransactionError('tpc_finish before tpc_vote')
        served.committer = this
        let tid: Tid
        try {
          // Voted: its objects are locked and were checked, so the storage's own vote finds no
          // conflict (unless another process wrote the storage meanwhile, see the README).
          if (!txn.exclusive) writeToStorage(storage, txn)
          tid = storage.tpc_finish(txn.meta)
        } catch (error) {
          try {
            storage.tpc_abort(txn.meta)
          } catch {
            // nothing to abort
          }
          throw error
        } finally {
          served.committer = null
          this.txn = null
          if (txn.timer) clearTimeout(txn.timer)
          served.unlock(this, txn)
          for (const [oid, st] of txn.stores) if (st.oldSerial === 0n) served.freshOids.delete(oid)
          pump(served, this.server.options.transactionTimeout)
        }
        log('client %d committed %s to %s (%d objects)', this.id, idToHex(tid), served.name, txn.stores.size)
        return tid
      }
      default:
        throw new ProtocolError(`unknown method ${JSON.stringify(method).slice(0, 40)}`)
    }
  }

  /** Forget this client's transaction; if it holds the commit lock, abort it in the storage. */
  abortTxn(): void {
    const txn = this.txn
    const served = this.served
    if (txn === null || served === null) return
    this.txn = null
    if (txn.timer) clearTimeout(txn.timer)
    const waited = served.waiters.filter((w) => w.conn === this)
    if (waited.length > 0) {
      served.waiters = served.waiters.filter((w) => w.conn !== this)
      // Its vote gets its one reply (a client still connected counts it as pending), and the
      // voters that waited only behind its claims may go on now.
      for (const w of waited) this.replyError(w.id, new StorageTransactionError('tpc_vote: the transaction was aborted while it waited for its locks'))
      pump(served, this.server.options.transactionTimeout)
    }
    if (served.voted.has(this)) {
      if (txn.exclusive) {
        try {
          served.storage.tpc_abort(txn.meta)
        } catch (error) {
          log('abort on %s failed: %s', served.name, (error as Error).message)
        }
      }
      served.unlock(this, txn)
      pump(served, this.server.options.transactionTimeout)
    }
  }
}

const DEFERRED = Symbol('deferred')

function isVersion(v: unknown): v is number {
  return typeof v === 'number' && v >= MIN_PROTOCOL_VERSION && v <= PROTOCOL_VERSION
}

/** The most oids handed out and not committed that a served storage remembers as new. */
const FRESH_OIDS_MAX = 1 << 20

/**
 * Whether a waiting voter may take its locks now: none of its objects is locked by a voted
 * transaction, or claimed by a voter that came before it and still waits (arrival order).
 */
function canVote(served: Served, txn: ServerTxn, claimedWrites: Set<Oid>, claimedReads: Set<Oid>, earlierWaiting: boolean): boolean {
  if (served.exclusive !== null) return false
  if (txn.exclusive) return served.voted.size === 0 && !earlierWaiting
  for (const oid of txn.stores.keys()) {
    if (served.writeLocks.has(oid) || served.readLocks.has(oid) || claimedWrites.has(oid) || claimedReads.has(oid)) return false
  }
  for (const oid of txn.readCurrent.keys()) if (served.writeLocks.has(oid) || claimedWrites.has(oid)) return false
  return true
}

/** Let waiting voters vote, in arrival order, as far as their objects are not locked. */
function pump(served: Served, timeout: number): void {
  if (served.waiters.length === 0) return
  const claimedWrites = new Set<Oid>()
  const claimedReads = new Set<Oid>()
  const still: { conn: ClientConn; id: number }[] = []
  let exclusiveWaits = false
  for (const w of served.waiters) {
    const { conn, id } = w
    const txn = conn.txn
    if (conn.closed || txn === null || txn.state !== 'waiting') continue
    if (served.closing) {
      txn.state = 'open'
      conn.replyError(id, new ClientDisconnected('the server is shutting down: the transaction was not committed'))
      continue
    }
    if (exclusiveWaits || !canVote(served, txn, claimedWrites, claimedReads, still.length > 0)) {
      still.push(w)
      if (txn.exclusive) exclusiveWaits = true // nobody passes a waiting undo
      for (const oid of txn.stores.keys()) claimedWrites.add(oid)
      for (const oid of txn.readCurrent.keys()) claimedReads.add(oid)
      continue
    }
    let conflicts: [Oid, Tid][]
    try {
      conflicts = vote(served, txn)
    } catch (error) {
      if (txn.exclusive) {
        try {
          served.storage.tpc_abort(txn.meta)
        } catch {
          // already aborted
        }
      }
      txn.state = 'open'
      conn.replyError(id, error)
      continue
    }
    if (conflicts.length > 0) {
      txn.state = 'open'
      conn.reply(id, { conflicts })
      continue
    }
    txn.state = 'voted'
    served.lock(conn, txn)
    txn.timer = setTimeout(() => {
      log('client %d held its commit locks on %s longer than %d ms: aborting its transaction', conn.id, served.name, timeout)
      conn.destroy('transaction timeout')
    }, timeout)
    txn.timer.unref()
    conn.reply(id, { conflicts: [] })
  }
  served.waiters = still
}

function currentSerial(storage: Storage, oid: Oid): Tid {
  try {
    const rev = storage.loadBefore(oid, MAX_TID)
    if (rev !== null) return rev.serial
    return storage.history(oid, 1)[0]?.tid ?? 0n
  } catch (error) {
    if (error instanceof POSKeyError) return 0n
    throw error
  }
}

/**
 * The vote, its objects free of other voters: the conflicts to resolve on the client, or none
 * (voted). A transaction with undos is written to the storage now and holds it until finish.
 */
function vote(served: Served, txn: ServerTxn): [Oid, Tid][] {
  const storage = served.storage
  storage.lastTransaction() // external commits reach the listeners (and so the clients) first
  for (const [oid, expected] of txn.readCurrent) {
    const current = currentSerial(storage, oid)
    if (current !== expected) {
      throw new ReadConflictError('an object read with readCurrent() was changed by another transaction', { oid, oldSerial: expected, committedSerial: current })
    }
  }
  const conflicts: [Oid, Tid][] = []
  for (const [oid, pending] of txn.stores) {
    if (pending.oldSerial === 0n && served.freshOids.has(oid)) continue // handed out by us, not committed
    const current = currentSerial(storage, oid)
    if (current !== pending.oldSerial) conflicts.push([oid, current])
  }
  if (conflicts.length > 0) return conflicts
  if (txn.exclusive) writeToStorage(storage, txn)
  return []
}

/** The storage's tpc_begin, undos, stores, readCurrent checks and tpc_vote for `txn`. */
function writeToStorage(storage: Storage, txn: ServerTxn): void {
  storage.tpc_begin(txn.meta)
  try {
    const s = storage as Storage & { undo?: (tid: Tid, txn: TransactionMetaData) => Oid[] }
    for (const tid of txn.undos) s.undo!(tid, txn.meta)
    for (const [oid, pending] of txn.stores) storage.store(oid, pending.oldSerial, pending.data, txn.meta)
    for (const [oid, serial] of txn.readCurrent) storage.checkCurrentSerialInTransaction(oid, serial, txn.meta)
    storage.tpc_vote(txn.meta)
  } catch (error) {
    storage.tpc_abort(txn.meta)
    throw error
  }
}
