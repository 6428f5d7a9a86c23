// B-tree conflict resolution through real concurrent transactions: merged states must
// keep the tree's invariants (check()), and a merge that cannot be stored must not commit.
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { ConflictError, DB, MemoryStorage, Persistent, type Connection, type Root } from '@wendelin/zodb'
import { IOBTree, OOBTree, OOBucket, OOTreeSet, check, type BTree, type Bucket, type TreeSet } from '@wendelin/btrees'

interface Client {
  tm: TransactionManager
  conn: Connection<Root>
}

async function setup() {
  const db = await DB.open(new MemoryStorage())
  const client = (): Client => {
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    return { tm, conn }
  }
  return { db, client }
}

/** Commit `initial` as root.t, then two clients whose changes to it commit one after the other. */
async function race(initial: Persistent, changeA: (t: never) => void, changeB: (t: never) => void) {
  const { db, client } = await setup()
  const a = client()
  a.conn.root.t = initial
  a.tm.commit()
  a.tm.begin()
  const b = client()
  changeA(a.conn.root.t as never)
  changeB(b.conn.root.t as never)
  a.tm.commit()
  let error: unknown
  try {
    b.tm.commit()
  } catch (e) {
    error = e
    b.tm.abort()
  }
  const loaded = client().conn.root.t
  return { db, error, loaded }
}

describe('B-tree conflict resolution: merged states keep the tree whole', () => {
  describe('a merge never mixes key kinds in one tree', () => {
    it('an empty small tree: a string key and a number key inserted concurrently conflict', async () => {
      const { db, error, loaded } = await race(
        new OOBTree(),
        (t: BTree<unknown, unknown>) => t.set('a', 1),
        (t: BTree<unknown, unknown>) => t.set(1, 2),
      )
      expect(error).to.be.instanceOf(ConflictError)
      check(loaded as BTree<unknown, unknown>)
      expect([...(loaded as BTree<unknown, unknown>).keys()]).to.deep.equal(['a'])
      db.close()
    })

    it('a bucket: one side replaces its string keys by a number, the other adds a string', async () => {
      const initial = new OOBucket<string | number, number>()
      initial.set('m', 0)
      const { db, error, loaded } = await race(
        initial,
        (t: Bucket<string | number, number>) => {
          t.delete('m')
          t.set(5, 1)
        },
        (t: Bucket<string | number, number>) => t.set('z', 2),
      )
      expect(error).to.be.instanceOf(ConflictError)
      check(loaded as Bucket<string | number, number>)
      db.close()
    })

    it('a tree set', async () => {
      const { db, error, loaded } = await race(
        new OOTreeSet(),
        (t: TreeSet<unknown>) => t.add(new Date(0)),
        (t: TreeSet<unknown>) => t.add('x'),
      )
      expect(error).to.be.instanceOf(ConflictError)
      check(loaded as TreeSet<unknown>)
      db.close()
    })
  })

  it('clear() of a tree that tracks its length, racing an insert into one of its buckets, leaves the length exact', async () => {
    const initial = new IOBTree<string>(undefined, { trackLength: true })
    for (let i = 0; i < 1000; i++) initial.set(i, 'x') // many buckets: the insert below changes no node
    const { db, error, loaded } = await race(
      initial,
      (t: BTree<number, string>) => t.set(5000, 'a'),
      (t: BTree<number, string>) => t.clear(),
    )
    expect(error).to.equal(undefined) // as in BTrees: the clear comes after the insert
    const tree = loaded as BTree<number, string>
    expect(tree.size).to.equal([...tree.keys()].length)
    check(tree)
    db.close()
  })
})
