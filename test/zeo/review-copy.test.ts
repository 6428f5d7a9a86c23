// Review findings: the iterator's cut transactions and copies through a server.
import { expect } from 'chai'
import path from 'node:path'
import { MAX_TID, SQLiteStorage, type Oid, type Tid, type TransactionRecord } from '@wendelin/zodb'
import type { ClientStorage } from '@wendelin/zeo'

import { commitRecords } from '../zodb/storage-conformance.js'
import { RawClient, freshDir, serverForSuite } from './helpers.js'

const KiB = 1024

describe('zeo iterator: review', function () {
  const suite = serverForSuite()
  const { client } = suite
  const small = (name: string): ClientStorage => client(name, { maxFrameBytes: 1024 * KiB, disconnectTimeout: 3000 })

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
    void ([] as Tid[])
  })

  it('a transaction whose extension holds a bigint is iterated through a budget (msgpack carries it; JSON cannot size it)', async () => {
    const file = path.join(freshDir(), 'db.sqlite')
    const s = new SQLiteStorage(file)
    const txn = { user: 'u', description: 'd', extension: { count: 5n, big: 1n << 60n } }
    const tid = commitRecords(s, [[s.newOid(), 0n, new Uint8Array([1, 2, 3])]], txn)
    s.close()
    const name = await suite.server.addStorage(`sqlite:${file}`)
    const seen = [...small(name).iterator()]
    expect(seen.map((t) => [t.tid, t.extension])).to.deep.equal([[tid, { count: 5n, big: 1n << 60n }]])
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
