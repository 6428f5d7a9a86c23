// Iterating the values of a B-tree whose values are ghosts loads each leaf's objects with one
// storage call (Storage.loadBeforeMany, through Connection.preload), at the connection's snapshot.
import { expect } from 'chai'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { TransactionManager } from '@wendelin/transaction'
import { DB, GHOST, MemoryStorage, Persistent, SQLiteStorage, registerClass, type Oid, type Tid } from '@wendelin/zodb'
import { IOBTree } from '@wendelin/btrees'

class Val extends Persistent {
  n = 0
}
registerClass('test.btrees.preload.Val', Val)

const scratch = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()
let dirs: string[] = []
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
  dirs = []
})

/** A SQLite database with a tree of `n` Val objects (key i, value n = i), and a way to count storage calls. */
function setup(n: number) {
  const dir = mkdtempSync(path.join(scratch, 'wendelin-preload-'))
  dirs.push(dir)
  const file = path.join(dir, 'db.sqlite')
  {
    const db = new DB(new SQLiteStorage(file))
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    const tree = new IOBTree<Val>()
    for (let i = 0; i < n; i++) tree.set(i, Object.assign(new Val(), { n: i }))
    conn.root.tree = tree
    tm.commit()
    db.close()
    db.storage.close()
  }
  // A fresh database over the file (empty caches), counting its storage's loads.
  const storage = new SQLiteStorage(file)
  const calls = { many: 0, manyOids: 0, single: 0 }
  const many = storage.loadBeforeMany.bind(storage)
  const single = storage.loadBefore.bind(storage)
  storage.loadBeforeMany = (oids: readonly Oid[], tid: Tid) => {
    calls.many++
    calls.manyOids += oids.length
    return many(oids, tid)
  }
  storage.loadBefore = (oid: Oid, tid: Tid) => {
    calls.single++
    return single(oid, tid)
  }
  const db = new DB(storage)
  const client = () => {
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    return { tm, conn }
  }
  return { storage, db, client, calls }
}

