// The client's I/O worker and the main thread's direct writes to its socket: a worker that dies
// without closing its socket cleanly leaves nothing written elsewhere and no call hanging, the
// socket is never closed under a direct write, and cached records do not pin the buffers of the
// replies they came in.
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs'
import path from 'node:path'

import { expect } from 'chai'
import type { Oid, Tid } from '@wendelin/zodb'
import { ClientDisconnected, IO_INTERNALS } from '@wendelin/zeo'

import { ServerProcess, commit, freshDir, serverForSuite, sleep, txn } from './helpers.js'

describe('zeo client I/O worker', function () {
  const suite = serverForSuite()
  const { open, client } = suite

  /** A storage with `n` one-byte objects; their oids and the tid. */
  async function objects(n: number): Promise<{ name: string; oids: Oid[]; tid: Tid }> {
    const name = await suite.server.addStorage()
    const w = client(name)
    const oids = Array.from({ length: n }, () => w.newOid())
    const tid = commit(
      w,
      oids.map((oid, i) => [oid, 0n, new Uint8Array([i])]),
    )
    return { name, oids, tid }
  }

  it('fails a call blocked for its reply within seconds when its worker dies with no socket to check (heartbeat)', async function () {
    this.timeout(60_000)
    // Disconnected (or over TLS) the worker publishes no descriptor, so only its heartbeat tells
    // a blocked main thread that it is gone; before, such a call waited for its call timeout
    // (5 min by default, for ever for pack).
    const server = await ServerProcess.start()
    const name = await server.addStorage()
    const c = server.client(name, { callTimeout: 30_000, disconnectTimeout: 30_000, backoffMin: 20, backoffMax: 50 })
    try {
      c.lastTransaction()
      await server.stop()
      for (let i = 0; i < 100 && c.connected; i++) await sleep(20)
      expect(c.connected).to.equal(false)
      const { worker, ctl, words } = c[IO_INTERNALS]
      expect(Atomics.load(ctl, words.FD)).to.equal(-1)
      // As if it ran out of memory: its process 'exit' handler does not run, and its 'exit' event
      // cannot reach this thread while it blocks.
      worker.removeAllListeners('exit')
      worker.removeAllListeners('error')
      const stopped = worker.terminate()
      const start = Date.now()
      let error: unknown = null
      try {
        c.loadBefore(0n, 1n)
      } catch (e) {
        error = e
      }
      const took = Date.now() - start
      await stopped
      expect(error).to.be.instanceOf(ClientDisconnected)
      expect((error as Error).message).to.match(/I\/O worker stopped/)
      expect(took, 'ms until the call failed').to.be.below(15_000)
    } finally {
      c.close()
    }
  })

  it('fails the calls after its worker died with ClientDisconnected, prefetches included', async () => {
    const { name, oids, tid } = await objects(3)
    const a = client(name, { prefetchDepth: 0 })
    expect(a.loadBefore(oids[0]!, tid + 1n)!.data).to.deep.equal(new Uint8Array([0]))
    await a[IO_INTERNALS].worker.terminate()
    expect(a.connected).to.equal(false)
    expect(() => a.loadBefore(oids[1]!, tid + 1n)).to.throw(ClientDisconnected, /I\/O worker stopped/)
    expect(() => a.tpc_begin(txn())).to.throw(ClientDisconnected, /I\/O worker stopped/)
    let error: unknown = null
    await a.prefetch([oids[2]!], tid + 1n).catch((e: unknown) => (error = e))
    expect(error).to.be.instanceOf(ClientDisconnected)
    // What was cached is still read.
    expect(a.loadBefore(oids[0]!, tid + 1n)!.data).to.deep.equal(new Uint8Array([0]))
  })

  it('writes nothing to a file that took the descriptor of a dead worker\'s socket', async () => {
    const { name, oids, tid } = await objects(2)
    const a = client(name, { prefetchDepth: 0, callTimeout: 5000 })
    a.loadBefore(oids[0]!, tid + 1n)
    const { worker, ctl, words: { FD } } = a[IO_INTERNALS]
    const fd = Atomics.load(ctl, FD)
    expect(fd).to.be.at.least(0) // plain TCP: the main thread writes requests itself
    // As if this thread had not returned to its event loop since the worker died (out of memory,
    // say): the worker's 'exit' event has not reached the client.
    worker.removeAllListeners('exit')
    worker.removeAllListeners('error')
    await worker.terminate()
    const dir = freshDir()
    const files: number[] = []
    let victim = -1
    try {
      // The lowest free number is taken first: the socket's, within a few opens.
      for (let i = 0; i < 256 && victim < 0; i++) {
        const f = openSync(path.join(dir, `victim-${i}`), 'w')
        files.push(f)
        if (f === fd) victim = i
      }
      expect(victim, 'a file reuses the socket\'s descriptor').to.be.at.least(0)
      expect(() => a.loadBefore(oids[1]!, tid + 1n)).to.throw(ClientDisconnected, /socket was closed without it/)
      expect(() => a.loadBefore(oids[1]!, tid + 1n)).to.throw(ClientDisconnected, /open the storage again/)
    } finally {
      for (const f of files) closeSync(f)
    }
    expect(readFileSync(path.join(dir, `victim-${victim}`)).length).to.equal(0)
  })

  it('fails a call blocked for its reply when its worker dies meanwhile', async () => {
    const { name, oids, tid } = await objects(1)
    const a = client(name, { callTimeout: 30_000 })
    const b = client(name)
    // b holds the object's commit lock: a's vote waits for it.
    const tb = txn()
    b.tpc_begin(tb)
    b.store(oids[0]!, tid, new Uint8Array([7]), tb)
    b.tpc_vote(tb)
    const ta = txn()
    a.tpc_begin(ta)
    a.store(oids[0]!, tid, new Uint8Array([8]), ta)
    const { worker } = a[IO_INTERNALS]
    worker.removeAllListeners('exit')
    worker.removeAllListeners('error')
    const stopped = worker.terminate() // (it stops while this thread blocks in the vote)
    try {
      expect(() => a.tpc_vote(ta)).to.throw(ClientDisconnected, /I\/O worker stopped/)
    } finally {
      await stopped
      b.tpc_abort(tb)
    }
  })

  it('never closes the socket while the main thread is writing to it', async () => {
    const own = await ServerProcess.start()
    try {
      const name = await own.addStorage()
      const a = own.client(name, { backoffMin: 10_000, backoffMax: 10_000 })
      open.push(a)
      expect(a.connected).to.equal(true)
      a.lastTransaction()
      const { ctl, words: { FD, BUSY } } = a[IO_INTERNALS]
      const fd = Atomics.load(ctl, FD)
      expect(fd).to.be.at.least(0)
      const ino = fstatSync(fd).ino
      Atomics.store(ctl, BUSY, 1) // a direct write in progress (a long GC pause, a debugger)
      try {
        await own.stop() // the connection drops: the worker destroys its socket
        await sleep(1500) // (the worker used to give up waiting after 1 s)
        expect(fstatSync(fd).ino).to.equal(ino)
        expect(a.connected).to.equal(true) // not closed yet: the worker has not told
      } finally {
        Atomics.store(ctl, BUSY, 0)
      }
      for (let i = 0; i < 200 && a.connected; i++) await sleep(50)
      expect(a.connected).to.equal(false)
      let same = false
      try {
        same = fstatSync(fd).ino === ino
      } catch {
        // closed
      }
      expect(same).to.equal(false)
    } finally {
      await own.stop()
    }
  })

  it('caches a small record without the buffer of the reply it came in', async () => {
    const name = await suite.server.addStorage()
    const w = client(name)
    const big = w.newOid()
    const small = w.newOid()
    const tid = commit(w, [
      [big, 0n, new Uint8Array(4 << 20).fill(7)],
      [small, 0n, new Uint8Array([1, 2, 3])],
    ])
    const a = client(name, { prefetchDepth: 0 })
    await a.prefetch([big, small], tid + 1n) // one reply, one buffer
    const d = a.loadBefore(small, tid + 1n)!.data
    expect([...d]).to.deep.equal([1, 2, 3])
    expect(d.buffer.byteLength).to.be.at.most(8192) // a slab of Node's Buffer pool at most
    const e = a.loadBefore(big, tid + 1n)!.data
    expect(e.length).to.equal(4 << 20)
    expect(a.cacheStats.hits).to.equal(2)
  })
})
