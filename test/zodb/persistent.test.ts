// Persistent objects: states, the _p_ attributes and transparent loading and change tracking
// (the behaviours of persistent's test_persistence, on a real connection).
import { expect } from 'chai'
import {
  CHANGED,
  ConnectionStateError,
  GHOST,
  Persistent,
  PersistentList,
  PersistentMapping,
  STICKY,
  UPTODATE,
  registerClass,
  tidToDate,
} from '@wendelin/zodb'

import { Item, newDB, session, type Session } from './helpers.js'

class Custom extends Persistent {
  secret = ''
  derived = 0
  override _p_getState() {
    return { s: this.secret.split('').reverse().join('') }
  }
  override _p_setState(state: unknown) {
    this.secret = ((state as { s: string }).s ?? '').split('').reverse().join('')
    this.derived = this.secret.length
  }
}
registerClass('test.persistent.Custom', Custom)

describe('Persistent', () => {
  describe('unsaved', () => {
    it('has no oid, no jar, is up to date and not changed', () => {
      const p = new Item('a', 1)
      expect(p._p_oid).to.equal(null)
      expect(p._p_jar).to.equal(null)
      expect(p._p_changed).to.equal(false)
      expect(p._p_state).to.equal(UPTODATE)
      expect(p._p_status).to.equal('unsaved')
      expect(p._p_serial).to.equal(0n)
      expect(p._p_mtime).to.equal(null)
      p.value = 2
      expect(p._p_changed).to.equal(false)
      p._p_changed = true
      expect(p._p_status).to.equal('unsaved')
    })

    it('keeps its attributes as plain own properties, _v_ and _p_ ones out of its state', () => {
      const p = new Item('a', 1)
      ;(p as unknown as Record<string, unknown>).extra = 'x'
      ;(p as unknown as Record<string, unknown>)._v_cache = 'v'
      expect(Object.keys(p)).to.deep.equal(['name', 'value', 'extra'])
      expect(p._p_getState()).to.deep.equal({ name: 'a', value: 1, extra: 'x' })
    })

    it('accepts an oid and a jar once', () => {
      const p = new Item()
      p._p_oid = 42n
      expect(p._p_oid).to.equal(42n)
      p._p_oid = 43n // no jar yet: allowed
      expect(p._p_oid).to.equal(43n)
    })

    it('validates _p_estimatedSize and _p_serial', () => {
      const p = new Item()
      p._p_estimatedSize = 100.5
      expect(p._p_estimatedSize).to.equal(101)
      expect(() => (p._p_estimatedSize = -1)).to.throw(RangeError)
      expect(() => ((p as unknown as { _p_serial: unknown })._p_serial = 5)).to.throw(TypeError)
    })
  })

  describe('in a connection', () => {
    let s: Session
    let item: Item

    beforeEach(() => {
      s = session(newDB())
      item = new Item('thing', 1)
      s.root.item = item
      s.tm.commit()
    })

    it('is saved after commit, with an oid, jar, serial and mtime', () => {
      expect(item._p_status).to.equal('saved')
      expect(item._p_oid).to.be.a('bigint')
      expect(item._p_jar).to.equal(s.conn)
      expect(item._p_serial).to.equal(s.conn.db.storage.lastTransaction())
      expect(item._p_mtime!.getTime()).to.equal(tidToDate(item._p_serial).getTime())
      expect(item._p_estimatedSize).to.be.above(0)
    })

    it('marks itself changed and joins the transaction once, on the first write', () => {
      const txn = s.tm.get()
      item.value = 2
      expect(item._p_changed).to.equal(true)
      expect(item._p_state).to.equal(CHANGED)
      item.value = 3
      item.name = 'again'
      expect(txn.resources.filter((r) => r === (s.conn as unknown))).to.have.length(1)
      s.tm.commit()
      expect(item._p_status).to.equal('saved')
      const other = session(s.conn.db as never)
      expect((other.root.item as Item).value).to.equal(3)
    })

    it('tracks attributes added after creation, as well as declared fields', () => {
      ;(item as unknown as Record<string, unknown>).added = 'later'
      expect(item._p_changed).to.equal(true)
      s.tm.commit()
      const other = session(s.conn.db as never)
      expect((other.root.item as unknown as Record<string, unknown>).added).to.equal('later')
    })

    it('never stores _v_ attributes and they never mark changes', () => {
      ;(item as unknown as Record<string, unknown>)._v_temp = 'volatile'
      expect(item._p_changed).to.equal(false)
      expect((item as unknown as Record<string, unknown>)._v_temp).to.equal('volatile')
      item.value = 5
      s.tm.commit()
      const other = session(s.conn.db as never)
      expect((other.root.item as unknown as Record<string, unknown>)._v_temp).to.equal(undefined)
      // A ghost loses its _v_ attributes.
      item._p_invalidate()
      expect((item as unknown as Record<string, unknown>)._v_temp).to.equal(undefined)
    })

    it('keeps an unsaved object _v_, accessor and symbol properties when it is stored; its ghost has none', () => {
      const p = new Item('p', 1) as unknown as Record<string | symbol, unknown> & Item
      const tag = Symbol('tag')
      p._v_cache = 'volatile' // non-enumerable, made by the prototype hook
      Object.defineProperty(p, 'computed', { get: () => 42, enumerable: true, configurable: true })
      p[tag] = 'symbol'
      p.after = 'added last'
      s.root.p = p
      s.tm.commit()
      expect(Object.keys(p)).to.deep.equal(['name', 'value', 'computed', 'after'])
      expect(p._p_getState()).to.deep.include({ name: 'p', value: 1, after: 'added last' })
      expect(p._v_cache).to.equal('volatile')
      expect(p.computed).to.equal(42)
      expect(p[tag]).to.equal('symbol')
      // The accessor is the object's own, not a state attribute: writing through it is no change.
      expect(Object.getOwnPropertyDescriptor(p, 'computed')!.set).to.equal(undefined)
      p.after = 'changed'
      expect(p._p_changed).to.equal(true)
      s.tm.commit()
      p._p_invalidate()
      expect(Reflect.ownKeys(p)).to.deep.equal([])
      expect(p.after).to.equal('changed')
      expect(p._v_cache).to.equal(undefined)
    })

    it('keeps an enumerable setter-only accessor and an enumerable _v_ data property as they are when stored', () => {
      const p = new Item('p', 1) as unknown as Record<string, unknown> & Item
      let written: unknown
      Object.defineProperty(p, 'sink', { set: (v: unknown) => (written = v), enumerable: true, configurable: true })
      Object.defineProperty(p, '_v_seen', { value: 'v', writable: false, enumerable: true, configurable: true })
      p.after = 'last'
      s.root.p2 = p
      s.tm.commit()
      expect(Object.keys(p)).to.deep.equal(['name', 'value', 'sink', '_v_seen', 'after'])
      expect(Object.getOwnPropertyDescriptor(p, 'sink')!.get).to.equal(undefined)
      p.sink = 5
      expect(written).to.equal(5)
      expect(p._p_changed).to.equal(false)
      expect(Object.getOwnPropertyDescriptor(p, '_v_seen')).to.deep.equal({ value: 'v', writable: false, enumerable: true, configurable: true })
      expect(p._p_getState()).to.deep.equal({ name: 'p', value: 1, sink: undefined, after: 'last' })
      p.after = 'changed'
      expect(p._p_changed).to.equal(true)
    })

    it('a ghost has no own property left, whatever the application defined itself (non-enumerable, symbol, after a load)', () => {
      const tag = Symbol('tag')
      const defineExtras = (o: object) => {
        Object.defineProperty(o, 'hidden', { value: 'h', writable: true, enumerable: false, configurable: true })
        Object.defineProperty(o, tag, { value: 's', writable: true, enumerable: true, configurable: true })
      }
      // Defined while unsaved (kept when stored), then on the loaded object (no prototype hook sees either).
      const p = new Item('p', 1) as unknown as Record<string | symbol, unknown> & Item
      defineExtras(p)
      s.root.extras = p
      s.tm.commit()
      expect(Reflect.ownKeys(p)).to.have.members(['name', 'value', 'hidden', tag])
      p._p_invalidate()
      expect(Reflect.ownKeys(p)).to.deep.equal([])
      expect(p.name).to.equal('p')
      defineExtras(p)
      p._p_deactivate()
      expect(Reflect.ownKeys(p)).to.deep.equal([])
      expect(p.hidden).to.equal(undefined)
      expect(p[tag]).to.equal(undefined)
      expect(p.value).to.equal(1)
      // The same after the prototype hook made a _v_ attribute and a symbol one.
      p._v_x = 1
      p[tag] = 2
      p._p_deactivate()
      expect(Reflect.ownKeys(p)).to.deep.equal([])
      expect(p.value).to.equal(1)
      expect(Object.keys(p)).to.deep.equal(['name', 'value'])
      p._p_deactivate()
      expect(Reflect.ownKeys(p)).to.deep.equal([])
    })

    it('switches objects whose attribute names match an earlier stored object the same way, unless they are not plain data', () => {
      // The first objects of each list of names go the generic way; later ones reuse what it learnt.
      const plain = Array.from({ length: 4 }, (_, i) => new Item(`p${i}`, i) as unknown as Record<string, unknown> & Item)
      const getter = new Item('g', 1) as unknown as Record<string, unknown> & Item
      Object.defineProperty(getter, 'value', { get: () => 'computed', enumerable: true, configurable: true })
      const setterOnly = new Item('s', 1) as unknown as Record<string, unknown> & Item
      let written: unknown
      Object.defineProperty(setterOnly, 'value', { set: (v: unknown) => (written = v), enumerable: true, configurable: true })
      const undefinedValue = new Item('u', undefined) as unknown as Record<string, unknown> & Item
      const all = [...plain, getter, setterOnly, undefinedValue]
      all.forEach((p, i) => (s.root[`layout${i}`] = p))
      s.tm.commit()
      for (const p of [...plain, undefinedValue]) {
        expect(Object.keys(p)).to.deep.equal(['name', 'value'])
        expect(Object.getOwnPropertyDescriptor(p, 'value')!.get).to.be.a('function')
        p.value = 'changed'
        expect(p._p_changed).to.equal(true)
      }
      expect(getter.value).to.equal('computed')
      expect(Object.getOwnPropertyDescriptor(getter, 'value')!.set).to.equal(undefined)
      setterOnly.value = 7
      expect(written).to.equal(7)
      expect(setterOnly._p_changed).to.equal(false)
      getter.name = 'changed'
      expect(getter._p_changed).to.equal(true)
      s.tm.commit()
      const other = session(s.conn.db as never)
      expect(all.map((_, i) => (other.root[`layout${i}`] as Item).value)).to.deep.equal(['changed', 'changed', 'changed', 'changed', 'computed', undefined, 'changed'])
      expect((other.root.layout4 as Item).name).to.equal('changed')
    })

    it('keeps an enumerable accessor with neither getter nor setter as it is when stored', () => {
      const p = new Item('p', 1) as unknown as Record<string, unknown> & Item
      Object.defineProperty(p, 'hollow', { get: undefined, set: undefined, enumerable: true, configurable: true })
      s.root.p3 = p
      s.tm.commit()
      expect(Object.getOwnPropertyDescriptor(p, 'hollow')).to.deep.equal({ get: undefined, set: undefined, enumerable: true, configurable: true })
      expect(() => {
        p.hollow = 5
      }).to.throw(TypeError)
      expect(p._p_changed).to.equal(false)
      expect(p.name).to.equal('p')
    })

    it('keeps any number of attributes of a stored object in order, read and written as before', () => {
      // A stored object's state goes into a dictionary sized for its attributes (5 to 8: their own).
      for (let n = 0; n <= 10; n++) {
        const p = new Item('p', n) as unknown as Record<string, unknown> & Item
        for (let i = 0; i < n; i++) p[`a${i}`] = i % 2 === 0 ? i : { i }
        const keys = Object.keys(p)
        s.root[`sized${n}`] = p
        s.tm.commit()
        expect(p._p_status).to.equal('saved')
        expect(Object.keys(p)).to.deep.equal(keys)
        for (let i = 0; i < n; i++) expect(p[`a${i}`]).to.deep.equal(i % 2 === 0 ? i : { i })
        if (n > 0) {
          p[`a${n - 1}`] = 'changed'
          expect(p._p_changed).to.equal(true)
          s.tm.commit()
          p._p_invalidate()
          expect(p[`a${n - 1}`]).to.equal('changed')
        }
      }
    })

    it('becomes a ghost on _p_invalidate and loads on the first attribute read', () => {
      item._p_invalidate()
      expect(item._p_state).to.equal(GHOST)
      expect(item._p_status).to.equal('ghost')
      expect(item._p_changed).to.equal(null)
      expect(Object.keys(item)).to.deep.equal([])
      expect(item.value).to.equal(1)
      expect(item._p_state).to.equal(UPTODATE)
      expect(Object.keys(item)).to.deep.equal(['name', 'value'])
    })

    it('loads a ghost on a write, then marks it changed', () => {
      item._p_invalidate()
      item.value = 9
      expect(item._p_state).to.equal(CHANGED)
      expect(item.name).to.equal('thing')
    })

    it('loads a ghost for JSON.stringify but not for await', async () => {
      item._p_invalidate()
      const same = await Promise.resolve(item).then((x) => x)
      expect(same).to.equal(item)
      expect(item._p_state).to.equal(GHOST)
      expect(JSON.parse(JSON.stringify(item))).to.deep.equal({ name: 'thing', value: 1 })
    })

    it('_p_deactivate ghosts an up-to-date object but leaves a changed one alone', () => {
      item._p_deactivate()
      expect(item._p_state).to.equal(GHOST)
      item.value = 2
      item._p_deactivate()
      expect(item._p_state).to.equal(CHANGED)
      expect(item.value).to.equal(2)
    })

    it('_p_changed: null deactivates, false forgets the change flag, true activates and marks', () => {
      item._p_changed = null
      expect(item._p_state).to.equal(GHOST)
      item._p_changed = true
      expect(item._p_state).to.equal(CHANGED)
      expect(item.name).to.equal('thing')
      item._p_changed = false
      expect(item._p_state).to.equal(UPTODATE)
      item._p_changed = null
      expect(item._p_state).to.equal(GHOST)
    })

    it('_p_invalidate ghosts even a changed object', () => {
      item.value = 7
      item._p_invalidate()
      expect(item._p_state).to.equal(GHOST)
      expect(item.value).to.equal(1)
    })

    it('a sticky object is not made a ghost by _p_deactivate or the cache', () => {
      item._p_sticky = true
      expect(item._p_state).to.equal(STICKY)
      expect(item._p_changed).to.equal(false)
      item._p_deactivate()
      s.conn.cacheMinimize()
      expect(item._p_state).to.equal(STICKY)
      item.value = 3
      expect(item._p_state).to.equal(CHANGED)
      s.tm.abort()
      expect(item.value).to.equal(1)
    })

    it('refuses to move to another jar or oid', () => {
      expect(() => (item._p_oid = 99n)).to.throw(ConnectionStateError)
      expect(() => (item._p_jar = null)).to.throw(ConnectionStateError)
    })

    it('works as a dictionary of thousands of distinct attribute names, and with __proto__', () => {
      const n = 5000
      const names = Array.from({ length: n }, (_, i) => `key_${i}_${Math.random().toString(36).slice(2)}`)
      const root = s.root as Record<string, unknown>
      for (const [i, name] of names.entries()) root[name] = i
      Object.defineProperty(root, '__proto__', { value: 'data', writable: true, enumerable: true, configurable: true })
      s.tm.commit()
      const other = session(s.conn.db as never)
      const r = other.root as Record<string, unknown>
      expect(names.every((name, i) => r[name] === i)).to.equal(true)
      expect(Object.getOwnPropertyDescriptor(r, '__proto__')?.get?.call(r)).to.equal('data')
      r[names[n - 1]!] = 'changed'
      expect(other.root._p_changed).to.equal(true)
      other.tm.commit()
      s.tm.begin()
      expect(root[names[n - 1]!]).to.equal('changed')
    })

    it('uses overridden _p_getState/_p_setState', () => {
      const c = new Custom()
      c.secret = 'abc'
      s.root.custom = c
      s.tm.commit()
      const other = session(s.conn.db as never)
      const c2 = other.root.custom as Custom
      expect(c2.secret).to.equal('abc')
      expect(c2.derived).to.equal(3)
      expect(c2._p_changed).to.equal(false) // loading is not a change
    })

    it('shows its class, oid and state when inspected', async () => {
      const { inspect } = await import('node:util')
      expect(inspect(item)).to.match(/^Item <oid 0x[0-9a-f]{16} saved> \{"name":"thing","value":1\}$/)
      item._p_invalidate()
      expect(inspect(item)).to.match(/ghost/)
    })
  })

  describe('PersistentMapping', () => {
    it('is Map-like and tracks its own mutations', () => {
      const s = session(newDB())
      const m = new PersistentMapping<string, number>([['a', 1]])
      s.root.m = m
      s.tm.commit()
      expect(m._p_changed).to.equal(false)
      m.set('b', 2)
      expect(m._p_changed).to.equal(true)
      s.tm.commit()
      m.delete('a')
      expect(m._p_changed).to.equal(true)
      s.tm.commit()
      expect([...m]).to.deep.equal([['b', 2]])
      expect(m.size).to.equal(1)
      expect(m.setDefault('c', 3)).to.equal(3)
      expect(m.pop('c')).to.equal(3)
      m.update([['x', 9]])
      s.tm.commit()
      const other = session(s.conn.db as never)
      const m2 = other.root.m as PersistentMapping<string, number>
      expect([...m2.entries()]).to.deep.equal([
        ['b', 2],
        ['x', 9],
      ])
      expect(m2.has('x') && m2.get('x')).to.equal(9)
      m2.clear()
      expect(m2._p_changed).to.equal(true)
    })

    it('accepts a plain object of entries', () => {
      expect([...new PersistentMapping({ a: 1, b: 2 }).keys()]).to.deep.equal(['a', 'b'])
    })
  })

  describe('PersistentList', () => {
    it('is Array-like and tracks its own mutations', () => {
      const s = session(newDB())
      const l = new PersistentList([3, 1, 2])
      s.root.l = l
      s.tm.commit()
      l.push(4)
      expect(l._p_changed).to.equal(true)
      s.tm.commit()
      l.sort()
      s.tm.commit()
      l.set(0, 10)
      s.tm.commit()
      expect(l.toArray()).to.deep.equal([10, 2, 3, 4])
      const other = session(s.conn.db as never)
      const l2 = other.root.l as PersistentList<number>
      expect([...l2]).to.deep.equal([10, 2, 3, 4])
      expect(l2.length).to.equal(4)
      expect(l2.at(-1)).to.equal(4)
      expect(l2.pop()).to.equal(4)
      expect(l2.shift()).to.equal(10)
      expect(l2.splice(0, 1)).to.deep.equal([2])
      l2.unshift(0)
      l2.reverse()
      expect(l2.slice()).to.deep.equal([3, 0])
      expect(l2.map((x) => x * 2)).to.deep.equal([6, 0])
      expect(l2.includes(3) && l2.indexOf(0)).to.equal(1)
      other.tm.commit()
      expect(l2._p_changed).to.equal(false)
    })

    it('set() refuses an index that is not a non-negative integer instead of losing the value at commit', () => {
      const s = session(newDB())
      const l = new PersistentList([1, 2, 3])
      s.root.l = l
      s.tm.commit()
      // data[-1] = v makes an array property that is never stored: the change was marked, then lost.
      for (const bad of [-1, 1.5, NaN]) {
        expect(() => l.set(bad, 9)).to.throw(RangeError)
      }
      expect(l.toArray()).to.deep.equal([1, 2, 3])
      l.set(3, 4)
      s.tm.commit()
      expect((session(s.conn.db as never).root.l as PersistentList<number>).toArray()).to.deep.equal([1, 2, 3, 4])
    })

    it('splice(start, undefined, ...items) deletes nothing and inserts the items, as Array.prototype.splice', () => {
      const s = session(newDB())
      const l = new PersistentList([3, 1, 2])
      s.root.l = l
      s.tm.commit()
      const expected = [3, 1, 2]
      expect(l.splice(1, undefined, 7)).to.deep.equal(expected.splice(1, undefined as unknown as number, 7))
      s.tm.commit()
      expect((session(s.conn.db as never).root.l as PersistentList<number>).toArray()).to.deep.equal(expected)
      expect(l.splice(1)).to.deep.equal([7, 1, 2])
      expect(l.toArray()).to.deep.equal([3])
    })
  })
})

describe('sticky objects', () => {
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
