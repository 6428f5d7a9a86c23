// Savepoints of a connection: rollback restores object state, new objects created after the
// savepoint are forgotten, commit writes changes from before and after savepoints
// (ZODB's testConnectionSavepoint).
import { expect } from 'chai'
import { InvalidSavepointRollbackError } from '@wendelin/transaction'
import { PersistentMapping } from '@wendelin/zodb'

import { Item, newDB, session } from './helpers.js'

describe('Connection savepoints', () => {
  function setup() {
    const db = newDB()
    const s = session(db)
    s.root.accounts = new PersistentMapping<string, Item>([
      ['bob', new Item('bob', 0)],
      ['sally', new Item('sally', 0)],
    ])
    s.tm.commit()
    const accounts = s.root.accounts as PersistentMapping<string, Item>
    return { db, s, accounts, bob: accounts.get('bob')!, sally: accounts.get('sally')! }
  }

  it('rolls object state back to the savepoint', () => {
    const { s, bob, sally } = setup()
    bob.value = 100
    const sp = s.tm.savepoint()
    bob.value = 200
    sally.value = 50
    sp.rollback()
    expect(bob.value).to.equal(100)
    expect(sally.value).to.equal(0)
    s.tm.commit()
    const other = session(s.conn.db as never)
    const acc = other.root.accounts as PersistentMapping<string, Item>
    expect([acc.get('bob')!.value, acc.get('sally')!.value]).to.deep.equal([100, 0])
  })

  it('rolls back to a savepoint made before the connection joined: its changes are aborted', () => {
    const { s, bob, db } = setup()
    const sp = s.tm.savepoint() // nothing joined yet
    bob.value = 5
    expect(s.tm.get().resources).to.deep.equal([s.conn])
    sp.rollback()
    expect(bob.value).to.equal(0)
    expect(s.tm.get().resources).to.deep.equal([])
    bob.value = 6 // joins again
    s.tm.commit()
    const other = session(db)
    expect((other.root.accounts as PersistentMapping<string, Item>).get('bob')!.value).to.equal(6)
  })

  it('commits changes made before and after a savepoint', () => {
    const { s, bob, sally, db } = setup()
    bob.value = 1
    s.tm.savepoint()
    sally.value = 2
    s.tm.savepoint()
    bob.value = 3
    s.tm.commit()
    const other = session(db)
    const acc = other.root.accounts as PersistentMapping<string, Item>
    expect([acc.get('bob')!.value, acc.get('sally')!.value]).to.deep.equal([3, 2])
  })

  it('can roll back to the same savepoint several times, and not to one after an earlier rollback', () => {
    const { s, bob } = setup()
    bob.value = 1
    const sp1 = s.tm.savepoint()
    bob.value = 2
    const sp2 = s.tm.savepoint()
    bob.value = 3
    sp2.rollback()
    expect(bob.value).to.equal(2)
    bob.value = 4
    sp2.rollback()
    expect(bob.value).to.equal(2)
    sp1.rollback()
    expect(bob.value).to.equal(1)
    expect(() => sp2.rollback()).to.throw(InvalidSavepointRollbackError)
    s.tm.commit()
    expect(bob.value).to.equal(1)
  })

  it('forgets objects added after the savepoint and keeps those added before', () => {
    const { s, accounts, db } = setup()
    const before = new Item('before', 1)
    accounts.set('before', before)
    const sp = s.tm.savepoint()
    expect(before._p_oid).to.be.a('bigint')
    const after = new Item('after', 2)
    accounts.set('after', after)
    s.conn.add(after)
    sp.rollback()
    expect(after._p_oid).to.equal(null)
    expect(accounts.has('after')).to.equal(false)
    expect(accounts.get('before')).to.equal(before)
    expect(before.value).to.equal(1)
    s.tm.commit()
    const other = session(db)
    const acc = other.root.accounts as PersistentMapping<string, Item>
    expect(acc.get('before')!.value).to.equal(1)
    expect(acc.has('after')).to.equal(false)
  })

  it('keeps savepoint state when the cache drops objects, and abort discards it all', () => {
    const { s, bob, db } = setup()
    bob.value = 7
    s.tm.savepoint()
    s.conn.cacheMinimize()
    expect(bob._p_changed).to.equal(null) // a ghost now, its state in the savepoint store
    expect(bob.value).to.equal(7)
    s.tm.abort()
    expect(bob.value).to.equal(0)
    expect(db.storage.history(bob._p_oid!, 10)).to.have.length(1)
  })

  it('commits objects the cache dropped after a savepoint, leaving them ghosts the cache can forget', () => {
    const { s, bob, sally } = setup()
    bob.value = 3
    sally.value = 4
    s.tm.savepoint()
    s.conn.cacheMinimize()
    expect([bob._p_changed, sally._p_changed]).to.deep.equal([null, null])
    s.tm.commit()
    // Stored from the savepoint's records; still ghosts, so not active (the cache would hold
    // them strongly and count their bytes, and incremental GC could never let them go).
    expect([bob._p_changed, sally._p_changed]).to.deep.equal([null, null])
    const active = s.conn.cache.activeCount
    expect(bob.value).to.equal(3)
    expect(s.conn.cache.activeCount).to.equal(active + 1)
    const other = session(s.conn.db as never)
    const acc = other.root.accounts as PersistentMapping<string, Item>
    expect([acc.get('bob')!.value, acc.get('sally')!.value]).to.deep.equal([3, 4])
  })

  it('still detects write conflicts for objects saved in a savepoint', () => {
    const { s, bob, db } = setup()
    const other = session(db)
    bob.value = 1
    s.tm.savepoint()
    const otherBob = (other.root.accounts as PersistentMapping<string, Item>).get('bob')!
    otherBob.value = 99
    other.tm.commit()
    expect(() => s.tm.commit()).to.throw(/conflict/)
    s.tm.abort()
  })

  it("commits a savepoint's record of an object changed again, then marked unchanged (_p_changed = false)", () => {
    // As ZODB: every record of the savepoints is stored; one stored again from the object's
    // state only if the object is still changed (marking it unchanged keeps its memory state).
    const { db, s, bob } = setup()
    bob.value = 2
    s.tm.savepoint()
    bob.value = 3
    bob._p_changed = false
    s.tm.commit()
    const other = session(db)
    expect((other.root.accounts as PersistentMapping<string, Item>).get('bob')!.value).to.equal(2)
  })
})
