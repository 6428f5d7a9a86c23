// The server's commit locks, after ZEO's CommitLockTests: stores are buffered without them, vote
// locks the transaction's objects, a second voter that needs one of them waits (one that does not
// goes on), and finish, abort, disconnection and the transaction timeout all release them. Driven
// frame by frame with RawClient against a server in a child process.
import { expect } from 'chai'

import { record } from '../zodb/storage-conformance.js'
import { RawClient, ServerProcess, removeScratch, sleep, within } from './helpers.js'

/**
 * A server in a child process for the enclosing describe (with `transactionTimeout`), a fresh
 * storage for each test, and `client()`: a raw client of it, welcomed, closed after the test.
 */
function rawClientsOfAServer(transactionTimeout: number): { client: () => Promise<RawClient> } {
  let server: ServerProcess
  let name: string
  const clients: RawClient[] = []

  before(async () => {
    server = await ServerProcess.start(0, { transactionTimeout })
  })
  after(async () => {
    await server.stop()
    removeScratch()
  })
  beforeEach(async () => {
    name = await server.addStorage()
  })
  afterEach(() => {
    for (const c of clients.splice(0)) c.close()
  })

  return {
    async client(): Promise<RawClient> {
      const c = await RawClient.connect(server.port, name)
      clients.push(c)
      const w = await c.welcome()
      expect(w[0]).to.equal('WZEO')
      return c
    },
  }
}

