// ClientStorage.loadBeforeMany (protocol message loadBeforeMany, version 2): several objects'
// revisions before a tid in one round trip, cached with the right validity; a B-tree walk loads
// each leaf's values together; the server follows a chain of records when asked (`follow`);
// version-1 clients are still served.
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { DB, Persistent, registerClass, type Oid, type Tid } from '@wendelin/zodb'
import { IOBTree } from '@wendelin/btrees'
import type { ClientStorage } from '@wendelin/zeo'

import { Item } from '../zodb/helpers.js'
import { commitRecords } from '../zodb/storage-conformance.js'
import { RawClient, serverForSuite } from './helpers.js'

/** A record of another class than the chain's Items, with references of its own. */
class Holder extends Persistent {
  items: unknown[] = []
}
registerClass('test.zeo.Holder', Holder)

describe('zeo loadBeforeMany', function () {
  const suite = serverForSuite()
  const { open, client } = suite

  /** Commit `data(oid)` for every oid (new ones when `oids` is null); the tid. */
  function commit(c: ClientStorage, oids: Oid[] | null, serials: Map<Oid, Tid>, data: (i: number) => number, n = 0): Tid {
    const txn = { user: '', description: '', extension: {} }
    c.tpc_begin(txn)
    const list = oids ?? Array.from({ length: n }, () => c.newOid())
    list.forEach((oid, i) => c.store(oid, serials.get(oid) ?? 0n, new Uint8Array([data(i)]), txn))
    c.tpc_vote(txn)
    const tid = c.tpc_finish(txn)
    for (const oid of list) serials.set(oid, tid)
    return tid
  }

  it('loads the revisions before a tid in one round trip, leaves out what did not exist, and caches them', async () => {
    const name = await suite.server.addStorage()
    const a = client(name)
    const serials = new Map<Oid, Tid>()
    const t1 = commit(a, null, serials, (i) => i, 20)
    const oids = [...serials.keys()]
    const t2 = commit(a, oids.slice(0, 5), serials, (i) => 100 + i)

    const b = client(name, { prefetchBudget: 0 })
    const at = b.lastTransaction() + 1n
    const now = b.loadBeforeMany(oids, at)
    expect(now.size).to.equal(20)
    oids.forEach((oid, i) => {
      expect([...now.get(oid)!.data]).to.deep.equal([i < 5 ? 100 + i : i])
      expect(now.get(oid)!.serial).to.equal(i < 5 ? t2 : t1)
    })
    expect(b.roundTrips.loadBeforeMany).to.equal(1)
    expect(b.loadBeforeMany(oids, at).size).to.equal(20)
    expect(b.roundTrips.loadBeforeMany).to.equal(1) // from the cache
    // An older snapshot: the revisions of then, cached with the tid of their successor.
    const old = b.loadBeforeMany(oids, t1 + 1n)
    oids.forEach((oid, i) => expect([...old.get(oid)!.data]).to.deep.equal([i]))
    expect(b.roundTrips.loadBeforeMany).to.equal(2)
    expect(b.loadBefore(oids[0]!, t1 + 1n)!.nextSerial).to.equal(t2)
    expect(b.loadBefore(oids[9]!, t1 + 1n)!.nextSerial).to.equal(null)
    expect(b.roundTrips.loadBefore ?? 0).to.equal(0)
    expect(b.loadBeforeMany(oids, t1).size).to.equal(0) // nothing existed yet

    // An object that does not exist is left out. After a reply that brought others, the client
    // asks for it once more (a budget may have left it out: a reply does not say which); a reply
    // that brings nothing ends it.
    const c = client(name, { prefetchBudget: 0 })
    expect(c.loadBeforeMany([999_998n, 999_999n], at).size).to.equal(0)
    expect(c.roundTrips.loadBeforeMany).to.equal(1)
    expect(c.loadBeforeMany([oids[0]!, 999_999n], at).size).to.equal(1)
    expect(c.roundTrips.loadBeforeMany).to.equal(3)
  })

  it("never serves a revision from the cache once another client's commit replaced it", async () => {
    const name = await suite.server.addStorage()
    const a = client(name)
    const serials = new Map<Oid, Tid>()
    commit(a, null, serials, (i) => i, 10)
    const oids = [...serials.keys()]
    const b = client(name)
    const at1 = b.lastTransaction() + 1n
    expect([...b.loadBeforeMany(oids, at1).get(oids[3]!)!.data]).to.deep.equal([3])
    const t2 = commit(a, oids, serials, (i) => 50 + i)
    const at2 = b.lastTransaction() + 1n
    expect(at2).to.equal(t2 + 1n)
    const later = b.loadBeforeMany(oids, at2)
    oids.forEach((oid, i) => expect([...later.get(oid)!.data]).to.deep.equal([50 + i]))
    expect([...b.loadBeforeMany(oids, at1).get(oids[3]!)!.data]).to.deep.equal([3])
  })

  it("walks a B-tree of ghosts loading each leaf's values together, through the prefetch or one round trip per leaf", async () => {
    const name = await suite.server.addStorage()
    const n = 2_000
    {
      const db = new DB(client(name))
      const tm = new TransactionManager({ explicit: true })
      const conn = db.open({ transactionManager: tm })
      tm.begin()
      const tree = new IOBTree<Item>()
      for (let i = 0; i < n; i++) tree.set(i, new Item(`i${i}`, i))
      conn.root.tree = tree
      tm.commit()
      db.close()
    }
    for (const options of [{ prefetchBudget: 0 }, {}]) {
      const storage = client(name, options)
      const db = new DB(storage)
      open.push(db)
      const tm = new TransactionManager({ explicit: true })
      const conn = db.open({ transactionManager: tm })
      tm.begin()
      let sum = 0
      for (const item of (conn.root.tree as IOBTree<Item>).values()) sum += item.value as number
      expect(sum).to.equal((n * (n - 1)) / 2)
      const trips = storage.roundTrips
      if (options.prefetchBudget === 0) {
        // No prefetch: one loadBefore per tree node and leaf, one loadBeforeMany per leaf, never one per value.
        expect(trips.loadBeforeMany).to.be.greaterThan(n / 100)
        expect(trips.loadBefore).to.be.at.most(trips.loadBeforeMany! + 5)
      } else {
        // The prefetch brings the leaves and their values (asked for ahead) without a synchronous call.
        expect((trips.loadBefore ?? 0) + (trips.loadBeforeMany ?? 0)).to.be.at.most(5)
      }
      tm.abort()
    }
  })

  it('follows a chain of records when asked: the references of the next one, and of the one after, up to a count and a budget', async () => {
    const name = await suite.server.addStorage()
    const nodes: Item[] = []
    let tid: Tid
    {
      const db = new DB(client(name))
      const tm = new TransactionManager({ explicit: true })
      const conn = db.open({ transactionManager: tm })
      tm.begin()
      // node i refers to node i + 1 only: the next record is the last reference (fromEnd 1)
      let next: Item | number = 0
      for (let i = 9; i >= 0; i--) nodes.unshift((next = new Item(`n${i}`, next)))
      conn.root.chain = nodes[0]
      tm.commit()
      tid = db.storage.lastTransaction()
      db.close()
    }
    const oids = nodes.map((n) => n._p_oid!)
    const c = await RawClient.connect(suite.server.port, name)
    await c.welcome()
    const got = async (...args: unknown[]): Promise<Oid[]> => {
      const [, status, value] = await c.call('loadBeforeMany', ...args)
      expect(status).to.equal(0)
      return (value as [Oid, Uint8Array, Tid, Tid | null][]).map((r) => r[0])
    }
    const at = tid + 1n
    expect(await got([oids[0]], at)).to.deep.equal([oids[0]])
    // [next, fromEnd, count, budget]: node 1 is asked for, node 2 (its reference) is where the chain goes on
    expect(await got([oids[1]], at, [oids[2], 1, 3, 1 << 20])).to.deep.equal(oids.slice(1, 6))
    expect(await got([oids[1]], at, [oids[1], 1, 2, 1 << 20])).to.deep.equal(oids.slice(1, 4))
    expect(await got([oids[1]], at, [oids[2], 1, 0, 1 << 20])).to.deep.equal([oids[1]])
    // The budget stops it (the whole reply within it: here the record asked for is over it); the end of the chain too.
    expect(await got([oids[1]], at, [oids[2], 1, 5, 1])).to.deep.equal(oids.slice(1, 2))
    expect(await got([oids[8]], at, [oids[9], 1, 5, 1 << 20])).to.deep.equal(oids.slice(8))
    c.close()
  })

  it('answers within a budget when asked (prefetches): records in order while they fit (the first whatever its size), the rest left out', async () => {
    const name = await suite.server.addStorage()
    const db = new DB(client(name))
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    const blocks = Array.from({ length: 8 }, (_, i) => new Item(`b${i}`, new Uint8Array(64 * 1024).fill(i)))
    const small = Array.from({ length: 50 }, (_, i) => new Item(`s${i}`, i))
    Object.assign(conn.root, { blocks, small })
    tm.commit()
    const tid = db.storage.lastTransaction()
    db.close()
    const c = await RawClient.connect(suite.server.port, name)
    await c.welcome()
    const ask = async (items: Item[], budget: number | null): Promise<Oid[]> => {
      const [, status, value] = await c.call('loadBeforeMany', items.map((o) => o._p_oid!), tid + 1n, null, ...(budget === null ? [] : [budget]))
      expect(status).to.equal(0)
      return (value as [Oid, Uint8Array, Tid, Tid | null][]).map((r) => r[0])
    }
    const oids = (items: Item[]) => items.map((o) => o._p_oid!)
    // Records of 64 KiB and a few bytes (each counting 32 more): the first always comes, the
    // others while the reply stays within the budget.
    expect(await ask(blocks, 1)).to.deep.equal(oids(blocks.slice(0, 1)))
    expect(await ask(blocks, 64 * 1024 + 32)).to.deep.equal(oids(blocks.slice(0, 1)))
    expect(await ask(blocks, 100 * 1024)).to.deep.equal(oids(blocks.slice(0, 1)))
    expect(await ask(blocks, 140 * 1024)).to.deep.equal(oids(blocks.slice(0, 2)))
    expect(await ask(blocks, null)).to.deep.equal(oids(blocks)) // no budget: all of them
    // small records all come under a budget that holds them
    expect(await ask(small, 256 * 1024)).to.deep.equal(oids(small))
    c.close()
  })

  it("prefetches an object's references within prefetchBudget: big records are left for when they are asked for", async () => {
    const name = await suite.server.addStorage()
    const a = client(name)
    const db = new DB(a)
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    const blocks = new Holder()
    blocks.items = Array.from({ length: 8 }, (_, i) => new Item(`b${i}`, new Uint8Array(256 * 1024).fill(i + 1)))
    ;(conn.root as Record<string, unknown>).blocks = blocks
    tm.commit()
    const oid = blocks._p_oid!
    const refs = (blocks.items as Item[]).map((o) => o._p_oid!)
    db.close()
    const b = client(name, { prefetchBudget: 64 * 1024 })
    const at = b.lastTransaction() + 1n
    b.loadBefore(oid, at) // its references are prefetched, asynchronously
    const entries = b.cacheStats.entries
    for (let waited = 0; b.cacheStats.entries === entries && waited < 5000; waited += 5) await new Promise((resolve) => setTimeout(resolve, 5))
    await new Promise((resolve) => setTimeout(resolve, 50)) // nothing more comes
    // One came: block 0, the first record of the prefetch of the holder's references, which its
    // size stopped (and none with the holder's own reply: the whole reply stays within the
    // budget). Loading it takes no round trip; each of the other seven takes one.
    expect(b.cacheStats.bytes).to.be.below(400 * 1024)
    const trips = () => b.roundTrips.loadBefore ?? 0
    for (const [i, r] of refs.entries()) {
      const before = trips()
      expect(b.loadBefore(r, at)!.data.length, `block ${i}`).to.be.above(256 * 1024 - 1)
      expect(trips() - before, `block ${i}`).to.equal(i < 1 ? 0 : 1)
    }
  })

  it("follows while the whole reply fits the budget (each record with its overhead), each object once, at most 10,000 records, and only along records of one class", async () => {
    const name = await suite.server.addStorage()
    let tid: Tid
    const db = new DB(client(name))
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    const blocks = new Item('blocks', Array.from({ length: 8 }, (_, i) => new Item(`b${i}`, new Uint8Array(64 * 1024).fill(i))))
    const small = new Item('small', Array.from({ length: 100 }, (_, i) => new Item(`s${i}`, i)))
    const one = new Item('one', 1)
    const other = new Item('other', 2)
    const dups = new Item('dups', [...Array<Item>(1000).fill(one), other])
    const wide = new Item('wide', Array.from({ length: 12_000 }, (_, i) => new Item('', i)))
    // a chain of two Items, whose last reference is not a chain record (a value of another class)
    const holder = new Holder()
    holder.items = [new Item('x1', 1), new Item('x2', 2)]
    const tail = new Item('tail', holder)
    const head = new Item('head', tail)
    Object.assign(conn.root, { blocks, small, dups, wide, head })
    tm.commit()
    tid = db.storage.lastTransaction()
    db.close()

    const c = await RawClient.connect(suite.server.port, name)
    await c.welcome()
    const follow = async (asked: Item[], first: Item, budget: number): Promise<[Oid, Uint8Array][]> => {
      const [, status, value] = await c.call('loadBeforeMany', asked.map((o) => o._p_oid!), tid + 1n, [first._p_oid!, 1, 16, budget])
      expect(status).to.equal(0)
      return (value as [Oid, Uint8Array, Tid, Tid | null][]).map((r) => [r[0], r[1]])
    }
    /** Records followed (after the `asked` first ones): the whole reply within the budget, with 32 bytes a record, and the next one would not have fit. */
    const withinBudget = (records: [Oid, Uint8Array][], asked: number, budget: number): void => {
      const bytes = records.reduce((n, r) => n + r[1].length + 32, 0)
      if (records.length > asked) expect(bytes, `${records.length - asked} records followed`).to.be.at.most(budget)
    }

    // Big records: none over the budget, not a batch of them.
    let got = await follow([blocks], blocks, 1)
    expect(got).to.have.length(1)
    got = await follow([blocks], blocks, 100 * 1024)
    expect(got).to.have.length(2)
    // Small ones: each counts its overhead.
    for (const budget of [1, 200, 1000, 3000]) withinBudget(await follow([small], small, budget), 1, budget)
    expect(await follow([small], small, 3000)).to.have.length.above(5)

    // An object referred to 1,000 times comes once.
    got = await follow([dups], dups, 16 << 20)
    expect(got.map((r) => r[0])).to.deep.equal([dups, one, other].map((o) => o._p_oid!))

    // 12,000 references: the reply stops at 10,000 records.
    got = await follow([wide], wide, 16 << 20)
    expect(got).to.have.length(10_000)

    // The chain goes from head to tail (both Items); the holder is tail's reference, a value:
    // it comes, but the server does not go on along it.
    got = await follow([head], tail, 16 << 20)
    expect(got.map((r) => r[0])).to.deep.equal([head, tail, holder].map((o) => o._p_oid!))
    c.close()
  })

it('returns records that together exceed a frame, in replies within a budget (not ClientDisconnected for ever)', async () => {
    const name = await suite.server.addStorage()
    const a = client(name, { maxFrameBytes: 1 << 20 })
    const oids = Array.from({ length: 6 }, () => a.newOid())
    const tid = commitRecords(a, oids.map((o, i) => [o, 0n, new Uint8Array(300 * 1024).fill(i + 1)]))
    const b = client(name, { maxFrameBytes: 1 << 20, prefetchBudget: 0, disconnectTimeout: 3000 })
    const got = b.loadBeforeMany(oids, tid + 1n)
    expect(got.size).to.equal(6)
    oids.forEach((o, i) => expect(got.get(o)!.data[0]).to.equal(i + 1))
  })

  it('holds no more than cacheSize bytes with small records: each cached revision counts its objects too, not only its data', async () => {
    const name = await suite.server.addStorage()
    const a = client(name)
    const oids = Array.from({ length: 20_000 }, () => a.newOid())
    const tid = commitRecords(a, oids.map((o) => [o, 0n, new Uint8Array([1])]))
    const cacheSize = 256 * 1024
    const b = client(name, { cacheSize, prefetchBudget: 0 })
    expect(b.loadBeforeMany(oids, tid + 1n).size).to.equal(20_000)
    // A cached revision (its object, the view of its data, its bigints, its oid's entry) takes
    // about 400 bytes of memory besides its data (measured): counted as 1 byte each, 20,000 of
    // these 1-byte records were all kept (~8 MB), 30 times the cache's size.
    expect(b.cacheStats.entries).to.be.at.most(cacheSize / 256)
    expect(b.cacheStats.bytes).to.be.at.most(cacheSize)
  })

  it('serves a version-1 client (which never sends loadBeforeMany) and refuses unknown versions', async () => {
    const name = await suite.server.addStorage()
    const v1 = await RawClient.connect(suite.server.port, name, undefined, 1)
    const welcome = await v1.welcome()
    expect(welcome.slice(0, 2)).to.deep.equal(['WZEO', 1])
    expect((await v1.call('sync'))[1]).to.equal(0)
    v1.close()
    const v3 = await RawClient.connect(suite.server.port, name, undefined, 3)
    expect(await v3.waitClosed(2000)).to.equal(true)
    expect(v3.received).to.equal(0)
  })

  it('drops a client sending a malformed loadBeforeMany, and only it', async () => {
    const name = await suite.server.addStorage()
    const honest = client(name)
    const bad = [['x', 1n], [[1n], 'x'], [[1n, 'x'], 1n], [Array(10_001).fill(1n), 1n], [[1n], 1n, 'x'], [[1n], 1n, [1n, 0, 1, 10]], [[1n], 1n, [1n, 1, 1]], [[1n], 1n, ['x', 1, 1, 10]], [[1n], 1n, null, -1], [[1n], 1n, null, 'x'], [[1n], 1n, null, 32 << 20]]
    for (const args of bad) {
      const c = await RawClient.connect(suite.server.port, name)
      await c.welcome()
      void c.call('loadBeforeMany', ...args)
      expect(await c.waitClosed(2000)).to.equal(true)
    }
    expect(honest.lastTransaction()).to.be.a('bigint')
  })
})
