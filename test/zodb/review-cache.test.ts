// Review findings on the object cache, Persistent and the class registry: each test failed
// before its fix.
import { expect } from 'chai'
import { Persistent, PersistentList, registerClass } from '@wendelin/zodb'

import { newDB, session } from './helpers.js'

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