describe('zeo commit lock (CommitLockTests)', function () {
  const { client } = rawClientsOfAServer(400)

  async function newOid(c: RawClient): Promise<bigint> {
    const [, status, oids] = await c.call('newOids', 1)
    expect(status).to.equal(0)
    return (oids as bigint[])[0]!
  }

  /** tpc_begin + one store of a new object; returns the oid. */
  async function begin(c: RawClient, txnId: number, oid?: bigint, oldSerial = 0n, value = 1): Promise<bigint> {
    const o = oid ?? (await newOid(c))
    c.oneWay('tpc_begin', txnId, 'user', `txn ${txnId}`, {})
    c.oneWay('store', txnId, o, oldSerial, record({ value }))
    return o
  }

  /** An object committed by `c` (a new one, value 0): [oid, its serial]. */
  async function committed(c: RawClient, txnId: number): Promise<[bigint, bigint]> {
    const oid = await begin(c, txnId, undefined, 0n, 0)
    expect((await c.call('vote', txnId)).slice(1)).to.deep.equal([0, { conflicts: [] }])
    const [, status, tid] = await c.call('finish', txnId)
    expect(status).to.equal(0)
    return [oid, tid as bigint]
  }

  it('lets a second voter that writes the same object wait until the first finishes', async () => {
    const a = await client()
    const b = await client()
    const [oid, t0] = await committed(a, 100)
    await begin(a, 1, oid, t0, 1)
    await begin(b, 2, oid, t0, 2)
    expect((await a.call('vote', 1)).slice(1)).to.deep.equal([0, { conflicts: [] }])
    const bVote = b.call('vote', 2)
    expect(await within(bVote, 300)).to.equal('timeout')
    const [, status, tidA] = await a.call('finish', 1)
    expect(status).to.equal(0)
    // a committed first: b's change is now based on an old revision
    expect(((await within(bVote, 2000)) as unknown[]).slice(1)).to.deep.equal([0, { conflicts: [[oid, tidA]] }])
    b.oneWay('store', 2, oid, tidA, record({ value: 2 }))
    expect((await b.call('vote', 2)).slice(1)).to.deep.equal([0, { conflicts: [] }])
    const [, status2, tidB] = await b.call('finish', 2)
    expect(status2).to.equal(0)
    expect((tidB as bigint) > (tidA as bigint)).to.equal(true)
  })

  it('lets voters with no object in common vote at once; tids follow the order of the finishes', async () => {
    const a = await client()
    const b = await client()
    await begin(a, 1)
    await begin(b, 2)
    expect((await a.call('vote', 1)).slice(1)).to.deep.equal([0, { conflicts: [] }])
    expect(((await within(b.call('vote', 2), 1000)) as unknown[]).slice(1)).to.deep.equal([0, { conflicts: [] }])
    const [, , tidB] = await b.call('finish', 2)
    const [, , tidA] = await a.call('finish', 1)
    expect((tidA as bigint) > (tidB as bigint)).to.equal(true)
  })

  it('holds a readCurrent check against a voted writer of that object until it finishes', async () => {
    const a = await client()
    const b = await client()
    const [oid, t0] = await committed(a, 100)
    await begin(a, 1, oid, t0, 1)
    await a.call('vote', 1)
    await begin(b, 2) // writes a new object, and reads `oid` with readCurrent
    b.oneWay('checkCurrent', 2, oid, t0)
    const bVote = b.call('vote', 2)
    expect(await within(bVote, 300)).to.equal('timeout')
    await a.call('finish', 1)
    const [, status, error] = (await within(bVote, 2000)) as unknown[]
    expect(status).to.equal(1)
    expect((error as { name: string }).name).to.equal('ReadConflictError')
  })

  it('does not take the lock for tpc_begin and stores', async () => {
    const a = await client()
    const b = await client()
    const [oid, t0] = await committed(a, 100)
    await begin(a, 1, oid, t0, 1)
    await begin(b, 2, oid, t0, 2) // both buffered, neither blocks the other
    expect(((await within(b.call('vote', 2), 1000)) as unknown[]).slice(1)).to.deep.equal([0, { conflicts: [] }])
    await b.call('finish', 2)
    expect(((await within(a.call('vote', 1), 1000)) as unknown[]).slice(1)[0]).to.equal(0)
  })

  it('releases the lock on abort', async () => {
    const a = await client()
    const b = await client()
    const [oid, t0] = await committed(a, 100)
    await begin(a, 1, oid, t0, 1)
    await begin(b, 2, oid, t0, 2)
    await a.call('vote', 1)
    const bVote = b.call('vote', 2)
    expect(await within(bVote, 200)).to.equal('timeout')
    a.oneWay('abort', 1)
    expect(((await within(bVote, 2000)) as unknown[]).slice(1)).to.deep.equal([0, { conflicts: [] }])
    await b.call('finish', 2)
  })

  it('releases the lock when the holder disconnects', async () => {
    const a = await client()
    const b = await client()
    const [oid, t0] = await committed(a, 100)
    await begin(a, 1, oid, t0, 1)
    await begin(b, 2, oid, t0, 2)
    await a.call('vote', 1)
    const bVote = b.call('vote', 2)
    expect(await within(bVote, 200)).to.equal('timeout')
    a.close()
    expect(((await within(bVote, 2000)) as unknown[]).slice(1)).to.deep.equal([0, { conflicts: [] }])
    const [, status] = await b.call('finish', 2)
    expect(status).to.equal(0)
  })

  it('aborts a holder that stalls past the transaction timeout, and drops it', async () => {
    const a = await client()
    const b = await client()
    const [oid, t0] = await committed(a, 100)
    await begin(a, 1, oid, t0, 1)
    await begin(b, 2, oid, t0, 2)
    await a.call('vote', 1)
    const started = Date.now()
    const bVote = b.call('vote', 2)
    expect(await within(bVote, 3000)).to.not.equal('timeout')
    expect(Date.now() - started).to.be.within(250, 2500)
    expect(await a.waitClosed(1000)).to.equal(true)
    const [, status] = await b.call('finish', 2)
    expect(status).to.equal(0)
  })

  it('returns write conflicts to the client instead of resolving them', async () => {
    const a = await client()
    const b = await client()
    const oid = await begin(a, 1)
    await a.call('vote', 1)
    const [, , s0] = await a.call('finish', 1)
    a.oneWay('tpc_begin', 2, '', '', {})
    a.oneWay('store', 2, oid, s0, record({ value: 2 }))
    await a.call('vote', 2)
    const [, , s1] = await a.call('finish', 2)
    b.oneWay('tpc_begin', 3, '', '', {})
    b.oneWay('store', 3, oid, s0, record({ value: 3 }))
    expect((await b.call('vote', 3)).slice(1)).to.deep.equal([0, { conflicts: [[oid, s1]] }])
    // the lock was released: a can commit again
    a.oneWay('tpc_begin', 4, '', '', {})
    a.oneWay('store', 4, oid, s1, record({ value: 4 }))
    expect(await within(a.call('vote', 4), 1000)).to.not.equal('timeout')
  })

  it('shows other clients nothing of a transaction that voted but has not finished', async () => {
    const a = await client()
    const b = await client()
    const oid = await begin(a, 1, undefined, 0n, 1)
    await a.call('vote', 1)
    const [, , t1] = await a.call('finish', 1)
    const fresh = await newOid(a)
    a.oneWay('tpc_begin', 2, '', '', {})
    a.oneWay('store', 2, oid, t1, record({ value: 2 }))
    a.oneWay('store', 2, fresh, 0n, record({ value: 3 }))
    await a.call('vote', 2) // voted, not committed
    expect((await b.call('sync')).slice(1)).to.deep.equal([0, t1])
    const [, , loaded] = await b.call('loadBefore', oid, 0xffff_ffff_ffff_ffffn, 0)
    expect((loaded as unknown[])[0]).to.deep.equal([record({ value: 1 }), t1, null])
    const [, status, fresher] = await b.call('loadBefore', fresh, 0xffff_ffff_ffff_ffffn, 0)
    expect(status === 1 || (fresher as unknown[])[0] === null).to.equal(true)
    const [, , history] = await b.call('history', oid, 10)
    expect((history as unknown[][]).map((h) => h[0])).to.deep.equal([t1])
    const [, , t2] = await a.call('finish', 2)
    const [, , after] = await b.call('loadBefore', oid, 0xffff_ffff_ffff_ffffn, 0)
    expect((after as unknown[])[0]).to.deep.equal([record({ value: 2 }), t2, null])
  })

  it('refuses finish before vote and calls for a transaction that is not in progress', async () => {
    const a = await client()
    await begin(a, 1)
    const [, status, error] = await a.call('finish', 1)
    expect(status).to.equal(1)
    expect((error as { name: string }).name).to.equal('StorageTransactionError')
    const [, status2, error2] = await a.call('vote', 99)
    expect(status2).to.equal(1)
    expect((error2 as { name: string }).name).to.equal('StorageTransactionError')
  })

  it('pushes invalidations to every other client, in tid order, and not to the committer', async () => {
    const a = await client()
    const c = await client()
    const tids: bigint[] = []
    let oid = 0n
    for (let i = 0; i < 5; i++) {
      oid = await begin(a, 10 + i, i === 0 ? undefined : oid, tids[i - 1] ?? 0n, i)
      await a.call('vote', 10 + i)
      tids.push((await a.call('finish', 10 + i))[2] as bigint)
    }
    await c.call('sync')
    expect(c.frames).to.deep.equal(tids.map((t) => [0, 'invalidate', t, [oid]]))
    expect(a.frames).to.deep.equal([])
    await sleep(10)
  })

  it('sends invalidations to a client that makes no call, shortly (invalidationDelay)', async () => {
    const a = await client()
    const idle = await client()
    const [oid, t0] = await committed(a, 1)
    const deadline = Date.now() + 2000
    while (idle.frames.length === 0 && Date.now() < deadline) await sleep(5)
    expect(idle.frames).to.deep.equal([[0, 'invalidate', t0, [oid]]])
  })
})

