// What the server must survive: wrong tokens, silence, rogue and malformed frames, oversized
// frames, too many connections, while honest clients go on committing.
import { randomBytes } from 'node:crypto'
import net from 'node:net'

import { expect } from 'chai'
import { DB, MemoryStorage, PersistentMapping } from '@wendelin/zodb'
import { StorageServer } from '@wendelin/zeo'
import { TransactionManager } from '@wendelin/transaction'

import { record } from '../zodb/storage-conformance.js'
import { RawClient, ServerProcess, TOKEN, removeScratch, sleep, within } from './helpers.js'

describe('zeo server security and robustness', function () {
  let server: ServerProcess
  let name: string

  before(async () => {
    server = await ServerProcess.start(0, { handshakeTimeout: 300, maxFrameBytes: 64 * 1024, maxConnections: 12, maxPendingRequests: 1 })
    name = await server.addStorage()
  })
  after(async () => {
    await server.stop()
    removeScratch()
  })

  it('gives nothing to a client with a wrong token, and closes it', async () => {
    for (const token of ['wrong', TOKEN + 'x', TOKEN.slice(0, -1), '']) {
      const c = await RawClient.connect(server.port, name, token)
      c.write([1, 'sync'])
      expect(await c.waitClosed(2000)).to.equal(true)
      expect(c.received).to.equal(0)
    }
  })

  it('closes a connection that never presents its token', async () => {
    const c = new RawClient(server.port)
    expect(await c.waitClosed(3000)).to.equal(true)
    expect(c.received).to.equal(0)
  })

  it('answers a correct token for an unknown storage with an error, and closes', async () => {
    const c = await RawClient.connect(server.port, 'no-such-storage')
    const w = await c.welcome()
    expect((w[2] as { error: string }).error).to.match(/no storage named/)
    expect(await c.waitClosed(2000)).to.equal(true)
  })

  it('drops a rogue client sending random or malformed frames, and only it, while others commit', async () => {
    const honest = await RawClient.connect(server.port, name)
    await honest.welcome()
    const storage = server.client(name)
    const db = new DB(storage)
    const tm = new TransactionManager()
    const conn = db.open({ transactionManager: tm })
    ;(conn.root as Record<string, unknown>).m = new PersistentMapping<string, number>()
    tm.commit()
    const u32 = (n: number) => {
      const b = Buffer.alloc(4)
      b.writeUInt32BE(n)
      return b
    }
    const attacks: ((c: RawClient) => void)[] = [
      (c) => c.socket.write(randomBytes(200)),
      (c) => c.socket.write(u32(0)),
      (c) => c.socket.write(u32(0xffffffff)),
      (c) => c.socket.write(Buffer.concat([u32(3), Buffer.from([0xc1, 0xc1, 0xc1])])), // 0xc1: never used in msgpack
      (c) => c.write('not an array'),
      (c) => c.write([1, 'noSuchMethod']),
      (c) => c.write([0, 'vote', 1]), // a call sent as one-way
      (c) => c.write([5, 'store', 1, 1n, 0n, new Uint8Array(3)]), // a one-way sent as a call
      (c) => c.write([1, 'loadBefore', 'x', 1n, 0]),
      (c) => c.write([-1, 'sync']),
      (c) => c.write([0, 'store', 1, 'oid', 0n, 'data']),
      (c) => c.write([1, 'newOids', 1e9]),
    ]
    let round = 0
    for (const attack of attacks) {
      for (const handshake of [true, false]) {
        const rogue = handshake ? await RawClient.connect(server.port, name) : new RawClient(server.port)
        if (handshake) await rogue.welcome()
        else await new Promise((r) => rogue.socket.once('connect', r))
        attack(rogue)
        // meanwhile, an honest client commits through the network storage
        const m = (conn.root as Record<string, unknown>).m as PersistentMapping<string, number>
        m.set(`k${round}`, round)
        tm.commit()
        round++
        expect(await rogue.waitClosed(3000), `attack ${attacks.indexOf(attack)} (handshake ${handshake})`).to.equal(true)
      }
    }
    const [, status, last] = await honest.call('sync')
    expect(status).to.equal(0)
    expect(last).to.equal(storage.lastTransaction())
    tm.begin()
    expect([...((conn.root as Record<string, unknown>).m as PersistentMapping<string, number>).keys()].length).to.equal(round)
    honest.close()
    db.close()
  })

  it('drops a client whose frame is larger than the limit', async () => {
    const c = await RawClient.connect(server.port, name)
    await c.welcome()
    c.oneWay('tpc_begin', 1, '', '', {})
    c.oneWay('store', 1, 1n, 0n, new Uint8Array(100 * 1024))
    expect(await c.waitClosed(2000)).to.equal(true)
    const ok = await RawClient.connect(server.port, name)
    await ok.welcome()
    ok.oneWay('tpc_begin', 1, '', '', {})
    ok.oneWay('store', 1, 1n, 0n, record({ value: 1 }))
    expect((await ok.call('sync'))[1]).to.equal(0)
    ok.close()
  })

  it('drops a client with more unanswered calls than the limit, and only it', async () => {
    const a = await RawClient.connect(server.port, name)
    await a.welcome()
    const b = await RawClient.connect(server.port, name)
    await b.welcome()
    const [, , oids] = await a.call('newOids', 1)
    const [x] = oids as bigint[]
    a.oneWay('tpc_begin', 1, '', '', {})
    a.oneWay('store', 1, x, 0n, record({ value: 1 }))
    expect((await a.call('vote', 1))[1]).to.equal(0) // a holds the lock on x
    b.oneWay('tpc_begin', 2, '', '', {})
    b.oneWay('store', 2, x, 0n, record({ value: 1 }))
    void b.call('vote', 2) // waits for x: one unanswered call, the limit
    b.write([9, 'sync']) // a second one is too many
    expect(await b.waitClosed(2000)).to.equal(true)
    expect((await a.call('finish', 1))[1]).to.equal(0)
    a.close()
  })

  it('closes connections beyond the limit at once', async () => {
    await sleep(100) // let earlier tests' connections go
    const open: RawClient[] = []
    for (let i = 0; i < 12; i++) {
      const c = await RawClient.connect(server.port, name)
      await c.welcome()
      open.push(c)
    }
    const extra = new RawClient(server.port)
    expect(await extra.waitClosed(2000)).to.equal(true)
    expect(extra.received).to.equal(0)
    for (const c of open) c.close()
    await sleep(100)
    const again = await RawClient.connect(server.port, name)
    expect((await again.welcome())[0]).to.equal('WZEO')
    again.close()
  })
})

