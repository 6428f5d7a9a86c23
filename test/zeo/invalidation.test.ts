// Invalidations through the server, after ZEO's InvalidationTests and ConnectionTests: what one
// client commits reaches another's connections at their next transaction boundary; the cache
// never serves a stale snapshot; a reconnection verifies the cache; calls while disconnected fail
// with ClientDisconnected (a TransientError).
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

import { expect } from 'chai'
import { TransactionManager, TransientError } from '@wendelin/transaction'
import { DB, MAX_TID, PersistentMapping, SQLiteStorage, StorageNotShareableError, openStorage, specForAnotherThread, type Oid, type Tid } from '@wendelin/zodb'
import { ClientDisconnected, ClientStorage } from '@wendelin/zeo'

import { Item } from '../zodb/helpers.js'
import { commitRecords } from '../zodb/storage-conformance.js'
import { ServerProcess, TOKEN, commit, freshDir, here, removeScratch, serverForSuite, sleep, txn } from './helpers.js'

type AnyRoot = Record<string, unknown>

describe('zeo invalidations and the client cache', function () {
  const suite = serverForSuite()
  const { open } = suite

  /** A client storage of `name` through `proxy`, a DB over it and one connection (closed after the test). */
  function connectThrough(proxy: { port: number }, name: string) {
    const a = new ClientStorage({ host: '127.0.0.1', port: proxy.port, storage: name, token: TOKEN })
    const db = new DB(a)
    open.push(db)
    const tm = new TransactionManager({ explicit: true })
    return { a, tm, conn: db.open({ transactionManager: tm }) }
  }

  function dbOn(name: string, options = {}): { db: DB; tm: TransactionManager; root: () => AnyRoot; storage: ClientStorage } {
    const storage = suite.server.client(name, options)
    const db = new DB(storage)
    open.push(db)
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    return { db, tm, root: () => conn.root as AnyRoot, storage }
  }

  it("shows another client's commit at the next transaction boundary, not before", async () => {
    const name = await suite.server.addStorage()
    const a = dbOn(name)
    const b = dbOn(name)
    a.tm.begin()
    a.root().item = new Item('x', 1)
    a.tm.commit()
    b.tm.begin()
    const item = b.root().item as Item
    expect(item.value).to.equal(1)
    a.tm.begin()
    ;(a.root().item as Item).value = 2
    a.tm.commit()
    expect(item.value).to.equal(1) // b's snapshot is older than a's commit
    b.tm.abort()
    b.tm.begin()
    expect(item.value).to.equal(2)
    b.tm.abort()
  })

  it("never lets lastTransaction() run ahead of the invalidations a listener received", async () => {
    const name = await suite.server.addStorage()
    const a = suite.server.client(name)
    const b = suite.server.client(name)
    open.push(a, b)
    const heard: Tid[] = []
    b.addListener({ invalidate: (tid) => void heard.push(tid) })
    let serial = 0n
    const oid = a.newOid()
    for (let i = 0; i < 30; i++) {
      const txn = { user: '', description: '', extension: {} }
      a.tpc_begin(txn)
      a.store(oid, serial, new Uint8Array([i]), txn)
      a.tpc_vote(txn)
      serial = a.tpc_finish(txn)
      const last = b.lastTransaction()
      expect(last).to.equal(serial)
      expect(heard[heard.length - 1]).to.equal(last)
    }
    for (let i = 1; i < heard.length; i++) expect(heard[i]! > heard[i - 1]!).to.equal(true)
    expect(heard.length).to.equal(30)
  })

  it("sees at its next transaction a commit another client of this thread made right after its own, in the same synchronous run", async () => {
    const name = await suite.server.addStorage()
    const a = dbOn(name)
    const b = dbOn(name)
    a.tm.begin()
    a.root().item = new Item('x', 1)
    a.root().mine = new PersistentMapping()
    a.tm.commit()
    b.tm.begin()
    void (b.root().item as Item).value
    // No await from here on: a commits, b commits after it, then a begins.
    a.tm.begin()
    ;(a.root().mine as PersistentMapping).set('k', 1)
    a.tm.commit()
    ;(b.root().item as Item).value = 2
    b.tm.commit()
    a.tm.begin()
    expect((a.root().item as Item).value).to.equal(2) // b's commit returned before this transaction began
    a.tm.abort()
  })

  it('serves old snapshots and the new state correctly from its cache', async () => {
    const name = await suite.server.addStorage()
    const a = suite.server.client(name)
    const b = suite.server.client(name)
    open.push(a, b)
    const oid = a.newOid()
    const put = (old: Tid, byte: number): Tid => {
      const txn = { user: '', description: '', extension: {} }
      a.tpc_begin(txn)
      a.store(oid, old, new Uint8Array([byte]), txn)
      a.tpc_vote(txn)
      return a.tpc_finish(txn)
    }
    const t1 = put(0n, 1)
    const at1 = b.lastTransaction() + 1n
    expect([...b.loadBefore(oid, at1)!.data]).to.deep.equal([1])
    const hits = b.cacheStats.hits
    expect([...b.loadBefore(oid, at1)!.data]).to.deep.equal([1])
    expect(b.cacheStats.hits).to.equal(hits + 1) // served from the cache
    const t2 = put(t1, 2)
    const at2 = b.lastTransaction() + 1n
    expect(at2).to.equal(t2 + 1n)
    expect([...b.loadBefore(oid, at2)!.data]).to.deep.equal([2]) // not the cached revision 1
    const old = b.loadBefore(oid, at1)!
    expect([...old.data]).to.deep.equal([1])
    expect(old.nextSerial).to.equal(t2)
    expect([...b.loadBefore(oid, MAX_TID)!.data]).to.deep.equal([2])
  })

  it('prefetches asynchronously, and a later load finds the records in the cache', async () => {
    const name = await suite.server.addStorage()
    const a = suite.server.client(name)
    open.push(a)
    const txn = { user: '', description: '', extension: {} }
    const oids: Oid[] = []
    a.tpc_begin(txn)
    for (let i = 0; i < 50; i++) {
      const oid = a.newOid()
      oids.push(oid)
      a.store(oid, 0n, new Uint8Array([i]), txn)
    }
    a.tpc_vote(txn)
    a.tpc_finish(txn)
    const b = suite.server.client(name)
    open.push(b)
    b.lastTransaction()
    await b.prefetch(oids)
    const misses = b.cacheStats.misses
    const at = b.lastTransaction() + 1n
    for (let i = 0; i < 50; i++) expect([...b.loadBefore(oids[i]!, at)!.data]).to.deep.equal([i])
    expect(b.cacheStats.misses).to.equal(misses)
    // a load of an oid whose prefetch is in flight waits for that reply
    const c = suite.server.client(name)
    open.push(c)
    c.lastTransaction()
    const p = c.prefetch(oids)
    expect([...c.loadBefore(oids[7]!, c.lastTransaction() + 1n)!.data]).to.deep.equal([7])
    await p
  })

  /** A proxy (fixtures/coalescing-proxy) that delivers the reply to `holdMethod` together with
   * the invalidation of a commit of root[key] = value made while it held that reply. */
  async function coalescingProxy(
    name: string,
    holdMethod: string,
    key: string,
    value: unknown,
    mode: 'reply' | 'request' = 'reply',
  ): Promise<{ port: number; committed: Promise<Tid>; close(): void }> {
    const worker = new Worker(path.join(here, 'fixtures', 'coalescing-proxy.js'), {
      workerData: { upstream: suite.server.port, storage: name, token: TOKEN, holdMethod, key, value, mode },
    })
    let committed!: (tid: Tid) => void
    const done = new Promise<Tid>((r) => (committed = r))
    const port = await new Promise<number>((resolve, reject) => {
      worker.once('error', reject)
      worker.on('message', (m: { port?: number; committed?: Tid }) => {
        if (m.port !== undefined) resolve(m.port)
        if (m.committed !== undefined) committed(m.committed)
      })
    })
    return { port, committed: done, close: () => worker.postMessage('close') }
  }

  it('keeps a loaded record current only until the invalidation that came right behind its reply', async () => {
    // The reply to a load and the push of the next commit of the same object are read by the main
    // thread in one go (here forced by the proxy; on a loaded machine by chance). The record must
    // enter the cache before the invalidation is applied, or it stays "current" after its
    // successor was committed and every later snapshot reads it: a reader one commit behind.
    const name = await suite.server.addStorage()
    const b = dbOn(name)
    b.tm.begin()
    b.root().v = 1
    b.tm.commit()
    const proxy = await coalescingProxy(name, 'loadBefore', 'v', 2)
    open.push(proxy)
    const a = new ClientStorage({ host: '127.0.0.1', port: proxy.port, storage: name, token: TOKEN, prefetchBudget: 0 })
    open.push(a)
    const at = a.lastTransaction() + 1n
    const before = a.loadBefore(0n, at)! // its reply comes with the invalidation of the proxy's commit
    const t2 = await proxy.committed
    expect(before.serial < t2).to.equal(true)
    expect(a.lastTransaction()).to.equal(t2)
    expect(a.loadBefore(0n, t2 + 1n)!.serial).to.equal(t2)
    expect(a.loadBefore(0n, at)!.nextSerial).to.equal(t2)
  })

  it("shows at the next transaction a commit whose invalidation came right behind the reply to this client's finish", async () => {
    // The committing connection ignores invalidations while it finishes (they would be its own);
    // one of a later commit read with our finish reply must wait for the next boundary.
    const name = await suite.server.addStorage()
    const b = dbOn(name) // (the root exists before the proxy watches for a finish)
    b.tm.begin()
    b.root().theirs = 'none yet'
    b.tm.commit()
    const proxy = await coalescingProxy(name, 'finish', 'theirs', 'b')
    open.push(proxy)
    const { a, tm, conn } = connectThrough(proxy, name)
    tm.begin()
    ;(conn.root as AnyRoot).mine = 'a'
    tm.commit() // the proxy commits root.theirs = 'b' right after, and we hear of it with our reply
    const theirs = await proxy.committed
    tm.begin()
    expect(a.lastTransaction()).to.equal(theirs)
    expect((conn.root as AnyRoot).theirs).to.equal('b')
    expect((conn.root as AnyRoot).mine).to.equal('a')
    tm.abort()
  })

  it('shows at the next transaction a commit that finished between this client\'s vote and its finish', async () => {
    // Voters with no object in common do not wait for each other, so another client's commit can
    // finish (with a smaller tid) while ours is voted: its invalidation, read while our connection
    // finishes, must reach that connection at its next boundary.
    const name = await suite.server.addStorage()
    const b = dbOn(name)
    b.tm.begin()
    b.root().theirs = 'none yet'
    b.root().mine = new PersistentMapping()
    b.tm.commit()
    const proxy = await coalescingProxy(name, 'finish', 'theirs', 'b', 'request')
    open.push(proxy)
    const { a, tm, conn } = connectThrough(proxy, name)
    tm.begin()
    expect((conn.root as AnyRoot).theirs).to.equal('none yet')
    ;((conn.root as AnyRoot).mine as PersistentMapping).set('x', 1) // not the root: no conflict with theirs
    tm.commit()
    const theirs = await proxy.committed
    tm.begin()
    expect(a.lastTransaction() > theirs).to.equal(true) // ours came after theirs
    expect((conn.root as AnyRoot).theirs).to.equal('b')
    expect(((conn.root as AnyRoot).mine as PersistentMapping).get('x')).to.equal(1)
    tm.abort()
  })

  it('sends along the records a loaded record refers to, so a tree walk costs a round trip per bucket', async () => {
    const name = await suite.server.addStorage()
    const a = dbOn(name)
    a.tm.begin()
    const m = new PersistentMapping<string, Item>()
    for (let i = 0; i < 40; i++) m.set(`k${i}`, new Item(`i${i}`, i))
    a.root().m = m
    a.tm.commit()
    const b = dbOn(name)
    b.tm.begin()
    const before = b.storage.cacheStats
    let sum = 0
    for (const item of (b.root().m as PersistentMapping<string, Item>).values()) sum += item.value as number
    expect(sum).to.equal((39 * 40) / 2)
    const after = b.storage.cacheStats
    expect(after.hits - before.hits).to.be.at.least(40)
    b.tm.abort()
  })

  it('opens from its spec with openStorage (token from the environment)', async () => {
    const name = await suite.server.addStorage()
    const saved = process.env.WENDELIN_TOKEN
    process.env.WENDELIN_TOKEN = TOKEN
    try {
      const s = (await openStorage(suite.server.spec(name))) as ClientStorage
      open.push(s)
      expect(s).to.be.instanceOf(ClientStorage)
      expect(s.spec).to.equal(suite.server.spec(name))
      expect(s.shareable).to.equal(true)
      const ro = (await openStorage(suite.server.spec(name), { readOnly: true })) as ClientStorage
      open.push(ro)
      expect(ro.isReadOnly()).to.equal(true)
    } finally {
      if (saved === undefined) delete process.env.WENDELIN_TOKEN
      else process.env.WENDELIN_TOKEN = saved
    }
  })

  it('given its token in code, is not shareable unless another thread gets the token too (the spec carries no secret): a ZBigFile loader would fail to log in', async () => {
    const name = await suite.server.addStorage()
    const saved = { token: process.env.WENDELIN_TOKEN, file: process.env.WENDELIN_TOKEN_FILE }
    delete process.env.WENDELIN_TOKEN
    delete process.env.WENDELIN_TOKEN_FILE
    const tokenFile = path.join(freshDir(), 'token')
    writeFileSync(tokenFile, `${TOKEN}\n`)
    try {
      const inCode = suite.server.client(name)
      open.push(inCode)
      expect(inCode.shareable).to.equal(false)
      expect(() => specForAnotherThread(inCode)).to.throw(StorageNotShareableError, /tokenFile/)
      process.env.WENDELIN_TOKEN = TOKEN // what a worker started now inherits
      expect(inCode.shareable).to.equal(true)
      expect(specForAnotherThread(inCode)).to.equal(inCode.spec)
      delete process.env.WENDELIN_TOKEN
      const fromFile = suite.server.client(name, { token: undefined, tokenFile })
      open.push(fromFile)
      expect(fromFile.shareable).to.equal(true)
      expect(specForAnotherThread(fromFile)).to.equal(fromFile.spec)
    } finally {
      for (const [k, v] of [['WENDELIN_TOKEN', saved.token], ['WENDELIN_TOKEN_FILE', saved.file]] as const) {
        if (v === undefined) delete process.env[k]
        else process.env[k] = v
      }
    }
  })

  it('is opened again from its spec in a worker thread, which reads at an explicit snapshot', async () => {
    const name = await suite.server.addStorage()
    const a = suite.server.client(name)
    open.push(a)
    const oid = a.newOid()
    const put = (old: Tid, byte: number): Tid => {
      const txn = { user: '', description: '', extension: {} }
      a.tpc_begin(txn)
      a.store(oid, old, new Uint8Array([byte]), txn)
      a.tpc_vote(txn)
      return a.tpc_finish(txn)
    }
    const t1 = put(0n, 1)
    put(t1, 2)
    const code = `
      const { parentPort, workerData } = require('node:worker_threads')
      ;(async () => {
        await import('@wendelin/zeo')
        const { openStorage } = await import('@wendelin/zodb')
        const s = await openStorage(workerData.spec)
        const at1 = s.loadBefore(workerData.oid, workerData.t1 + 1n)
        const now = s.loadBefore(workerData.oid, s.lastTransaction() + 1n)
        s.close()
        parentPort.postMessage([[...at1.data], [...now.data]])
      })().catch((e) => parentPort.postMessage(String(e.stack)))`
    const saved = process.env.WENDELIN_TOKEN
    process.env.WENDELIN_TOKEN = TOKEN // the worker's environment: the spec carries no secret
    const { Worker } = await import('node:worker_threads')
    const w = new Worker(code, { eval: true, workerData: { spec: a.spec, oid, t1 } })
    if (saved === undefined) delete process.env.WENDELIN_TOKEN
    else process.env.WENDELIN_TOKEN = saved
    const result = await new Promise((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
    })
    await w.terminate()
    expect(result).to.deep.equal([[1], [2]])
  })

  it('keeps its cache in a file, verified with the invalidations at the next open', async () => {
    const name = await suite.server.addStorage()
    const cacheFile = path.join(freshDir(), 'client.cache')
    const a = suite.server.client(name)
    open.push(a)
    const x = a.newOid()
    const y = a.newOid()
    const txn = { user: '', description: '', extension: {} }
    a.tpc_begin(txn)
    a.store(x, 0n, new Uint8Array([1]), txn)
    a.store(y, 0n, new Uint8Array([1]), txn)
    a.tpc_vote(txn)
    const t1 = a.tpc_finish(txn)
    const first = suite.server.client(name, { cacheFile, prefetchBudget: 0 })
    const at = first.lastTransaction() + 1n
    first.loadBefore(x, at)
    first.loadBefore(y, at)
    first.close() // writes the file
    // x changes while no client has the file open
    const txn2 = { user: '', description: '', extension: {} }
    a.tpc_begin(txn2)
    a.store(x, t1, new Uint8Array([2]), txn2)
    a.tpc_vote(txn2)
    a.tpc_finish(txn2)
    const second = suite.server.client(name, { cacheFile, prefetchBudget: 0 })
    open.push(second)
    const now = second.lastTransaction() + 1n
    expect([...second.loadBefore(y, now)!.data]).to.deep.equal([1])
    expect(second.roundTrips.loadBefore ?? 0).to.equal(0) // y came from the file
    expect([...second.loadBefore(x, now)!.data]).to.deep.equal([2]) // x was invalidated: loaded anew
    expect(second.roundTrips.loadBefore).to.equal(1)
    // a file from another server (here: another storage name) is ignored
    const other = await suite.server.addStorage()
    const third = suite.server.client(other, { cacheFile })
    open.push(third)
    expect(() => third.loadBefore(y, third.lastTransaction() + 1n)).to.throw(/no object/)
  })

  it('refuses, at store, a record larger than a message may carry', async () => {
    const name = await suite.server.addStorage()
    const s = suite.server.client(name, { maxFrameBytes: 1024 })
    open.push(s)
    const txn = { user: '', description: '', extension: {} }
    s.tpc_begin(txn)
    expect(() => s.store(s.newOid(), 0n, new Uint8Array(2000), txn)).to.throw(/more than a message may carry/)
    s.tpc_abort(txn)
  })

  it('commits records larger than the socket takes at once, intact and in order with the calls after them', async () => {
    // Frames of MiBs fill the socket's buffer: the main thread's write stops part-way and the I/O
    // worker writes the rest; what follows must not overtake it.
    const name = await suite.server.addStorage()
    const a = suite.server.client(name)
    const b = suite.server.client(name)
    open.push(a, b)
    const records = [1, 3, 5].map((mib, k) => {
      const data = new Uint8Array(mib * 1024 * 1024)
      for (let i = 0; i < data.length; i += 4096) data[i] = (i / 4096 + k) & 0xff
      return data
    })
    const txn = { user: '', description: '', extension: {} }
    a.tpc_begin(txn)
    const oids = records.map((data) => {
      const oid = a.newOid()
      a.store(oid, 0n, data, txn)
      return oid
    })
    a.tpc_vote(txn)
    const tid = a.tpc_finish(txn)
    expect(b.lastTransaction()).to.equal(tid)
    oids.forEach((oid, k) => expect(Buffer.from(b.loadBefore(oid, MAX_TID)!.data).equals(records[k]!)).to.equal(true))
    expect(a.newOid() > oids[2]!).to.equal(true)
  })

  it('closes with `using` (Symbol.dispose)', async () => {
    const name = await suite.server.addStorage()
    let seen: ClientStorage | null = null
    {
      using s = suite.server.client(name)
      seen = s
      expect(s.closed).to.equal(false)
    }
    expect(seen.closed).to.equal(true)
  })

  it('serves a storage read-only when the server says so', async () => {
    const name = await suite.server.addStorage(undefined, true)
    const s = suite.server.client(name)
    open.push(s)
    expect(s.isReadOnly()).to.equal(true)
    expect(() => s.newOid()).to.throw(/read-only/)
  })
})