describe('zeo commit lock: a voter that leaves while it waits', function () {
  // A long transaction timeout: the holder keeps its lock for the whole test, so only the leaver's
  // departure can let the third voter go.
  const { client } = rawClientsOfAServer(10_000)

  for (const how of ['disconnects', 'aborts'] as const) {
    it(`no longer holds up the voters behind its claims once it ${how}, and its vote is answered`, async () => {
      const holder = await client()
      const leaver = await client()
      const third = await client()
      const [, , oids] = await holder.call('newOids', 2)
      const [x, y] = oids as bigint[]
      // holder votes on x and keeps its lock
      holder.oneWay('tpc_begin', 1, '', '', {})
      holder.oneWay('store', 1, x, 0n, record({ value: 1 }))
      expect((await holder.call('vote', 1)).slice(1)).to.deep.equal([0, { conflicts: [] }])
      // leaver needs x and y: it waits for holder, and claims y before third (arrival order)
      leaver.oneWay('tpc_begin', 2, '', '', {})
      leaver.oneWay('store', 2, x, 0n, record({ value: 2 }))
      leaver.oneWay('store', 2, y, 0n, record({ value: 2 }))
      const leaverVote = leaver.call('vote', 2)
      await sleep(50)
      // third needs only y: it waits behind leaver's claim
      third.oneWay('tpc_begin', 3, '', '', {})
      third.oneWay('store', 3, y, 0n, record({ value: 3 }))
      const thirdVote = third.call('vote', 3)
      expect(await within(thirdVote, 200)).to.equal('timeout')
      // once leaver is gone nobody holds or waits for y: third votes at once, not when holder
      // (which has nothing in common with it) finishes or times out
      if (how === 'disconnects') leaver.close()
      else {
        leaver.oneWay('abort', 2)
        const answer = await within(leaverVote, 2000)
        expect(answer, 'the waiting vote is answered').to.not.equal('timeout')
        expect((answer as unknown[])[1]).to.equal(1)
        expect(((answer as unknown[])[2] as { name: string }).name).to.equal('StorageTransactionError')
      }
      const voted = await within(thirdVote, 2000)
      expect(voted, 'third voted while holder still holds x').to.not.equal('timeout')
      expect((voted as unknown[]).slice(1)).to.deep.equal([0, { conflicts: [] }])
      expect((await third.call('finish', 3))[1]).to.equal(0)
      expect((await holder.call('finish', 1))[1]).to.equal(0)
    })
  }
})
