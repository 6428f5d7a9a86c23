// Replies within the client's frame: a client with a small `maxFrameBytes` (1 MiB here) reads a
// database of records that together, or one after another, exceed a frame. Every reply that
// may carry more than was asked for (loadBefore's extras, loadBeforeMany within a budget, a
// prefetch, the iterator's pages) must stay within the budget the client sends: a reply over
// the client's frame ends the connection, and every retry after.
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { DB, MAX_TID, MemoryStorage, Persistent, copyTransactions, registerClass, type Oid, type Tid, type TransactionRecord } from '@wendelin/zodb'
import type { ClientStorage } from '@wendelin/zeo'

import { commitRecords } from '../zodb/storage-conformance.js'
import { RawClient, serverForSuite } from './helpers.js'

const KiB = 1024
const FRAME = 1024 * KiB

/** A persistent object holding bytes and references: its record refers to `refs`. */
class Blob extends Persistent {
  bytes: Uint8Array = new Uint8Array(0)
  refs: Blob[] = []
}
registerClass('test.zeo.ReplySizeBlob', Blob)

describe('zeo replies within the client frame', function () {
  const suite = serverForSuite()
  const { client, open } = suite
  /** A client whose frame is 1 MiB, which fails fast when its connection is lost. */
  const small = (name: string, options = {}): ClientStorage => client(name, { maxFrameBytes: FRAME, disconnectTimeout: 3000, ...options })

  /** Records of these sizes (each filled with its index + 1), committed in one transaction. */
  function records(c: ClientStorage, sizes: number[]): { oids: Oid[]; tid: Tid } {
    const oids = sizes.map(() => c.newOid())
    const tid = commitRecords(
      c,
      oids.map((o, i) => [o, 0n, new Uint8Array(sizes[i]!).fill(i + 1)]),
    )
    return { oids, tid }
  }

  it('loadBeforeMany: a record that would take the reply past its budget is left for the next one', async () => {
    const name = await suite.server.addStorage()
    // 200 KiB is under the 256 KiB budget; the 900 KiB after it, added, made a reply over the frame.
    const { oids, tid } = records(small(name), [200 * KiB, 900 * KiB, 10, 900 * KiB])
    const b = small(name, { prefetchBudget: 0 })
    const got = b.loadBeforeMany([...oids, 999_999n], tid + 1n)
    expect(got.size).to.equal(4)
    oids.forEach((o, i) => expect(got.get(o)!.data[0]).to.equal(i + 1))
  })

  it('prefetch: records that together exceed a frame are all cached, the connection kept', async () => {
    const name = await suite.server.addStorage()
    const { oids, tid } = records(small(name), [300 * KiB, 300 * KiB, 700 * KiB, 300 * KiB, 300 * KiB])
    const b = small(name)
    await b.prefetch(oids, tid + 1n)
    const before = b.roundTrips.loadBeforeMany ?? 0
    const got = b.loadBeforeMany(oids, tid + 1n)
    expect(got.size).to.equal(5)
    oids.forEach((o, i) => expect(got.get(o)!.data[0]).to.equal(i + 1))
    expect(b.roundTrips.loadBeforeMany ?? 0).to.equal(before) // all from the cache
  })

  it("loadBefore: the referenced records sent along stay within the budget, whatever their sizes", async () => {
    const name = await suite.server.addStorage()
    const db = new DB(small(name))
    open.push(db)
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    const holder = new Blob()
    for (const size of [200 * KiB, 900 * KiB]) {
      const b = new Blob()
      b.bytes = new Uint8Array(size).fill(7)
      holder.refs.push(b)
    }
    ;(conn.root as Record<string, unknown>).holder = holder
    tm.commit()

    // A new client's first load of the holder: the server sends the records it refers to along.
    const b = small(name)
    const at = b.lastTransaction() + 1n
    const rev = b.loadBefore(holder._p_oid!, at)
    expect(rev).to.not.equal(null)
    const refs = holder.refs.map((r) => r._p_oid!)
    const got = b.loadBeforeMany(refs, at)
    expect(refs.map((o) => got.get(o)!.data.length)).to.satisfy((ns: number[]) => ns[0]! > 200 * KiB && ns[1]! > 900 * KiB)
  })

  it('iterator: a transaction whose records exceed a frame comes whole, over several replies', async () => {
    const name = await suite.server.addStorage()
    const a = small(name)
    const first = records(a, [10, 20])
    const big = records(a, [300 * KiB, 300 * KiB, 900 * KiB, 300 * KiB, 300 * KiB, 5])
    const txn = { user: 'u', description: 'a bigint in the extension', extension: { n: 2n ** 60n } }
    const last = { tid: commitRecords(a, [[a.newOid(), 0n, new Uint8Array([30])]], txn) }
    const b = small(name)
    const seen = [...b.iterator()]
    expect(seen.map((t) => t.tid)).to.deep.equal([first.tid, big.tid, last.tid])
    const whole = seen[1]!
    expect(whole.records.map((r) => r.oid)).to.deep.equal(big.oids)
    expect(whole.records.map((r) => [r.data!.length, r.data![0]])).to.deep.equal([
      [300 * KiB, 1],
      [300 * KiB, 2],
      [900 * KiB, 3],
      [300 * KiB, 4],
      [300 * KiB, 5],
      [5, 6],
    ])
    expect(seen[2]!.extension).to.deep.equal({ n: 2n ** 60n })
  })

  it('iterator: a client that sends no budget (before it existed) still gets whole transactions; a malformed budget or skip drops only that client', async () => {
    const name = await suite.server.addStorage()
    const big = records(small(name), [300 * KiB, 900 * KiB, 5])
    const old = await RawClient.connect(suite.server.port, name)
    await old.welcome()
    const [, status, page] = (await old.call('iterator', 0n, MAX_TID, 100)) as [number, number, [Tid, string, string, string, unknown, [Oid, Uint8Array][]][]]
    expect(status).to.equal(0)
    expect(page.map((t) => [t[0], t[5].length, t.length])).to.deep.equal([[big.tid, 3, 6]])
    old.close()
    for (const args of [[0n, MAX_TID, 100, 'x'], [0n, MAX_TID, 100, 0], [0n, MAX_TID, 100, 32 << 20], [0n, MAX_TID, 100, null, 2], [0n, MAX_TID, 100, 1024, -1]]) {
      const c = await RawClient.connect(suite.server.port, name)
      await c.welcome()
      void c.call('iterator', ...args)
      expect(await c.waitClosed(2000), JSON.stringify(args, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).to.equal(true)
    }
    expect([...small(name).iterator()].map((t) => t.tid)).to.deep.equal([big.tid])
  })

  it('copyTransactions from a server through such a client: every transaction whole, big ones included', async () => {
    const name = await suite.server.addStorage()
    const a = small(name)
    records(a, [10])
    records(a, [900 * KiB, 900 * KiB, 900 * KiB])
    records(a, [20, 30])
    const copy = new MemoryStorage()
    expect(copyTransactions(small(name), copy)).to.deep.include({ transactions: 3, records: 6 })
    const shape = (it: Iterable<{ tid: Tid; records: { oid: Oid; data: Uint8Array | null }[] }>) => [...it].map((t) => [t.tid, t.records.map((r) => [r.oid, r.data!.length, r.data![0]])])
    expect(shape(copy.iterator())).to.deep.equal(shape(a.iterator()))
    copy.close()
  })

  it('a transaction cut across replies and packed between them loses none of its remaining records', async () => {
    const name = await suite.server.addStorage()
    const a = small(name)
    const first = commitRecords(a, [[a.newOid(), 0n, new Uint8Array(10).fill(9)]])
    // 8 records of 100 KiB: a 256 KiB budget cuts the transaction after the first two.
    const oids: Oid[] = Array.from({ length: 8 }, () => a.newOid())
    const big = commitRecords(a, oids.map((o, i) => [o, 0n, new Uint8Array(100 * KiB).fill(i + 1)]))
    const b = small(name)
    const it = b.iterator()
    expect((it.next().value as TransactionRecord).tid).to.equal(first) // the first reply also brought the cut transaction's first records
    // The first of those is superseded and packed away before the next reply.
    const later = commitRecords(a, [[oids[0]!, big, new Uint8Array(10).fill(99)]])
    a.pack(later, false)
    const t = it.next().value as TransactionRecord
    expect(t.tid).to.equal(big)
    // Every record still in the transaction comes (those already read may stay).
    const got = new Set(t.records.map((r) => r.oid))
    for (const o of oids.slice(1)) expect(got.has(o), `record of 0x${o.toString(16)}`).to.equal(true)
  })

  it('a malformed `after` (not an oid, or without a budget) drops only that client', async () => {
    const name = await suite.server.addStorage()
    for (const args of [[0n, MAX_TID, 100, 1024, 0, 'x'], [0n, MAX_TID, 100, null, null, 5n]]) {
      const c = await RawClient.connect(suite.server.port, name)
      await c.welcome()
      void c.call('iterator', ...args)
      expect(await c.waitClosed(2000)).to.equal(true)
    }
    const ok = await RawClient.connect(suite.server.port, name)
    await ok.welcome()
    const [, status] = (await ok.call('iterator', 0n, MAX_TID, 100, 1024, 0, 5n)) as [number, number]
    expect(status).to.equal(0)
    ok.close()
  })
})