describe('zeo server started from code', () => {
  it('serves an in-process storage to a raw client and closes with `await using`', async () => {
    let address: { host: string; port: number } | null = null
    let client: RawClient | null = null
    {
      await using server = new StorageServer({ token: TOKEN, storages: { mem: new MemoryStorage(), ro: { storage: new MemoryStorage(), readOnly: true } } })
      address = await server.listen(0, '127.0.0.1')
      expect(address.host).to.equal('127.0.0.1')
      expect(server.storageNames).to.deep.equal(['mem', 'ro'])
      client = await RawClient.connect(address.port, 'ro')
      const welcome = await client.welcome()
      expect((welcome[2] as { readOnly: boolean }).readOnly).to.equal(true)
      const [, status, error] = await client.call('newOids', 1)
      expect(status).to.equal(1)
      expect((error as { name: string }).name).to.equal('ReadOnlyError')
    }
    expect(await client.waitClosed(2000)).to.equal(true)
    const late = new RawClient(address.port)
    expect(await late.waitClosed(2000)).to.equal(true)
  })

  it('drops a peer whose first frame is larger than any handshake at once, without buffering it', async function () {
    this.timeout(20_000)
    // Before, a peer without the token could make the server hold maxFrameBytes (64 MiB) per
    // connection, up to maxConnections of them, until the handshake timeout.
    await using server = new StorageServer({ token: TOKEN, storages: { mem: new MemoryStorage() }, handshakeTimeout: 5_000 })
    const { port } = await server.listen(0, '127.0.0.1')
    const sock = net.connect({ host: '127.0.0.1', port })
    sock.on('error', () => {})
    await new Promise((resolve) => sock.once('connect', resolve))
    const closed = new Promise<number>((resolve) => sock.once('close', () => resolve(Date.now())))
    const header = Buffer.alloc(4)
    header.writeUInt32BE(60 * 1024 * 1024) // under maxFrameBytes: allowed once the token was shown
    const start = Date.now()
    sock.write(header)
    const chunk = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < 16 && !sock.destroyed; i++) {
      sock.write(chunk)
      await sleep(5)
    }
    const at = await within(closed, 4_000)
    expect(at, 'closed before the handshake timeout').to.not.equal('timeout')
    expect((at as number) - start).to.be.below(2_000)
  })

  it('takes big frames once the token was shown', async () => {
    await using server = new StorageServer({ token: TOKEN, storages: { mem: new MemoryStorage() } })
    const { port } = await server.listen(0, '127.0.0.1')
    const c = await RawClient.connect(port, 'mem')
    expect((await c.welcome())[0]).to.equal('WZEO')
    c.oneWay('tpc_begin', 1, '', '', {})
    c.oneWay('store', 1, 1n, 0n, new Uint8Array(1024 * 1024))
    expect((await c.call('sync'))[1]).to.equal(0)
    c.close()
  })
})