describe('zeo reconnection (ConnectionTests)', function () {
  this.timeout(30_000)
  after(removeScratch)

  it('drops a cache (its file, or its memory at a reconnection) made with another database served at the same address and name', async () => {
    /** A database whose object 1 is `value`, written now (before the cache file is). */
    const database = (value: number): { storage: SQLiteStorage; oid: Oid } => {
      const storage = new SQLiteStorage(path.join(freshDir(), 'db.sqlite'))
      const oid = storage.newOid()
      commitRecords(storage, [[oid, 0n, new Uint8Array([value])]])
      return { storage, oid }
    }
    /** A newer transaction (so that the database is not behind the cache), then close it. */
    const later = (storage: SQLiteStorage): string => {
      commitRecords(storage, [[storage.newOid(), 0n, new Uint8Array([7])]])
      storage.close()
      return storage.file
    }
    const other = database(9)
    const third = database(3)
    const first = await ServerProcess.start()
    const port = first.port
    let second: ServerProcess | undefined
    try {
      await first.command({ cmd: 'add', name: 'main', spec: `sqlite:${path.join(freshDir(), 'db.sqlite')}` })
      const a = first.client('main')
      const oid = a.newOid()
      expect(oid).to.equal(other.oid) // the same oid in every database
      commitRecords(a, [[oid, 0n, new Uint8Array([1])]])
      const cacheFile = path.join(freshDir(), 'client.cache')
      const c = first.client('main', { cacheFile, prefetchBudget: 0 })
      expect([...c.loadBefore(oid, c.lastTransaction() + 1n)!.data]).to.deep.equal([1])
      c.close() // writes the file
      a.close()
      await first.stop()
      // The cache file, at the next open against another database at the same address and name.
      second = await ServerProcess.start(port)
      await second.command({ cmd: 'add', name: 'main', spec: `sqlite:${later(other.storage)}` })
      const d = second.client('main', { cacheFile, prefetchBudget: 0, backoffMin: 20, backoffMax: 100 })
      try {
        expect([...d.loadBefore(oid, d.lastTransaction() + 1n)!.data]).to.deep.equal([9])
        // The cache in memory, when the client reconnects to yet another database.
        await second.stop()
        second = await ServerProcess.start(port)
        await second.command({ cmd: 'add', name: 'main', spec: `sqlite:${later(third.storage)}` })
        expect([...d.loadBefore(oid, d.lastTransaction() + 1n)!.data]).to.deep.equal([3])
      } finally {
        d.close()
      }
    } finally {
      await first.stop()
      await second?.stop()
    }
  })

  it('tells a client that missed too many changed objects to drop its cache, instead of a welcome it cannot read', async function () {
    this.timeout(120_000)
    // The welcome lists every oid changed since the client's last tid; bounded only by the number
    // of transactions, it could outgrow the client's frame limit, and the client then refused it,
    // reconnected and was refused again, for ever. Here the limit is 1 MiB (~110,000 oids) and
    // 150,000 objects change while the client's cache file waits.
    const server = await ServerProcess.start()
    try {
      const name = await server.addStorage()
      const cacheFile = path.join(freshDir(), 'client.cache')
      const a = server.client(name, { cacheFile, maxFrameBytes: 1024 * 1024 })
      a.lastTransaction()
      a.close() // writes the cache file: its last tid goes in the next handshake
      const b = server.client(name)
      try {
        const t = txn()
        b.tpc_begin(t)
        let last = 0n
        for (let i = 0; i < 150_000; i++) b.store((last = b.newOid()), 0n, new Uint8Array([i & 0xff]), t)
        b.tpc_vote(t)
        const tid = b.tpc_finish(t)
        const again = server.client(name, { cacheFile, maxFrameBytes: 1024 * 1024, connectTimeout: 5_000 })
        try {
          expect(again.loadBefore(last, tid + 1n)!.data).to.deep.equal(new Uint8Array([(150_000 - 1) & 0xff]))
        } finally {
          again.close()
        }
        // The server's history let the big transaction go (it keeps no more oids than a welcome
        // may list); a client behind by less is still verified, not made to drop its cache.
        const [x, y] = [b.newOid(), b.newOid()]
        const t1 = commit(b, [[x, 0n, new Uint8Array([1])], [y, 0n, new Uint8Array([1])]])
        const smallFile = path.join(freshDir(), 'client.cache')
        const first = server.client(name, { cacheFile: smallFile, prefetchBudget: 0 })
        first.loadBefore(x, t1 + 1n)
        first.loadBefore(y, t1 + 1n)
        first.close()
        commit(b, [[x, t1, new Uint8Array([2])]])
        const second = server.client(name, { cacheFile: smallFile, prefetchBudget: 0 })
        try {
          const now = second.lastTransaction() + 1n
          expect([...second.loadBefore(y, now)!.data]).to.deep.equal([1])
          expect(second.roundTrips.loadBefore ?? 0).to.equal(0) // from the file, verified
          expect([...second.loadBefore(x, now)!.data]).to.deep.equal([2])
        } finally {
          second.close()
        }
      } finally {
        b.close()
      }
    } finally {
      await server.stop()
    }
  })

  it('fails calls with ClientDisconnected while the server is down, reconnects, and verifies its cache', async () => {
    const file = path.join(freshDir(), 'db.sqlite')
    let server = await ServerProcess.start()
    const port = server.port
    await server.command({ cmd: 'add', name: 'main', spec: `sqlite:${file}` })
    const storage = new ClientStorage({ host: '127.0.0.1', port, storage: 'main', token: TOKEN, disconnectTimeout: 300, backoffMin: 20, backoffMax: 100 })
    const db = new DB(storage)
    try {
      const tm = new TransactionManager({ explicit: true })
      const conn = db.open({ transactionManager: tm })
      tm.begin()
      ;(conn.root as AnyRoot).item = new Item('x', 1)
      ;(conn.root as AnyRoot).other = new Item('y', 1)
      tm.commit()
      tm.begin()
      const item = (conn.root as AnyRoot).item as Item
      expect(item.value).to.equal(1) // loaded, cached
      tm.abort()

      expect(await server.stop()).to.equal(0)
      await sleep(50)
      let error: unknown
      try {
        tm.begin()
      } catch (e) {
        error = e
      }
      expect(error).to.be.instanceOf(ClientDisconnected)
      expect(error).to.be.instanceOf(TransientError)
      try {
        tm.abort()
      } catch {
        // nothing begun
      }
      // Meanwhile the file changes behind the client's back.
      const direct = new SQLiteStorage(file)
      const ddb = new DB(direct)
      const dtm = new TransactionManager()
      const dconn = ddb.open({ transactionManager: dtm })
      ;((dconn.root as AnyRoot).item as Item).value = 2
      dtm.commit()
      ddb.close()

      server = await ServerProcess.start(port)
      await server.command({ cmd: 'add', name: 'main', spec: `sqlite:${file}` })
      // The client reconnects by itself; its cached revision of item is now known stale.
      let begun = false
      for (let i = 0; i < 100 && !begun; i++) {
        try {
          tm.begin()
          begun = true
        } catch (e) {
          if (!(e instanceof ClientDisconnected)) throw e
          await sleep(50)
        }
      }
      expect(begun).to.equal(true)
      expect(((conn.root as AnyRoot).item as Item).value).to.equal(2)
      ;((conn.root as AnyRoot).other as Item).value = 5
      tm.commit()
    } finally {
      db.close()
      await server.stop()
    }
  })
})