describe('B-tree iteration preloads the objects of each leaf', () => {
  it('values() and entries() load a leaf of ghosts with one storage call; keys() loads none of them', () => {
    const { db, client, calls } = setup(1000)
    const b = client()
    const tree = b.conn.root.tree as IOBTree<Val>
    calls.many = calls.single = calls.manyOids = 0
    expect([...tree.keys()].length).to.equal(1000)
    expect(calls.many).to.equal(0)
    const leafLoads = calls.single
    let i = 0
    for (const v of tree.values()) expect(v.n).to.equal(i++)
    expect(i).to.equal(1000)
    expect(calls.manyOids).to.equal(1000)
    expect(calls.many).to.be.at.most(leafLoads + 1)
    expect(calls.single).to.equal(leafLoads) // no object was loaded on its own
    // Entries of a fresh connection: the same.
    const c = client()
    calls.many = calls.single = calls.manyOids = 0
    let sum = 0
    for (const [k, v] of (c.conn.root.tree as IOBTree<Val>).entries()) sum += v.n - k
    expect(sum).to.equal(0)
    expect(calls.manyOids).to.equal(1000)
    db.close()
  })

  it('a leaf’s records are fetched when its first ghost loads, even after a load of an object outside the leaf', () => {
    const { db, client, calls } = setup(1000)
    const b = client()
    const tree = b.conn.root.tree as IOBTree<Val>
    const far = tree.get(999)!
    const it = tree.values()
    const first = it.next().value as Val
    calls.many = calls.single = calls.manyOids = 0
    expect(far.n).to.equal(999) // not in the first leaf: loaded on its own
    expect(calls.single).to.equal(1)
    expect(calls.many).to.equal(0)
    expect(first.n).to.equal(0)
    expect(calls.many).to.equal(1) // the first leaf's ghosts, with one storage call
    expect(calls.manyOids).to.be.greaterThan(1)
    expect(calls.single).to.equal(1)
    db.close()
  })

  it('two iterations going on side by side each get their leaves preloaded', () => {
    const { db, client, calls } = setup(1000)
    const b = client()
    const tree = b.conn.root.tree as IOBTree<Val>
    expect([...tree.keys()].length).to.equal(1000) // every leaf loaded: only the values are left
    calls.many = calls.single = calls.manyOids = 0
    const low = tree.values(0, 499)
    const high = tree.values(500)
    for (let i = 0; i < 500; i++) {
      // Both step (into their next leaves, at the ends of leaves) before either value is read.
      const x = low.next().value as Val
      const y = high.next().value as Val
      expect(x.n).to.equal(i)
      expect(y.n).to.equal(500 + i)
    }
    expect(calls.single).to.equal(0) // no object loaded on its own
    expect(calls.manyOids).to.equal(1000)
    db.close()
  })

  it('a preloaded record is read at the connection’s snapshot, and dropped when the snapshot moves', () => {
    const { db, client } = setup(100)
    const b = client()
    const tree = b.conn.root.tree as IOBTree<Val>
    const it = tree.values()
    expect((it.next().value as Val).n).to.equal(0) // the first leaf's other objects are preloaded, still ghosts
    const ten = tree.get(10)!
    expect(ten._p_state).to.equal(GHOST)
    // Another connection changes object 10 (in the first leaf, with 0).
    const c = client()
    ;(c.conn.root.tree as IOBTree<Val>).get(10)!.n = 1000
    c.tm.commit()
    c.tm.begin()
    // b's snapshot still has the old value; after b's transaction boundary, the new one.
    expect(ten.n).to.equal(10)
    expect(tree.get(11)!._p_state).to.equal(GHOST)
    b.tm.abort()
    b.tm.begin()
    ;(c.conn.root.tree as IOBTree<Val>).get(11)!.n = 1100
    c.tm.commit()
    b.tm.abort()
    b.tm.begin()
    expect(tree.get(11)!.n).to.equal(1100) // preloaded before c's commit, not used after b moved on
    expect(tree.get(10)!.n).to.equal(1000)
    db.close()
  })

  it('a hint that loads keep missing is dropped after a few of them, not looked through by every later load', () => {
    const { db, client } = setup(300)
    const b = client()
    const tree = b.conn.root.tree as IOBTree<Val>
    // A hint over values that never load (as an iteration of loaded objects leaves), counting its reads.
    let reads = 0
    const values = new Proxy(new Array<number>(50).fill(0), {
      get(target, key, receiver) {
        if (typeof key === 'string' && /^\d+$/.test(key)) reads++
        return Reflect.get(target, key, receiver) as unknown
      },
    })
    b.conn.preload(values, 0, 49)
    for (let i = 0; i < 300; i++) expect(tree.get(i)!.n).to.equal(i) // 300 loads (and the leaves') outside it
    expect(reads).to.be.greaterThan(0)
    expect(reads).to.be.at.most(4 * 50)
    db.close()
  })

  it('storages without loadBeforeMany and trees of plain values are iterated as before', async () => {
    const db = await DB.open(new MemoryStorage())
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    const tree = new IOBTree<Val | number>()
    for (let i = 0; i < 200; i++) tree.set(i, i % 2 === 0 ? i : Object.assign(new Val(), { n: i }))
    conn.root.tree = tree
    tm.commit()
    const conn2 = db.open({ transactionManager: new TransactionManager({ explicit: true }) })
    conn2.transactionManager.begin()
    let i = 0
    for (const v of (conn2.root.tree as IOBTree<Val | number>).values()) expect(typeof v === 'number' ? v : v.n).to.equal(i++)
    db.close()
  })
})

describe('SQLiteStorage.loadBeforeMany', () => {
  it('gives what loadBefore gives for each oid at a snapshot, leaving out unknown and not-yet-created objects', () => {
    const { storage, db } = setup(150)
    const oids = [...storage.iterator()].flatMap((t) => t.records.map((r) => r.oid)).filter((o) => o !== 0n)
    const before = storage.lastTransaction() + 1n
    const all = storage.loadBeforeMany([...oids, 0n, 999_999n], before)
    expect(all.size).to.equal(oids.length + 1)
    for (const oid of [...oids, 0n]) {
      const one = storage.loadBefore(oid, before)!
      expect(all.get(oid)!.serial).to.equal(one.serial)
      expect(all.get(oid)!.data).to.deep.equal(one.data)
    }
    // At the snapshot before the tree's commit only the root existed.
    const first = [...storage.iterator()][0]!.tid
    const early = storage.loadBeforeMany(oids, first + 1n)
    expect(early.size).to.equal(0)
    expect(storage.loadBeforeMany([], before).size).to.equal(0)
    db.close()
  })
})
