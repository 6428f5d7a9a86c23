// Historical connections: `db.open({ at | before })` reads a fixed past state, never moves, and
// refuses changes (ZODB's testhistoricalconnections).
import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { PersistentList, ReadConflictError, ReadOnlyHistoryError } from '@wendelin/zodb'

import { Item, newDB, session } from './helpers.js'

describe('historical connections', () => {
  function history() {
    const db = newDB()
    const s = session(db)
    const item = new Item('x', 1)
    s.root.item = item
    s.tm.commit()
    const t1 = db.lastTransaction()
    item.value = 2
    s.tm.commit()
    const t2 = db.lastTransaction()
    item.value = 3
    s.tm.commit()
    return { db, s, t1, t2 }
  }

  it('reads the state right after `at` and right before `before`', () => {
    const { db, t1, t2 } = history()
    const at1 = db.open({ at: t1 })
    expect((at1.root.item as Item).value).to.equal(1)
    const before2 = db.open({ before: t2 })
    expect((before2.root.item as Item).value).to.equal(1)
    const at2 = db.open({ at: t2 })
    expect((at2.root.item as Item).value).to.equal(2)
    expect(at1.historical && at2.historical).to.equal(true)
    expect(at1.before).to.equal(t1 + 1n)
  })

  it('accepts times as well as tids', () => {
    const { db } = history()
    const now = db.open({ at: new Date(Date.now() + 60_000) })
    expect((now.root.item as Item).value).to.equal(3)
    const past = db.open({ before: new Date('2000-01-01T00:00:00Z') })
    expect(() => past.root).to.throw(ReadConflictError) // nothing existed then
  })

  it('refuses changes with ReadOnlyHistoryError and leaves the object unchanged', () => {
    const { db, t1 } = history()
    const conn = db.open({ at: t1 })
    const item = conn.root.item as Item
    expect(() => (item.value = 5)).to.throw(ReadOnlyHistoryError)
    expect(item.value).to.equal(1)
    expect(() => (conn.root.other = 1)).to.throw(ReadOnlyHistoryError)
    expect(() => conn.add(new Item())).to.throw(ReadOnlyHistoryError)
  })

  it('never moves: later commits and transaction boundaries do not change what it sees', () => {
    const { db, s, t2 } = history()
    const conn = db.open({ at: t2, transactionManager: s.tm })
    const item = conn.root.item as Item
    expect(item.value).to.equal(2)
    ;(s.root.item as Item).value = 4
    s.tm.commit()
    s.tm.begin()
    conn.cacheMinimize()
    expect(item.value).to.equal(2)
  })

  it('is not pooled: closing drops it', () => {
    const { db, t1 } = history()
    const before = db.connectionCount
    const conn = db.open({ at: t1 })
    expect(db.connectionCount).to.equal(before + 1)
    conn.close()
    expect(db.connectionCount).to.equal(before)
    expect(db.pooledCount).to.equal(0)
  })

  it('refuses both at and before', () => {
    const { db, t1 } = history()
    expect(() => db.open({ at: t1, before: t1 })).to.throw(TypeError)
  })
})

describe('historical connections and the cache', () => {
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
