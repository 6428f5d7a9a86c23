// MVCC: a connection reads one consistent snapshot per transaction; other connections' commits
// become visible at its transaction boundaries only (ZODB's testmvcc).
import { expect } from 'chai'
import { ConflictError, GHOST, ReadConflictError } from '@wendelin/zodb'

import { Item, newDB, session } from './helpers.js'

describe('MVCC', () => {
  function setup() {
    const db = newDB()
    const a = session(db)
    a.root.x = new Item('x', 0)
    a.root.y = new Item('y', 0)
    a.tm.commit()
    const b = session(db)
    return { db, a, b }
  }

  it('keeps an object read in this transaction as it was, after another connection commits', () => {
    const { a, b } = setup()
    b.tm.begin()
    expect((b.root.x as Item).value).to.equal(0)
    ;(a.root.x as Item).value = 1
    a.tm.commit()
    expect((b.root.x as Item).value).to.equal(0)
  })

  it('loads objects not read yet as of the snapshot too (loadBefore)', () => {
    const { a, b } = setup()
    b.tm.begin()
    const bx = b.root.x as Item
    const by = b.root.y as Item
    expect(by._p_state).to.equal(GHOST)
    ;(a.root.x as Item).value = 1
    ;(a.root.y as Item).value = 1
    a.tm.commit()
    // Consistent: y is read as of the same snapshot as x, not as committed now.
    expect(bx.value).to.equal(0)
    expect(by.value).to.equal(0)
  })

  it('applies invalidations at the next transaction boundary: begin, commit or abort', () => {
    const { a, b } = setup()
    const bx = b.root.x as Item
    expect(bx.value).to.equal(0)
    ;(a.root.x as Item).value = 1
    a.tm.commit()
    expect(bx.value).to.equal(0)
    b.tm.begin()
    expect(bx._p_state).to.equal(GHOST)
    expect(bx.value).to.equal(1)
    ;(a.root.x as Item).value = 2
    a.tm.commit()
    b.tm.abort()
    expect(bx.value).to.equal(2)
    ;(a.root.x as Item).value = 3
    a.tm.commit()
    b.tm.commit()
    expect(bx.value).to.equal(3)
  })

  it('applies no invalidations at a savepoint', () => {
    const { a, b } = setup()
    b.tm.begin()
    const bx = b.root.x as Item
    ;(b.root.y as Item).value = 'mine'
    expect(bx.value).to.equal(0)
    ;(a.root.x as Item).value = 1
    a.tm.commit()
    b.tm.savepoint()
    expect(bx.value).to.equal(0)
    expect(bx._p_state).to.not.equal(GHOST)
  })

  it('sync() moves the snapshot forward outside a transaction with changes', () => {
    const { a, b } = setup()
    const bx = b.root.x as Item
    void bx.value
    ;(a.root.x as Item).value = 1
    a.tm.commit()
    b.conn.sync()
    expect(bx.value).to.equal(1)
  })

  it('raises ConflictError when writing an object changed since the snapshot', () => {
    const { a, b } = setup()
    b.tm.begin()
    ;(a.root.x as Item).value = 1
    a.tm.commit()
    ;(b.root.x as Item).value = 2
    expect(() => b.tm.commit()).to.throw(ConflictError)
    b.tm.abort()
    expect((b.root.x as Item).value).to.equal(1)
    ;(b.root.x as Item).value = 2
    b.tm.commit()
    a.tm.begin()
    expect((a.root.x as Item).value).to.equal(2)
  })

  it('lets disjoint changes of two connections both commit', () => {
    const { a, b } = setup()
    b.tm.begin()
    ;(a.root.x as Item).value = 1
    ;(b.root.y as Item).value = 1
    a.tm.commit()
    b.tm.commit()
    a.tm.begin()
    expect([(a.root.x as Item).value, (a.root.y as Item).value]).to.deep.equal([1, 1])
  })

  it('raises ReadConflictError for an object that did not exist in the snapshot', () => {
    const { a, b } = setup()
    b.tm.begin()
    void b.root.x
    const fresh = new Item('fresh')
    a.root.fresh = fresh
    a.tm.commit()
    expect(() => b.conn.get(fresh._p_oid!)).to.throw(ReadConflictError, /did not exist in this connection's snapshot/)
    b.tm.begin()
    expect(b.conn.get(fresh._p_oid!)).to.be.instanceOf(Item)
  })

  it('after its own commit a connection sees its own changes and others committed before', () => {
    const { a, b } = setup()
    b.tm.begin()
    const bx = b.root.x as Item
    void bx.value
    ;(a.root.x as Item).value = 1
    a.tm.commit()
    ;(b.root.y as Item).value = 5
    b.tm.commit()
    expect((b.root.y as Item).value).to.equal(5)
    expect(bx.value).to.equal(1)
  })
})
