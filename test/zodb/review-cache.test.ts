// Review findings on the object cache, Persistent and the class registry: each test failed
// before its fix.
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { Broken, CHANGED, GHOST, MAX_TID, Persistent, PersistentList, registerClass, STICKY, UnknownClassError, UPTODATE } from '@wendelin/zodb'

import { Item, newDB, session } from './helpers.js'

/** An object whose `_p_deactivate` reads it again (logging what it evicts): it loads itself back. */
let deactivations = 0
class Reloading extends Persistent {
  name = ''
  override _p_deactivate(): void {
    super._p_deactivate()
    // Thrown only to end the test if eviction never ends.
    if (++deactivations > 10_000) throw new Error('cache eviction does not terminate')
    void this.name
  }
}
registerClass('test.review.Reloading', Reloading)

describe('review: object cache', () => {
  it('cacheGC and transaction boundaries terminate when a _p_deactivate loads its object again', () => {
    const db = newDB({ cacheSize: 2 })
    const w = session(db)
    w.root.items = new PersistentList(Array.from({ length: 5 }, (_, i) => Object.assign(new Reloading(), { name: `r${i}` })))
    w.tm.commit()
    const s = session(db)
    for (const o of s.root.items as PersistentList<Reloading>) void o.name
    deactivations = 0
    s.conn.cacheGC()
    expect(deactivations).to.be.below(100)
    deactivations = 0
    s.tm.commit() // a boundary runs the same eviction
    expect(deactivations).to.be.below(100)
    s.conn.cacheMinimize() // already bounded: a copy of the active objects
  })
})

describe('review: historical connections', () => {
  it('trim their cache to cacheSize at transaction boundaries, as other connections do', () => {
    const db = newDB({ cacheSize: 10 })
    const w = session(db)
    w.root.items = new PersistentList(Array.from({ length: 50 }, (_, i) => new Item(`item${i}`)))
    w.tm.commit()
    const tm = new TransactionManager()
    const h = db.open({ at: db.lastTransaction(), transactionManager: tm })
    for (const it of h.root.items as PersistentList<Item>) void it.name
    expect(h.cache.activeCount).to.be.at.least(50)
    tm.begin()
    tm.commit()
    expect(h.cache.activeCount).to.be.at.most(10)
    // Its snapshot did not move: a later commit is not seen.
    ;(w.root.items as PersistentList<Item>).get(0)!.name = 'changed'
    w.tm.commit()
    tm.begin()
    tm.commit()
    expect((h.root.items as PersistentList<Item>).get(0)!.name).to.equal('item0')
    h.close()
    tm.begin()
    tm.commit() // a closed one no longer follows the manager
  })
})

describe('review: classes registered late', () => {
  it('a Broken ghost made before its class was registered loads as that class once it is', () => {
    const db = newDB()
    const a = session(db)
    class Temporary extends Persistent {
      x = 1
    }
    registerClass('test.review.Temporary', Temporary)
    a.root.t = new Temporary()
    a.tm.commit()
    const oid = (a.root.t as Temporary)._p_oid!
    // The records now name a class no one registered yet.
    const rename = (data: Uint8Array) =>
      new Uint8Array(Buffer.from(Buffer.from(data).toString('latin1').replace('test.review.Temporary', 'test.review.Temporar2'), 'latin1'))
    const storage = db.storage
    const rec = storage.loadBefore(oid, MAX_TID)!
    const rootRev = storage.loadBefore(0n, MAX_TID)!
    const txn = { user: '', description: '', extension: {} }
    storage.tpc_begin(txn)
    storage.store(oid, rec.serial, rename(rec.data), txn)
    storage.store(0n, rootRev.serial, rename(rootRev.data), txn)
    storage.tpc_vote(txn)
    storage.tpc_finish(txn)
    const b = session(db)
    const t = b.root.t as Persistent
    expect(t).to.be.instanceOf(Broken)
    expect(() => (t as unknown as { x: number }).x).to.throw(UnknownClassError, /test\.review\.Temporar2/)
    // The module that defines the class is imported now (a dynamic import).
    class Temporar2 extends Persistent {
      x = 0
      double() {
        return this.x * 2
      }
    }
    registerClass('test.review.Temporar2', Temporar2)
    b.tm.abort()
    const again = b.root.t as Temporar2
    expect(again).to.equal(t) // the same object: the root still holds it
    expect(again.x).to.equal(1)
    expect(again).to.be.instanceOf(Temporar2)
    expect(again.double()).to.equal(2)
    again.x = 5
    b.tm.commit()
    const c = session(db)
    expect((c.root.t as Temporar2).x).to.equal(5)
  })

  it('a placeholder Broken class registered under the name keeps it broken', () => {
    const db = newDB()
    const a = session(db)
    class Gone extends Broken {
      static override brokenClassName = 'test.review.Gone'
    }
    registerClass('test.review.Gone', Gone)
    a.root.g = new Gone()
    a.tm.commit()
    const b = session(db)
    expect(() => (b.root.g as unknown as { x: unknown }).x).to.throw(UnknownClassError, /test\.review\.Gone/)
    expect(() => (b.root.g as unknown as { x: unknown }).x).to.throw(UnknownClassError, /test\.review\.Gone/)
  })
})

