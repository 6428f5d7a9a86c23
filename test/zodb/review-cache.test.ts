// Review findings on the object cache, Persistent and the class registry: each test failed
// before its fix.
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { Persistent, PersistentList, registerClass } from '@wendelin/zodb'

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
