// Shared set-up for the network tests: a storage server in a child process, a raw protocol
// client for driving the server frame by frame, and scratch files.
import { type ChildProcess, fork } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { ClientStorage, FrameReader, PROTOCOL_VERSION, decodeBody, encodeFrame, type ClientStorageOptions } from '@wendelin/zeo'
import type { Oid, Tid } from '@wendelin/zodb'

export const here = path.dirname(fileURLToPath(import.meta.url))
export const TOKEN = 'test-token-' + 'x'.repeat(20)
export const scratch = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()

const dirs: string[] = []
export function freshDir(): string {
  const dir = mkdtempSync(path.join(scratch, 'wendelin-zeo-'))
  dirs.push(dir)
  return dir
}
export function removeScratch(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
}

let nextStorage = 1

/** A storage server in a child process. */
export class ServerProcess {
  child!: ChildProcess
  port = 0
  #replies = new Map<number, (m: Record<string, unknown>) => void>()
  #nextId = 1

  static async start(port = 0, options: Record<string, number> = {}): Promise<ServerProcess> {
    const s = new ServerProcess()
    await s.#start(port, options)
    return s
  }

  async #start(port: number, options: Record<string, number>): Promise<void> {
    this.child = fork(path.join(here, 'fixtures', 'server-process.js'), [String(port)], {
      env: { ...process.env, WENDELIN_TOKEN: TOKEN, ZEO_TEST_SERVER_OPTIONS: JSON.stringify(options) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.port = await new Promise<number>((resolve, reject) => {
      this.child.once('error', reject)
      this.child.once('exit', (code) => reject(new Error(`server exited early (${code})`)))
      this.child.once('message', (m: { port: number }) => resolve(m.port))
    })
    this.child.removeAllListeners('exit')
    this.child.on('message', (m: Record<string, unknown>) => {
      const r = this.#replies.get(m.id as number)
      if (r) {
        this.#replies.delete(m.id as number)
        r(m)
      }
    })
  }

  async command(m: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = this.#nextId++
    const p = new Promise<Record<string, unknown>>((resolve) => this.#replies.set(id, resolve))
    this.child.send({ ...m, id })
    const r = await p
    if (!r.ok) throw new Error(String(r.error))
    return r
  }

  /** Serve a new storage (default: a fresh SQLite file); returns its name. */
  async addStorage(spec?: string, readOnly = false): Promise<string> {
    const name = `s${nextStorage++}`
    await this.command({ cmd: 'add', name, spec: spec ?? `sqlite:${path.join(freshDir(), 'db.sqlite')}`, readOnly })
    return name
  }

  spec(name: string): string {
    return `zeo://127.0.0.1:${this.port}/${name}`
  }

  client(name: string, options: Partial<ClientStorageOptions> = {}): ClientStorage {
    return new ClientStorage({ host: '127.0.0.1', port: this.port, storage: name, token: TOKEN, ...options })
  }

  /** SIGTERM and wait for the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode
    const exited = new Promise<number | null>((resolve) => this.child.once('exit', (code) => resolve(code)))
    this.child.kill(signal)
    return await exited
  }
}

/** A client that speaks the protocol frame by frame (promises, no worker), for driving the server in tests. */
/** A storage server shared by the tests of one suite, and the clients they open. */
export interface SuiteServer {
  /** The server (started before the suite's first test). */
  readonly server: ServerProcess
  /** What a test opened: closed after each test, the last opened first. */
  readonly open: { close(): void }[]
  /** A client storage of the server's storage `name`, closed after the test. */
  client(name: string, options?: Partial<ClientStorageOptions>): ClientStorage
}

/** Starts a server before the suite this is called in and stops it after (see SuiteServer). */
export function serverForSuite(): SuiteServer {
  let started: ServerProcess | undefined
  const open: { close(): void }[] = []
  before(async () => {
    started = await ServerProcess.start()
  })
  after(async () => {
    await started?.stop()
    removeScratch()
  })
  afterEach(() => {
    for (const o of open.splice(0).reverse()) o.close()
  })
  const server = (): ServerProcess => {
    if (started === undefined) throw new Error('the suite server is not started yet: use it in tests and hooks')
    return started
  }
  return {
    get server() {
      return server()
    },
    open,
    client(name, options = {}) {
      const c = server().client(name, options)
      open.push(c)
      return c
    },
  }
}

export class RawClient {
  readonly socket: net.Socket
  readonly frames: unknown[] = []
  closed = false
  received = 0
  #reader = new FrameReader()
  #waiters = new Map<number, (m: unknown[]) => void>()
  #nextId = 1
  #onFrame: (() => void)[] = []

  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port })
    this.socket.on('data', (chunk: Buffer) => {
      this.received += chunk.length
      for (const body of this.#reader.push(chunk)) {
        const m = decodeBody(body) as unknown[]
        if (typeof m[0] === 'number' && m[0] > 0 && this.#waiters.has(m[0])) {
          this.#waiters.get(m[0])!(m)
          this.#waiters.delete(m[0])
        } else this.frames.push(m)
        for (const f of this.#onFrame.splice(0)) f()
      }
    })
    this.socket.on('error', () => {})
    this.socket.on('close', () => {
      this.closed = true
      for (const f of this.#onFrame.splice(0)) f()
    })
  }

  static async connect(port: number, storage: string, token = TOKEN, version = PROTOCOL_VERSION): Promise<RawClient> {
    const c = new RawClient(port)
    await new Promise<void>((resolve, reject) => {
      c.socket.once('connect', () => resolve())
      c.socket.once('error', reject)
    })
    c.write(['WZEO', version, token, storage, null, false])
    return c
  }

  /** Wait for the welcome (the first frame). */
  async welcome(): Promise<unknown[]> {
    while (this.frames.length === 0 && !this.closed) await new Promise<void>((r) => this.#onFrame.push(r))
    if (this.frames.length === 0) throw new Error('closed before the welcome')
    return this.frames.shift() as unknown[]
  }

  write(value: unknown): void {
    this.socket.write(encodeFrame(value))
  }

  oneWay(method: string, ...args: unknown[]): void {
    this.write([0, method, ...args])
  }

  /** Send a call; the promise resolves with [id, status, value]. */
  call(method: string, ...args: unknown[]): Promise<unknown[]> {
    const id = this.#nextId++
    const p = new Promise<unknown[]>((resolve) => this.#waiters.set(id, resolve))
    this.write([id, method, ...args])
    return p
  }

  waitClosed(timeout = 5000): Promise<boolean> {
    if (this.closed) return Promise.resolve(true)
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeout)
      this.socket.once('close', () => {
        clearTimeout(t)
        resolve(true)
      })
    })
  }

  close(): void {
    this.socket.destroy()
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Race a promise against a timeout: 'timeout' if it did not settle in time. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let t: NodeJS.Timeout
  const timeout = new Promise<'timeout'>((r) => (t = setTimeout(() => r('timeout'), ms)))
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(t!)
  }
}

/** Transaction metadata for a commit through the storage API. */
export const txn = () => ({ user: '', description: '', extension: {} })

/** Commits these records (oid, serial it replaces, data) through `c`: the new tid. */
export function commit(c: ClientStorage, records: [Oid, Tid, Uint8Array][]): Tid {
  const t = txn()
  c.tpc_begin(t)
  for (const [oid, serial, data] of records) c.store(oid, serial, data, t)
  c.tpc_vote(t)
  return c.tpc_finish(t)
}
