// Conflict resolution through connections: a class with _p_resolveConflict merges concurrent
// changes; the committer's copy is refreshed with the merged state (ZODB's testconflictresolution).
import { expect } from 'chai'
import { ConflictError, Persistent, PersistentReference, registerClass } from '@wendelin/zodb'

import { Counter, Item, newDB, session } from './helpers.js'

/** Keeps the union of two sets of persistent references. */
class Bag extends Persistent {
  items: Persistent[] = []
  override _p_resolveConflict(old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>) {
    const merged = [...(committed.items as PersistentReference[])]
    for (const ref of mine.items as PersistentReference[]) {
      if (!merged.some((r) => r.sameAs(ref))) merged.push(ref)
    }
    void old
    return { items: merged }
  }
}
registerClass('test.conflict.Bag', Bag)

class Refuses extends Persistent {
  value = 0
  override _p_resolveConflict(): Record<string, unknown> {
    throw new Error('these changes do not mix')
  }
}
registerClass('test.conflict.Refuses', Refuses)

/** Refuses with a ConflictError of its own, as BTrees' resolvers do in ZODB. */
class RefusesWithConflict extends Persistent {
  value = 0
  override _p_resolveConflict(): Record<string, unknown> {
    throw new ConflictError('both changed the same key')
  }
}
registerClass('test.conflict.RefusesWithConflict', RefusesWithConflict)

/** Throws a string, not an Error. */
class ThrowsString extends Persistent {
  value = 0
  override _p_resolveConflict(): Record<string, unknown> {
    throw 'the two totals disagree'
  }
}
registerClass('test.conflict.ThrowsString', ThrowsString)

/** Returns what the test sets: a state that is not an object of attributes. */
class ResolvesTo extends Persistent {
  static result: unknown = null
  value = 0
  override _p_resolveConflict(): Record<string, unknown> {
    return ResolvesTo.result as Record<string, unknown>
  }
}
registerClass('test.conflict.ResolvesTo', ResolvesTo)

describe('conflict resolution', () => {
  it('merges concurrent increments of a resolving counter', () => {
    const db = newDB()
    const a = session(db)
    a.root.counter = new Counter()
    a.tm.commit()
    const b = session(db)
    const ca = a.root.counter as Counter
    const cb = b.root.counter as Counter
    ca.value += 5
    cb.value += 3
    a.tm.commit()
    b.tm.commit() // conflicts, resolved by the storage
    expect(cb.value).to.equal(8) // the committer reloads the merged state
    a.tm.begin()
    expect(ca.value).to.equal(8)
    expect(db.history(ca._p_oid!, 10)).to.have.length(3)
  })

  it('merges states holding references to persistent objects', () => {
    const db = newDB()
    const a = session(db)
    a.root.bag = new Bag()
    a.tm.commit()
    const b = session(db)
    ;(a.root.bag as Bag).items.push(new Item('from a'))
    ;(a.root.bag as Bag)._p_changed = true
    ;(b.root.bag as Bag).items = [new Item('from b')]
    a.tm.commit()
    b.tm.commit()
    const c = session(db)
    expect((c.root.bag as Bag).items.map((i) => (i as Item).name).sort()).to.deep.equal(['from a', 'from b'])
  })

  /**
   * Two sessions change `value` of one object of class `cls`, `a` commits first: the error of
   * `b`'s commit, with both sessions (b's transaction still to abort).
   */
  function conflictingCommit(cls: new () => Persistent & { value: number }) {
    const db = newDB()
    const a = session(db)
    a.root.r = new cls()
    a.tm.commit()
    const b = session(db)
    ;(a.root.r as InstanceType<typeof cls>).value = 1
    ;(b.root.r as InstanceType<typeof cls>).value = 2
    a.tm.commit()
    let error: unknown
    try {
      b.tm.commit()
    } catch (e) {
      error = e
    }
    return { a, b, error }
  }

  it('leaves the conflict standing when the class refuses, naming the class', () => {
    const { b, error } = conflictingCommit(Refuses)
    expect(error).to.be.instanceOf(ConflictError)
    expect((error as ConflictError).className).to.equal('test.conflict.Refuses')
    expect((error as Error).message).to.match(/these changes do not mix/)
    b.tm.abort()
    expect((b.root.r as Refuses).value).to.equal(1)
  })

  it('a resolver that throws something other than an Error: the ConflictError says what it threw', () => {
    const { b, error } = conflictingCommit(ThrowsString)
    expect(error).to.be.instanceOf(ConflictError)
    expect((error as Error).message).to.match(/the two totals disagree/)
    b.tm.abort()
  })

  for (const result of [null, undefined, 42, 'state']) {
    it(`a resolver whose merged state is not an object (${String(result)}) fails the commit, instead of storing a record no one can load`, () => {
      ResolvesTo.result = result
      const { a, b, error } = conflictingCommit(ResolvesTo)
      expect(error).to.be.instanceOf(ConflictError)
      expect((error as ConflictError).className).to.equal('test.conflict.ResolvesTo')
      b.tm.abort()
      a.tm.begin()
      expect((a.root.r as ResolvesTo).value).to.equal(1)
    })
  }

  it('a ConflictError thrown by the resolver still names the object, its class and serials', () => {
    const { a, b, error } = conflictingCommit(RefusesWithConflict)
    expect(error).to.be.instanceOf(ConflictError)
    const conflict = error as ConflictError
    expect(conflict.oid).to.equal((a.root.r as RefusesWithConflict)._p_oid)
    expect(conflict.className).to.equal('test.conflict.RefusesWithConflict')
    expect(conflict.committedSerial).to.equal((a.root.r as RefusesWithConflict)._p_serial)
    expect(conflict.message).to.match(/both changed the same key/)
    b.tm.abort()
  })

  it('does not resolve conflicts of classes without a resolver', () => {
    const db = newDB()
    const a = session(db)
    a.root.i = new Item('i', 0)
    a.tm.commit()
    const b = session(db)
    ;(a.root.i as Item).value = 1
    ;(b.root.i as Item).value = 2
    a.tm.commit()
    expect(() => b.tm.commit()).to.throw(ConflictError, /does not resolve conflicts/)
    b.tm.abort()
  })
})
