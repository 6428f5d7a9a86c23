// The client's main thread reading its replies from the socket itself while it spins for one
// (direct-read.ts): the worker hands the reading over after a reply and has it back before the
// main thread sleeps or returns to its event loop; invalidations read either way are applied in
// order; a frame read in part is finished by the worker; a connection that ends under the main
// thread's reading fails the call and the client reconnects.
import net from 'node:net'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

import { expect } from 'chai'
import { MAX_TID, type Oid, type Tid } from '@wendelin/zodb'
import { ClientDisconnected, ClientStorage, DirectReader, FrameReader, IO_INTERNALS, encodeFrame, ioCtlWords } from '@wendelin/zeo'

import { TOKEN, commit, here, serverForSuite, sleep, txn } from './helpers.js'

/** Whether the main thread of `c` reads its socket now (READER holds the connection's epoch). */
function mainReads(c: ClientStorage): boolean {
  const { ctl, words } = c[IO_INTERNALS]
  return Atomics.load(ctl, words.READER) === Atomics.load(ctl, words.EPOCH)
}

/** Make `c` spin for every reply (up to `us` µs) instead of choosing. */
function spinAlways(c: ClientStorage, us = 5_000_000): void {
  c[IO_INTERNALS].spinner.fixedSpin = us
}

describe('zeo FrameReader.rest', () => {
  it('gives back the bytes of a frame read in part, for another reader to go on from', () => {
    const frames = [encodeFrame(['a', 1]), encodeFrame(['b', new Uint8Array(300)]), encodeFrame(['c'])]
    const wire = Buffer.concat(frames)
    for (const cut of [1, 3, 4, 5, 20, wire.length - 1]) {
      const first = new FrameReader()
      const bodies = first.push(wire.subarray(0, cut))
      const second = new FrameReader()
      bodies.push(...second.push(first.rest()), ...second.push(wire.subarray(cut)))
      expect(first.buffered).to.equal(0)
      expect(bodies.map((b) => Buffer.from(b)), `cut at ${cut}`).to.deep.equal(frames.map((f) => Buffer.from(f.subarray(4))))
    }
  })
})

describe('zeo DirectReader', () => {
  it('checks its descriptor again when the worker posts or goes, and every few polls, not only once per wait', async () => {
    // A connected socket with nothing to read: each poll is one read that finds nothing.
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const sock = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port })
    await new Promise((resolve) => sock.once('connect', resolve))
    try {
      const fd = (sock as net.Socket & { _handle: { fd: number } })._handle.fd
      const { CTL_WORDS, EPOCH, FD, POSTED, READER } = ioCtlWords
      const ctl = new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4))
      Atomics.store(ctl, EPOCH, 1)
      Atomics.store(ctl, FD, fd)
      let checks = 0
      let published = true
      let gone = 0
      const reader = new DirectReader(ctl, 1 << 20, {
        drain: () => {},
        isPublished: () => (checks++, published),
        gone: () => void gone++,
        frame: () => {},
        handBack: () => {},
      })
      reader.want(true)
      Atomics.store(ctl, READER, 1) // as the worker does when it hands the reading over
      reader.poll()
      reader.poll()
      expect(checks, 'once at the start of the wait').to.equal(1)
      Atomics.add(ctl, POSTED, 1) // the worker posted (it may have closed the socket since)
      reader.poll()
      expect(checks, 'again after the worker posted').to.equal(2)
      for (let i = 0; i < 100; i++) reader.poll()
      expect(checks, 'every few polls within one wait').to.be.at.least(4)
      // The number now refers to another file: the next check sees it, within the same wait.
      published = false
      let polls = 0
      while (gone === 0 && polls < 100) {
        reader.poll()
        polls++
      }
      expect(gone, 'noticed within 100 polls').to.equal(1)
    } finally {
      sock.destroy()
      server.close()
    }
  })
})

