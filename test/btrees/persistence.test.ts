// B-trees in a database: stored bucket by bucket, loaded lazily, and merged when two
// connections change them at once (the behaviours of BTrees' testConflict.py).
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { ConflictError, DB, MemoryStorage, type Connection, type Root } from '@wendelin/zodb'
import { IOBTree, LOBTree, Length, OOBTree, OOTreeSet, check, type BTree } from '@wendelin/btrees'

interface Client {
  tm: TransactionManager
  conn: Connection<Root>
}

async function setup() {
  const storage = new MemoryStorage()
  const db = await DB.open(storage)
  const client = (): Client => {
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    return { tm, conn }
  }
  return { storage, db, client }
}

/** A tree of integer keys 0, step, 2*step... committed by a fresh client; returns the tree's root key. */
function populate(c: Client, name: string, tree: BTree<number, unknown>, keys: number[]): void {
  for (const k of keys) tree.set(k, `v${k}`)
  c.conn.root[name] = tree
  c.tm.commit()
  c.tm.begin()
}

function conflictOf(fn: () => void): ConflictError {
  try {
    fn()
  } catch (e) {
    expect(e).to.be.instanceOf(ConflictError)
    return e as ConflictError
  }
  throw new Error('expected a ConflictError')
}

describe('B-trees in a database', () => {
  it('store and load a large tree, each node an object of its own, and pass check() when reopened', async () => {
    const { db, client } = await setup()
    const a = client()
    const tree = new IOBTree<string>()
    populate(a, 'tree', tree, Array.from({ length: 20000 }, (_, i) => i))
    const b = client()
    const loaded = b.conn.root.tree as BTree<number, string>
    expect(check(loaded)).to.equal(20000)
    expect(loaded.get(12345)).to.equal('v12345')
    expect([...loaded.keys(19995)]).to.deep.equal([19995, 19996, 19997, 19998, 19999])
    expect(db.storage.len()).to.be.greaterThan(20000 / 60)
    db.close()
  })

  it('a lookup in a cold cache loads only the path it walks', async () => {
    const { storage, db, client } = await setup()
    const a = client()
    populate(a, 'tree', new IOBTree(), Array.from({ length: 50000 }, (_, i) => i))
    a.conn.cacheMinimize()
    const loads: bigint[] = []
    const original = storage.loadBefore.bind(storage)
    storage.loadBefore = (oid, before) => {
      loads.push(oid)
      return original(oid, before)
    }
    const tree = a.conn.root.tree as BTree<number, string>
    loads.length = 0
    expect(tree.get(31337)).to.equal('v31337')
    expect(loads.length).to.be.within(2, 4, `loaded ${loads.length} objects: root, the tree path, one bucket`)
    db.close()
  })

  it('survives commits, aborts and cache minimization between changes', async () => {
    const { db, client } = await setup()
    const a = client()
    const tree = new OOBTree<string, number>()
    a.conn.root.t = tree
    a.tm.commit()
    a.tm.begin()
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 400; i++) tree.set(`r${round}-${i}`, i)
      if (round % 2 === 1) a.tm.abort()
      else a.tm.commit()
      a.tm.begin()
      a.conn.cacheMinimize()
      check(tree)
    }
    expect(tree.size).to.equal(3 * 400)
    db.close()
  })

  describe('conflicts between two connections (testConflict)', () => {
    async function twoClients(initial: number[]) {
      const ctx = await setup()
      const a = ctx.client()
      populate(a, 'tree', new IOBTree(), initial)
      const b = ctx.client()
      return { ...ctx, a, b, ta: a.conn.root.tree as BTree<number, string>, tb: b.conn.root.tree as BTree<number, string> }
    }

    it('inserts of different keys into one bucket both commit', async () => {
      const { a, b, ta, tb, db, client } = await twoClients([10, 20, 30, 40])
      ta.set(15, 'a')
      tb.set(35, 'b')
      a.tm.commit()
      b.tm.commit()
      const c = client()
      const t = c.conn.root.tree as BTree<number, string>
      expect([...t.keys()]).to.deep.equal([10, 15, 20, 30, 35, 40])
      check(t)
      db.close()
    })

    it('changes to different keys of one bucket both commit', async () => {
      const initial = Array.from({ length: 200 }, (_, i) => i)
      const { a, b, ta, tb, db, client } = await twoClients(initial)
      ta.set(101, 'A')
      tb.set(103, 'B')
      tb.delete(105)
      a.tm.commit()
      b.tm.commit()
      const t = client().conn.root.tree as BTree<number, string>
      expect(t.get(101)).to.equal('A')
      expect(t.get(103)).to.equal('B')
      expect(t.has(105)).to.equal(false)
      check(t)
      db.close()
    })

    const cases: Array<[string, (ta: BTree<number, string>) => void, (tb: BTree<number, string>) => void, RegExp]> = [
      ['the same key changed differently', (t) => t.set(20, 'x'), (t) => t.set(20, 'y'), /changed the value of the same key/],
      ['the same key inserted by both', (t) => t.set(25, 'x'), (t) => t.set(25, 'y'), /inserted the same key/],
      ['a delete racing a change', (t) => t.delete(30), (t) => t.set(30, 'changed'), /deleted a key whose value the other changed/],
      ['the same key deleted by both', (t) => t.delete(30), (t) => t.delete(30), /deleted the same key/],
      ['the first key deleted', (t) => t.delete(10), (t) => t.set(35, 'n'), /first key/],
      ['an emptied bucket', (t) => [10, 20, 30, 40].forEach((k) => t.delete(k)), (t) => t.set(35, 'n'), /empt/],
    ]
    for (const [name, changeA, changeB, reason] of cases) {
      it(`${name}: the second commit is a ConflictError that says why, and loses nothing`, async () => {
        const { a, b, ta, tb, db, client } = await twoClients([10, 20, 30, 40])
        changeA(ta)
        changeB(tb)
        a.tm.commit()
        const error = conflictOf(() => b.tm.commit())
        expect(error.message).to.match(reason)
        b.tm.abort()
        const t = client().conn.root.tree as BTree<number, string>
        check(t)
        const after = [...t.entries()]
        const expected = new IOBTree<string>([[10, 'v10'], [20, 'v20'], [30, 'v30'], [40, 'v40']])
        changeA(expected)
        expect(after).to.deep.equal([...expected.entries()], 'exactly the first transaction’s changes')
        db.close()
      })
    }

    it('a bucket split on one side conflicts with an insert into that bucket on the other', async () => {
      const initial = Array.from({ length: 100 }, (_, i) => i * 10) // several buckets
      const { a, b, ta, tb, db } = await twoClients(initial)
      for (let k = 101; k < 101 + 60; k++) ta.set(k, 'split') // grows one bucket past its size
      tb.set(105 + 1000 * 0, 'mine')
      a.tm.commit()
      conflictOf(() => b.tm.commit())
      db.close()
    })

    it('writers read the internal nodes on their path as current: a concurrent change to a parent conflicts', async () => {
      const initial = Array.from({ length: 2000 }, (_, i) => i * 10)
      const { a, b, ta, tb, db } = await twoClients(initial)
      for (let k = 1; k < 1 + 80; k++) ta.set(k, 'grow first bucket') // split a bucket: its parent changes
      tb.set(19_995, 'into a far bucket under the same parent')
      a.tm.commit()
      const error = conflictOf(() => b.tm.commit())
      expect(error.message).to.match(/readCurrent/)
      db.close()
    })

    it('small trees (one inline bucket) merge like buckets', async () => {
      const ctx = await setup()
      const a = ctx.client()
      const small = new OOTreeSet<string>()
      small.add('m')
      a.conn.root.small = small
      a.tm.commit()
      a.tm.begin()
      const b = ctx.client()
      ;(a.conn.root.small as OOTreeSet<string>).add('a')
      ;(b.conn.root.small as OOTreeSet<string>).add('z')
      a.tm.commit()
      b.tm.commit()
      expect([...(ctx.client().conn.root.small as OOTreeSet<string>)]).to.deep.equal(['a', 'm', 'z'])
      ctx.db.close()
    })

    it('Length resolves concurrent changes by adding the deltas', async () => {
      const ctx = await setup()
      const a = ctx.client()
      a.conn.root.n = new Length(10)
      a.tm.commit()
      a.tm.begin()
      const b = ctx.client()
      ;(a.conn.root.n as Length).change(5)
      ;(b.conn.root.n as Length).change(-3)
      a.tm.commit()
      b.tm.commit()
      expect((ctx.client().conn.root.n as Length).value).to.equal(12)
      ctx.db.close()
    })

    it('trees that track their length stay exact under merged concurrent inserts', async () => {
      const ctx = await setup()
      const a = ctx.client()
      const t = new LOBTree<string>(undefined, { trackLength: true })
      for (let i = 0n; i < 100n; i++) t.set(i * 10n, 'x')
      a.conn.root.t = t
      a.tm.commit()
      a.tm.begin()
      const b = ctx.client()
      ;(a.conn.root.t as BTree<bigint, string>).set(5n, 'a')
      ;(b.conn.root.t as BTree<bigint, string>).set(15n, 'b')
      a.tm.commit()
      b.tm.commit()
      const loaded = ctx.client().conn.root.t as BTree<bigint, string>
      expect(loaded.size).to.equal(102)
      expect(check(loaded)).to.equal(102)
      ctx.db.close()
    })
  })
})
