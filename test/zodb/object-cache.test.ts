// The connection's object cache: LRU eviction by count and by estimated bytes at transaction
// boundaries, changed and sticky objects kept, ghosts held weakly, identity per oid
// (the behaviours of persistent's test_picklecache).
import { expect } from 'chai'
import { CHANGED, GHOST, ObjectCache, Persistent, PersistentList, registerClass } from '@wendelin/zodb'

import { Item, newDB, session } from './helpers.js'

const gc = (globalThis as { gc?: () => void }).gc

/** Collections with turns of the event loop between them (WeakRefs are cleared only after a job ends). */
async function collectGarbage(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    gc!()
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('object cache', () => {
  function populate(n: number, options: { cacheSize?: number; cacheSizeBytes?: number } = {}) {
    const db = newDB(options)
    const w = session(db)
    w.root.items = new PersistentList(Array.from({ length: n }, (_, i) => new Item(`item${i}`, 'x'.repeat(100))))
    w.tm.commit()
    const s = session(db)
    const items = (s.root.items as PersistentList<Item>).toArray()
    return { db, s, items }
  }

  it('makes the least recently used objects ghosts when over cacheSize, at transaction boundaries', () => {
    const { s, items } = populate(50, { cacheSize: 10 })
    for (const it of items) void it.name
    expect(s.conn.cache.activeCount).to.be.at.least(50)
    s.tm.commit()
    expect(s.conn.cache.activeCount).to.be.at.most(10)
    // The oldest went first: the last items read are still active.
    expect(items[49]!._p_state).to.not.equal(GHOST)
    expect(items[0]!._p_state).to.equal(GHOST)
    expect(items[0]!.name).to.equal('item0') // and load again when used
  })

  it('an object used again (changed and committed, reloaded) is evicted after those not used since', () => {
    const { s, items } = populate(50, { cacheSize: 20 })
    for (const it of items) void it.name // loaded in order: items[0] is the least recently used
    items[0]!.value = 'changed'
    items[1]!._p_invalidate()
    void items[1]!.name // loaded again
    s.tm.commit() // items[0] stored: used now
    expect(s.conn.cache.activeCount).to.be.at.most(20)
    expect(items[0]!._p_state).to.not.equal(GHOST)
    expect(items[0]!.value).to.equal('changed')
    expect(items[1]!._p_state).to.not.equal(GHOST)
    expect(items[2]!._p_state).to.equal(GHOST)
    expect(items[49]!._p_state).to.not.equal(GHOST)
    // Bytes stay counted once per active object through the moves.
    const active = [s.root as unknown as Item, s.root.items as unknown as Item, ...items].filter((o) => o._p_state !== GHOST)
    expect(s.conn.cache.activeBytes).to.equal(active.reduce((n, o) => n + o._p_estimatedSize, 0))
    s.conn.cacheMinimize()
    expect(s.conn.cache.activeBytes).to.equal(0)
  })

  it('evicts by estimated bytes as well', () => {
    const { s, items } = populate(40, { cacheSize: 1000, cacheSizeBytes: 2000 })
    for (const it of items) void it.name
    s.conn.cacheGC()
    expect(s.conn.cache.activeBytes).to.be.at.most(2000)
    expect(s.conn.cache.activeCount).to.be.below(41)
    expect(items[0]!._p_estimatedSize).to.be.above(100)
  })

  it('counts the bytes of new objects once they are stored, and drops them when ghosts', () => {
    const db = newDB({ cacheSize: 1000 })
    const s = session(db)
    const items = Array.from({ length: 10 }, (_, i) => new Item(`n${i}`, 'y'.repeat(200)))
    s.root.items = new PersistentList(items)
    s.tm.commit()
    const bytes = s.conn.cache.activeBytes
    const expected = [s.root as unknown as Item, s.root.items as unknown as Item, ...items].reduce((n, o) => n + o._p_estimatedSize, 0)
    expect(bytes).to.equal(expected)
    expect(bytes).to.be.above(2000)
    s.conn.cacheMinimize()
    expect(s.conn.cache.activeBytes).to.equal(0)
    expect(s.conn.cache.activeCount).to.equal(0)
  })

  it('never evicts changed or sticky objects', () => {
    const { s, items } = populate(30, { cacheSize: 2 })
    for (const it of items) void it.name
    items[0]!.value = 'changed'
    items[1]!._p_sticky = true
    s.conn.cacheGC()
    s.conn.cacheMinimize()
    expect(items[0]!._p_state).to.equal(CHANGED)
    expect(items[0]!.value).to.equal('changed')
    expect(items[1]!._p_sticky).to.equal(true)
    expect(items[2]!._p_state).to.equal(GHOST)
    s.tm.abort()
  })

  it('returns the same object for an oid while it is alive', () => {
    const { s, items } = populate(3)
    const oid = items[1]!._p_oid!
    expect(s.conn.get(oid)).to.equal(items[1])
    items[1]!._p_deactivate()
    expect(s.conn.get(oid)).to.equal(items[1])
  })

  it('keeps one object per oid through repeated eviction and loading, and counts it once', () => {
    const { s, items } = populate(20, { cacheSize: 5 })
    const oid = items[3]!._p_oid!
    for (let round = 0; round < 3; round++) {
      for (const it of items) void it.name
      s.tm.commit() // items[3] is evicted again (a ghost held weakly)
      expect(items[3]!._p_state).to.equal(GHOST)
      expect(s.conn.get(oid)).to.equal(items[3])
      expect(s.conn.cache.activeCount).to.be.at.most(5)
    }
    // An object whose creation was aborted is unsaved again; added anew it gets a new oid.
    const fresh = new Item('fresh', 1)
    s.conn.add(fresh)
    const abortedOid = fresh._p_oid!
    s.tm.abort()
    expect(fresh._p_oid).to.equal(null)
    ;(s.root.items as PersistentList<Item>).push(fresh)
    s.tm.commit()
    expect(fresh._p_oid).to.not.equal(abortedOid)
    fresh._p_deactivate()
    expect(s.conn.get(fresh._p_oid!)).to.equal(fresh)
    const active = [s.root as unknown as Item, s.root.items as unknown as Item, ...items, fresh].filter((o) => o._p_state !== GHOST)
    expect(s.conn.cache.activeCount).to.equal(active.length)
    expect(s.conn.cache.activeBytes).to.equal(active.reduce((n, o) => n + o._p_estimatedSize, 0))
  })

  it('keeps changed objects through evictions, and gives them a second chance once committed', () => {
    const { s, items } = populate(30, { cacheSize: 10 })
    for (const it of items) void it.name
    items[0]!.value = 'a'
    items[1]!.value = 'b'
    s.conn.cacheGC() // items[0] and [1] are kept (changed), items[2..] go first
    expect(items[0]!._p_state).to.equal(CHANGED)
    expect(items[2]!._p_state).to.equal(GHOST)
    expect(items[29]!._p_state).to.not.equal(GHOST)
    s.tm.commit() // both stored: used now, the most recent; items[22..29] are still active
    for (const it of items.slice(2, 12)) void it.name // loaded again, after the commit
    s.conn.cacheGC()
    expect(s.conn.cache.activeCount).to.be.at.most(10)
    // Evicted: the objects not used since they took their place (items[22..29]), then the
    // oldest loaded since; the two stored at the commit got a second chance.
    expect(items[29]!._p_state).to.equal(GHOST)
    expect(items[2]!._p_state).to.equal(GHOST)
    expect(items[0]!._p_state).to.not.equal(GHOST)
    expect(items[1]!._p_state).to.not.equal(GHOST)
    expect(items[11]!._p_state).to.not.equal(GHOST)
    const active = [s.root as unknown as Item, s.root.items as unknown as Item, ...items].filter((o) => o._p_state !== GHOST)
    expect(s.conn.cache.activeCount).to.equal(active.length)
    expect(s.conn.cache.activeBytes).to.equal(active.reduce((n, o) => n + o._p_estimatedSize, 0))
  })

  it('counts objects made ghosts one by one (not by eviction) out, and finds them again by oid', () => {
    const { s, items } = populate(3000, { cacheSize: 100_000 })
    for (const it of items) void it.name
    const before = s.conn.cache.activeCount
    for (let i = 0; i < items.length; i += 2) items[i]!._p_deactivate()
    expect(s.conn.cache.activeCount).to.equal(before - 1500)
    for (let i = 0; i < items.length; i += 2) expect(s.conn.get(items[i]!._p_oid!)).to.equal(items[i])
    for (let round = 0; round < 3; round++) {
      for (const it of items) void it.name // loaded again: new places, the old ones left behind
      for (let i = round % 2; i < items.length; i += 2) items[i]!._p_deactivate()
    }
    const active = [s.root as unknown as Item, s.root.items as unknown as Item, ...items].filter((o) => o._p_state !== GHOST)
    expect(s.conn.cache.activeCount).to.equal(active.length)
    expect(s.conn.cache.activeBytes).to.equal(active.reduce((n, o) => n + o._p_estimatedSize, 0))
    s.conn.cacheMinimize()
    expect(s.conn.cache.activeCount).to.equal(0)
    expect(s.conn.cache.activeBytes).to.equal(0)
  })

  it('keeps its counts and its order through many loads, evictions and ghosts made one by one', () => {
    const { s, items } = populate(3000, { cacheSize: 100 })
    const check = () => {
      const active = [s.root as unknown as Item, s.root.items as unknown as Item, ...items].filter((o) => o._p_state !== GHOST)
      expect(s.conn.cache.activeCount).to.equal(active.length)
      expect(s.conn.cache.activeBytes).to.equal(active.reduce((n, o) => n + o._p_estimatedSize, 0))
    }
    for (let round = 0; round < 4; round++) {
      for (const it of items) void it.name
      check()
      s.tm.commit()
      s.conn.cacheGC() // evicts all but the last 100 loaded
      check()
      expect(items.filter((o) => o._p_state !== GHOST).length).to.be.at.most(100)
      // Reads of active objects are not uses: the 100 left active by a round keep their old
      // places in the next and go first, so the rounds leave items[2900..2999], then [2800..2899].
      const last = round % 2 === 0 ? 2999 : 2899
      expect(items.slice(last - 99, last + 1).every((o) => o._p_state !== GHOST)).to.equal(true)
      expect(items[0]!._p_state).to.equal(GHOST)
    }
    for (let round = 0; round < 8; round++) {
      for (const it of items.slice(0, 400)) void it.name
      for (const it of items.slice(0, 400)) it._p_deactivate()
      check()
    }
    for (const it of items.slice(0, 150)) void it.name
    s.conn.cacheGC() // the 100 loaded last stay
    check()
    expect(items[149]!._p_state).to.not.equal(GHOST)
    expect(items[0]!._p_state).to.equal(GHOST)
    for (const it of items) expect(s.conn.get(it._p_oid!)).to.equal(it)
  })

  it('tells apart oids too big for a number to hold exactly', () => {
    const db = newDB()
    const s = session(db)
    const a = new Item('a', 1)
    const b = new Item('b', 2)
    a._p_oid = 2n ** 62n + 4n
    b._p_oid = 2n ** 62n + 5n // the same double as a's
    s.conn.add(a)
    s.conn.add(b)
    expect(s.conn.get(2n ** 62n + 4n)).to.equal(a)
    expect(s.conn.get(2n ** 62n + 5n)).to.equal(b)
    expect(s.conn.cache.activeCount).to.equal(2)
    s.tm.abort()
  })

  it('finds every object whatever order their oids come in, past the largest oid it has seen and below it', () => {
    const db = newDB()
    const s = session(db)
    const cache = new ObjectCache({ cacheSize: 100, cacheSizeBytes: 0 })
    const objs = new Map<bigint, Item>()
    const put = (oid: bigint, how: 'ghost' | 'new' | 'add') => {
      const obj = new Item(`o${oid}`, 0)
      obj._p_oid = oid
      if (how === 'new') {
        obj._p_jar = s.conn
        cache.addNew(obj)
      } else {
        if (how === 'ghost') {
          obj._p_jar = s.conn
          obj._p_invalidate()
          cache.addGhost(obj)
        } else cache.add(obj)
      }
      objs.set(oid, obj)
    }
    expect(cache.get(1n)).to.equal(undefined)
    put(10n, 'ghost')
    expect(cache.get(11n)).to.equal(undefined)
    put(5n, 'new') // below the largest
    put(20n, 'add')
    put(15n, 'ghost')
    put(40n, 'new')
    put(30n, 'ghost')
    put(25n, 'new')
    const check = () => {
      for (const [oid, obj] of objs) expect(cache.get(oid), `oid ${oid}`).to.equal(obj)
      for (const oid of [1n, 11n, 16n, 26n, 31n, 41n, 1000n, 2n ** 62n]) expect(cache.get(oid), `oid ${oid}`).to.equal(undefined)
    }
    check()
    cache.delete(30n)
    expect(cache.get(30n)).to.equal(undefined)
    put(30n, 'ghost')
    put(2n ** 62n + 1n, 'add') // a bigint key
    put(50n, 'ghost')
    check()
    s.tm.abort()
  })

  ;(gc ? it : it.skip)('does not keep objects made ghosts outside eviction alive (needs --expose-gc)', async () => {
    const { s } = populate(200, { cacheSize: 1000 })
    const list = s.root.items as PersistentList<Item>
    for (const it of list) void it.name
    s.tm.commit()
    for (const it of list) it._p_deactivate() // no eviction: each made a ghost on its own
    list._p_invalidate() // now nothing holds them
    const before = s.conn.cache.size
    await collectGarbage()
    expect(s.conn.cache.size).to.be.below(before)
  })

  ;(gc ? it : it.skip)('holds ghosts weakly, so unreferenced ones are collected (needs --expose-gc)', async () => {
    const { s } = populate(200, { cacheSize: 5 })
    const list = s.root.items as PersistentList<Item>
    for (const it of list) void it.name
    s.tm.commit() // most become ghosts, referenced only by the list's state
    list._p_invalidate() // now nothing holds them
    const before = s.conn.cache.size
    await collectGarbage()
    expect(s.conn.cache.size).to.be.below(before)
  })
})

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
registerClass('test.zodb.Reloading', Reloading)

describe('object cache eviction', () => {
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