describe('zeo client reading its replies on the main thread', function () {
  const suite = serverForSuite()
  const { open, client } = suite

  async function objects(n: number): Promise<{ name: string; w: ClientStorage; oids: Oid[]; tid: Tid }> {
    const name = await suite.server.addStorage()
    const w = client(name)
    const oids = Array.from({ length: n }, () => w.newOid())
    const tid = commit(
      w,
      oids.map((oid, i) => [oid, 0n, new Uint8Array([i])]),
    )
    return { name, w, oids, tid }
  }

  it('reads the replies while it spins, applies the invalidations read with them, and hands the reading back at the end of the synchronous run', async () => {
    const { name, w, oids, tid } = await objects(2)
    const a = client(name, { prefetchDepth: 0, serverSync: false })
    const told: [Tid, Oid[]][] = []
    a.addListener({ invalidate: (t, o) => told.push([t, [...o]]) })
    spinAlways(a)
    for (let i = 0; i < 20; i++) expect(a.loadBefore(oids[0]!, MAX_TID)!.data).to.deep.equal(new Uint8Array([0]))
    expect(mainReads(a), 'the main thread reads the socket').to.equal(true)
    expect(a[IO_INTERNALS].stats.directReads).to.be.greaterThan(0)

    // Pushed while the worker does not read: it comes before the next reply, read by this thread.
    const t1 = commit(w, [[oids[1]!, tid, new Uint8Array([11])]])
    expect(a.loadBefore(oids[0]!, MAX_TID)!.data).to.deep.equal(new Uint8Array([0]))
    expect(a.lastTransaction()).to.equal(t1)
    expect(told).to.deep.equal([[t1, [oids[1]!]]])
    expect(a.loadBefore(oids[1]!, MAX_TID)!.data).to.deep.equal(new Uint8Array([11]))

    // Back in the event loop the worker reads again: a push arrives with no call.
    await sleep(0)
    expect(mainReads(a)).to.equal(false)
    const t2 = commit(w, [[oids[1]!, t1, new Uint8Array([12])]])
    for (let i = 0; i < 200 && a.lastTransaction() < t2; i++) await sleep(10)
    expect(a.lastTransaction()).to.equal(t2)
    expect(told.at(-1)).to.deep.equal([t2, [oids[1]!]])
    expect(a.loadBefore(oids[1]!, MAX_TID)!.data).to.deep.equal(new Uint8Array([12]))
  })

  it('gives the reading back for a call that sleeps (a vote), and for an asynchronous prefetch', async () => {
    const { name, oids, tid } = await objects(3)
    const a = client(name, { prefetchDepth: 0 })
    spinAlways(a)
    a.loadBefore(oids[0]!, MAX_TID)
    a.loadBefore(oids[0]!, MAX_TID)
    expect(mainReads(a)).to.equal(true)
    const t = txn()
    a.tpc_begin(t)
    a.store(oids[0]!, tid, new Uint8Array([9]), t)
    a.tpc_vote(t) // sleeps at once: the worker reads its reply
    const t1 = a.tpc_finish(t)
    expect(a.loadBefore(oids[0]!, MAX_TID)!.serial).to.equal(t1)
    expect(mainReads(a)).to.equal(true)
    await a.prefetch([oids[1]!, oids[2]!], t1 + 1n) // read by the worker while this thread awaits
    expect(a.loadBefore(oids[2]!, t1 + 1n)!.data).to.deep.equal(new Uint8Array([2]))
    expect(a.cacheStats.hits).to.be.greaterThan(0)
  })

  describe('through a proxy that splits every frame', function () {
    let proxy: Worker | null = null
    let ctl: Int32Array
    let port: number

    /** Start the proxy in `mode` (see the fixture): every frame after the welcome in two writes 60 ms apart. */
    async function startProxy(mode: 'halves' | 'length' | 'tail'): Promise<void> {
      const sab = new SharedArrayBuffer(4)
      ctl = new Int32Array(sab)
      proxy = new Worker(path.join(here, 'fixtures', 'splitting-proxy.js'), { workerData: { upstream: suite.server.port, delay: 60, ctl: sab, mode } })
      port = await new Promise<number>((resolve, reject) => {
        proxy!.once('error', reject)
        proxy!.once('message', (m: { port: number }) => resolve(m.port))
      })
    }

    beforeEach(() => startProxy('halves'))

    afterEach(async () => {
      for (const o of open.splice(0).reverse()) o.close()
      await proxy?.terminate()
      proxy = null
    })

    const through = (name: string): ClientStorage => {
      const c = new ClientStorage({ host: '127.0.0.1', port, storage: name, token: TOKEN, prefetchDepth: 0, backoffMin: 20, backoffMax: 100 })
      open.push(c)
      return c
    }

    it('has the worker finish a frame the main thread read only in part', async () => {
      const { name, oids } = await objects(2)
      const a = through(name)
      spinAlways(a, 20_000) // shorter than the proxy's pause inside each frame
      const handbacks = a[IO_INTERNALS].stats.handbacks
      for (let i = 0; i < 4; i++) {
        expect(a.loadBefore(oids[i % 2]!, MAX_TID)!.data).to.deep.equal(new Uint8Array([i % 2]))
      }
      // Every spin ran out in the middle of a frame: the reading went back each time.
      expect(a[IO_INTERNALS].stats.handbacks - handbacks).to.be.at.least(2)
    })

    /** The connection `c` is on (bumped at every reconnection). */
    const epochOf = (c: ClientStorage): number => {
      const { ctl, words } = c[IO_INTERNALS]
      return Atomics.load(ctl, words.EPOCH)
    }

    it('hands the reading over only between frames, not after a read that ends a reply and starts the next frame', async () => {
      await proxy!.terminate()
      await startProxy('tail')
      const { name, oids } = await objects(2)
      const a = through(name)
      spinAlways(a)
      const epoch = epochOf(a)
      // A reader that started inside the junk frame would read its fake replies [id, 0, nil] (a
      // load answered "no such object"), a bad length, or drop the connection.
      for (let i = 0; i < 12; i++) {
        expect(a.loadBefore(oids[i % 2]!, MAX_TID)!.data, `load ${i}`).to.deep.equal(new Uint8Array([i % 2]))
      }
      expect(epochOf(a), 'never reconnected').to.equal(epoch)
      expect(a.connected).to.equal(true)
    })

    it('hands a frame length read alone back to the worker with the reading', async () => {
      await proxy!.terminate()
      await startProxy('length')
      const { name, oids } = await objects(2)
      const a = through(name)
      spinAlways(a, 20_000) // runs out between a frame's length and its body
      const epoch = epochOf(a)
      const handbacks = a[IO_INTERNALS].stats.handbacks
      for (let i = 0; i < 6; i++) {
        expect(a.loadBefore(oids[i % 2]!, MAX_TID)!.data, `load ${i}`).to.deep.equal(new Uint8Array([i % 2]))
      }
      expect(a[IO_INTERNALS].stats.handbacks - handbacks, 'the spins ran out after a length').to.be.at.least(2)
      expect(epochOf(a), 'never reconnected').to.equal(epoch)
    })

    it('fails the call when the connection ends while the main thread reads, then reconnects', async () => {
      const { name, oids } = await objects(1)
      const a = through(name)
      spinAlways(a)
      a.loadBefore(oids[0]!, MAX_TID)
      a.loadBefore(oids[0]!, MAX_TID)
      expect(mainReads(a)).to.equal(true)
      // The proxy drops the connection while this thread stays in its synchronous run.
      Atomics.store(ctl, 0, 1)
      Atomics.notify(ctl, 0)
      Atomics.wait(ctl, 0, 1, 5000)
      expect(Atomics.load(ctl, 0)).to.equal(2)
      expect(() => a.loadBefore(oids[0]!, MAX_TID)).to.throw(ClientDisconnected)
      // The worker reconnects; the main thread reads the new connection's replies again.
      for (let i = 0; i < 200 && !a.connected; i++) await sleep(20)
      expect(a.connected).to.equal(true)
      expect(a.loadBefore(oids[0]!, MAX_TID)!.data).to.deep.equal(new Uint8Array([0]))
      expect(a.loadBefore(oids[0]!, MAX_TID)!.data).to.deep.equal(new Uint8Array([0]))
    })
  })
})