describe('review: pooled connections', () => {
  it('do not keep the oids of every commit while they wait in the pool', () => {
    const db = newDB()
    const w = session(db)
    w.root.a = new Item('a')
    w.root.b = new Item('b')
    w.tm.commit()
    const pooled = session(db)
    const a = pooled.root.a as Item
    void a.name
    pooled.conn.close()
    expect(db.pooledCount).to.equal(1)
    const gc = (globalThis as { gc?: () => void }).gc!
    gc()
    const before = process.memoryUsage().heapUsed
    // What the database tells every connection of commits (here of a million new objects).
    for (let t = 1n; t <= 100n; t++) {
      const oids = Array.from({ length: 10_000 }, (_, i) => 1000n + t * 10_000n + BigInt(i))
      pooled.conn._invalidate(t, oids)
    }
    gc()
    expect(process.memoryUsage().heapUsed - before).to.be.below(10e6)
    // The objects it holds are still made ghosts of their new state when it is reopened.
    ;(w.root.a as Item).name = 'a2'
    w.tm.commit()
    const again = db.open({ transactionManager: new TransactionManager() })
    expect(again).to.equal(pooled.conn)
    expect((again.root as unknown as { a: Item }).a).to.equal(a)
    expect(a.name).to.equal('a2')
    again.close()
  })
})

describe('review: sticky objects', () => {
  it('stay sticky (never evicted) through a change, its commit, an abort and an invalidation', () => {
    const db = newDB({ cacheSize: 1 })
    const w = session(db)
    w.root.a = new Item('a')
    w.root.b = new Item('b')
    w.tm.commit()
    const a = w.root.a as Item
    a._p_sticky = true
    a.value = 5
    expect(a._p_state).to.equal(CHANGED)
    w.tm.commit()
    expect(a._p_sticky).to.equal(true)
    expect(a._p_state).to.equal(STICKY)
    void (w.root.b as Item).name
    w.conn.cacheMinimize()
    expect(a._p_state).to.equal(STICKY) // was evicted: stickiness was lost at the commit
    a.value = 6
    a._p_changed = false // taken back: sticky again, not merely up to date
    expect(a._p_state).to.equal(STICKY)
    a.value = 7
    w.tm.abort()
    expect(a.value).to.equal(5)
    expect(a._p_state).to.equal(STICKY)
    const o = session(db)
    ;(o.root.a as Item).value = 8
    o.tm.commit()
    w.tm.begin() // the invalidation makes it a ghost: it loads the new state, still sticky
    expect(a.value).to.equal(8)
    expect(a._p_state).to.equal(STICKY)
    a._p_sticky = false
    expect(a._p_state).to.equal(UPTODATE)
    w.conn.cacheMinimize()
    expect(a._p_state).to.equal(GHOST)
  })
})
