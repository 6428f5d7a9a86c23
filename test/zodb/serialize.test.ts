// Records: every storable kind of value round-trips; what cannot be stored fails the commit with
// the attribute path and nothing is written; references make ghosts without loads; unknown
// classes are clear errors but the database can still be dumped (ZODB's testSerialize).
import { expect } from 'chai'
import { TransactionFailedError } from '@wendelin/transaction'
import {
  Broken,
  CorruptRecordError,
  GHOST,
  InvalidObjectReference,
  Persistent,
  RECORD_FORMAT_VERSION,
  UnknownClassError,
  UnserializableError,
  decodeForDump,
  encodeStateRecord,
  recordClassName,
  referencesIn,
  registerClass,
} from '@wendelin/zodb'

import { Item, newDB, session } from './helpers.js'

class Point {
  constructor(
    public x = 0,
    public y = 0,
  ) {}
  norm(): number {
    return Math.hypot(this.x, this.y)
  }
}
registerClass('test.serialize.Point', Point)

class Unregistered {
  a = 1
}
class UnregisteredPersistent extends Persistent {
  a = 1
}

/** Store `value` as an attribute, commit, and read it back in another connection. */
function roundTrip(value: unknown): unknown {
  const db = newDB()
  const a = session(db)
  a.root.item = new Item('v', value)
  a.tm.commit()
  const b = session(db)
  return (b.root.item as Item).value
}

describe('serialization', () => {
  it('round-trips scalars, strings, bigints and undefined', () => {
    for (const v of [null, true, false, 0, 1, -1, 2 ** 40, -(2 ** 53), 1.5, NaN, Infinity, -Infinity, '', 'héllo ✓', 'x'.repeat(70000)]) {
      expect(roundTrip(v)).to.deep.equal(v)
    }
    for (const v of [0n, -1n, 2n ** 64n, -(2n ** 200n) + 7n]) expect(roundTrip(v)).to.equal(v)
    expect(roundTrip({ u: undefined })).to.deep.equal({ u: undefined })
  })

  it('round-trips arrays, plain objects, Map, Set and Date', () => {
    const d = new Date('2024-02-29T12:34:56.789Z')
    const v = { arr: [1, [2, [3]], 'x'], obj: { a: { b: 1 } }, map: new Map<unknown, unknown>([[1, 'one'], ['k', { v: 2 }], [null, [1]]]), set: new Set([1, 'a', 2n]), d, bad: new Date(NaN) }
    const back = roundTrip(v) as typeof v
    expect(back.arr).to.deep.equal(v.arr)
    expect(back.obj).to.deep.equal(v.obj)
    expect(back.map).to.be.instanceOf(Map)
    expect([...back.map]).to.deep.equal([...v.map])
    expect([...back.set]).to.deep.equal([...v.set])
    expect(back.d).to.be.instanceOf(Date)
    expect(back.d.getTime()).to.equal(d.getTime())
    expect(Number.isNaN(back.bad.getTime())).to.equal(true)
  })

  it('gives plain objects of any number of keys back as plain objects, keys in order', () => {
    for (let n = 0; n <= 12; n++) {
      for (let round = 0; round < 10; round++) {
        const v: Record<string, unknown> = {}
        for (let i = 0; i < n; i++) v[`k${(i * 7 + round) % 13}_${i}`] = i % 2 === 0 ? i : { n: i }
        const back = roundTrip(v) as Record<string, unknown>
        expect(Object.getPrototypeOf(back)).to.equal(Object.prototype)
        expect(Object.keys(back)).to.deep.equal(Object.keys(v))
        expect(back).to.deep.equal(v)
        expect(JSON.stringify(back)).to.equal(JSON.stringify(v))
      }
    }
    const withProto = JSON.parse('{"a": 1, "b": 2, "c": 3, "d": 4, "__proto__": {"polluted": true}, "f": 6}') as Record<string, unknown>
    const back = roundTrip(withProto) as Record<string, unknown>
    expect(Object.getPrototypeOf(back)).to.equal(Object.prototype)
    expect(Object.keys(back)).to.deep.equal(['a', 'b', 'c', 'd', '__proto__', 'f'])
  })

  it('keeps a __proto__ key as data, never as a prototype', () => {
    const v = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as Record<string, unknown>
    const back = roundTrip(v) as Record<string, unknown>
    expect(Object.getPrototypeOf(back)).to.equal(Object.prototype)
    expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).to.deep.equal({ polluted: true })
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined)
  })

  it('round-trips ArrayBuffer, Buffer, DataView and every typed array', () => {
    const kinds = [Uint8Array, Uint8ClampedArray, Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array, Float32Array, Float64Array]
    for (const K of kinds) {
      const a = new K([1, 2, 3, 250])
      const back = roundTrip(a) as typeof a
      expect(back).to.be.instanceOf(K)
      expect(Array.from(back)).to.deep.equal(Array.from(a))
    }
    const big = roundTrip(new BigInt64Array([-5n, 2n ** 62n])) as BigInt64Array
    expect(big).to.be.instanceOf(BigInt64Array)
    expect([...big]).to.deep.equal([-5n, 2n ** 62n])
    expect([...(roundTrip(new BigUint64Array([2n ** 64n - 1n])) as BigUint64Array)]).to.deep.equal([2n ** 64n - 1n])
    const buf = roundTrip(Buffer.from('bytes')) as Buffer
    expect(Buffer.isBuffer(buf)).to.equal(true)
    expect(buf.toString()).to.equal('bytes')
    const ab = roundTrip(new Uint8Array([9, 8]).buffer) as ArrayBuffer
    expect(ab).to.be.instanceOf(ArrayBuffer)
    expect([...new Uint8Array(ab)]).to.deep.equal([9, 8])
    const dv = roundTrip(new DataView(new Uint8Array([1, 2, 3]).buffer, 1, 2)) as DataView
    expect(dv).to.be.instanceOf(DataView)
    expect([dv.getUint8(0), dv.getUint8(1)]).to.deep.equal([2, 3])
    // A view of part of a buffer stores only its own bytes.
    const part = roundTrip(new Float64Array(new Float64Array([1, 2, 3, 4]).buffer, 8, 2)) as Float64Array
    expect([...part]).to.deep.equal([2, 3])
  })

  it('keeps cycles and shared references inside a record', () => {
    const shared = { n: 1 }
    const cyc: Record<string, unknown> = { shared, also: shared, list: [shared] }
    cyc.self = cyc
    const m = new Map<string, unknown>()
    m.set('me', m)
    cyc.m = m
    const back = roundTrip(cyc) as Record<string, unknown>
    expect(back.self).to.equal(back)
    expect(back.shared).to.equal(back.also)
    expect((back.list as unknown[])[0]).to.equal(back.shared)
    expect((back.m as Map<string, unknown>).get('me')).to.equal(back.m)
  })

  it('revives registered classes with their prototype', () => {
    const back = roundTrip([new Point(3, 4)]) as Point[]
    expect(back[0]).to.be.instanceOf(Point)
    expect(back[0]!.norm()).to.equal(5)
  })

  it('stores references to persistent objects, loaded later as ghosts of the right class', () => {
    const db = newDB()
    const a = session(db)
    const target = new Item('target', 1)
    a.root.item = new Item('holder', { ref: target, again: target })
    a.tm.commit()
    expect(target._p_oid).to.be.a('bigint') // reached from a stored object: stored too
    const b = session(db)
    const holder = b.root.item as Item
    const ref = (holder.value as { ref: Item; again: Item }).ref
    expect(ref).to.be.instanceOf(Item)
    expect(ref._p_state).to.equal(GHOST)
    expect((holder.value as { again: Item }).again).to.equal(ref)
    expect(ref.name).to.equal('target')
    expect(b.conn.get(target._p_oid!)).to.equal(ref)
  })

  it('stores a self-reference as a reference', () => {
    const db = newDB()
    const a = session(db)
    const item = new Item('self')
    item.value = item
    a.root.item = item
    a.tm.commit()
    const b = session(db)
    const back = b.root.item as Item
    expect(back.value).to.equal(back)
  })

  describe('what cannot be stored', () => {
    const cases: [string, (holder: Item) => void, RegExp][] = [
      ['a function', (h) => (h.value = { deep: [0, { fn: () => 1 }] }), /test\.Item\(oid 0x[0-9a-f]{16}\)\.value\.deep\[1\]\.fn: it is a function \(fn\)/],
      ['a symbol', (h) => (h.value = new Map([['k', Symbol('s')]])), /\.value\.get\("k"\): it is a symbol/],
      ['an unregistered class instance', (h) => (h.value = [new Unregistered()]), /value\[0\]: it is an instance of the unregistered class Unregistered/],
      ['an instance of an unregistered persistent class', (h) => (h.value = new UnregisteredPersistent()), /class UnregisteredPersistent is not registered/],
    ]
    for (const [what, set, message] of cases) {
      it(`fails the commit on ${what}, naming the path, and writes nothing`, () => {
        const db = newDB()
        const s = session(db)
        const last = db.storage.lastTransaction()
        const holder = new Item('h')
        s.root.holder = holder
        set(holder)
        expect(() => s.tm.commit()).to.throw(UnserializableError, message)
        expect(db.storage.lastTransaction()).to.equal(last)
        expect(() => s.tm.commit()).to.throw(TransactionFailedError)
        s.tm.abort()
        expect(holder._p_oid).to.equal(null)
        expect(s.root.holder).to.equal(undefined)
      })
    }

    it('refuses instances of registered subclasses of Map, Set, Array, Error and Date instead of storing them empty or as the base class', () => {
      class Registry extends Map<string, number> {}
      registerClass('test.serialize.Registry', Registry)
      class Tags extends Set<string> {}
      registerClass('test.serialize.Tags', Tags)
      class Stack extends Array<number> {}
      registerClass('test.serialize.Stack', Stack)
      class Oops extends Error {}
      registerClass('test.serialize.Oops', Oops)
      class Stamp extends Date {
        label = 'x'
      }
      registerClass('test.serialize.Stamp', Stamp)
      for (const value of [new Registry([['a', 1]]), new Tags(['t']), Stack.from([1, 2]), new Oops('boom'), new Stamp(5)]) {
        const s = session(newDB())
        s.root.item = new Item('x', { deep: value })
        expect(() => s.tm.commit(), value.constructor.name).to.throw(UnserializableError, /\.value\.deep: .*built-in/)
        s.tm.abort()
      }
    })

    it('refuses a reference to an object of another database', () => {
      const one = session(newDB())
      const two = session(newDB())
      const foreign = new Item('foreign')
      one.root.x = foreign
      one.tm.commit()
      two.root.ref = foreign
      expect(() => two.tm.commit()).to.throw(InvalidObjectReference, /another connection of another database/)
      two.tm.abort()
    })
  })

  describe('unknown classes', () => {
    /** A database whose root holds `t`, an object stored under class `stored`, a name no one registered (yet). */
    function storedUnderUnknownClass(stored: string): { db: ReturnType<typeof newDB>; oid: bigint } {
      const db = newDB()
      const a = session(db)
      class Temporary extends Persistent {
        x = 1
      }
      // Of the same length: the rename below must keep the record's MessagePack valid.
      const before = `${stored.slice(0, -1)}#`
      registerClass(before, Temporary)
      a.root.t = new Temporary()
      a.tm.commit()
      const oid = (a.root.t as Temporary)._p_oid!
      expect(decodeForDump(db.storage.loadBefore(oid, 2n ** 64n - 1n)!.data)).to.deep.equal({ className: before, state: { x: 1 } })
      // The class is gone: its records (the object's, and the root's reference) name another.
      const rename = (data: Uint8Array) => new Uint8Array(Buffer.from(Buffer.from(data).toString('latin1').replace(before, stored), 'latin1'))
      const storage = db.storage
      const rec = storage.loadBefore(oid, 2n ** 64n - 1n)!
      const rootRev = storage.loadBefore(0n, 2n ** 64n - 1n)!
      const txn = { user: '', description: '', extension: {} }
      storage.tpc_begin(txn)
      storage.store(oid, rec.serial, rename(rec.data), txn)
      storage.store(0n, rootRev.serial, rename(rootRev.data), txn)
      storage.tpc_vote(txn)
      storage.tpc_finish(txn)
      return { db, oid }
    }

    it('load as Broken ghosts whose activation names the class; the database can still be dumped', () => {
      const { db, oid } = storedUnderUnknownClass('test.serialize.Vanished!')
      const b = session(db)
      const t = b.root.t as Persistent
      expect(t).to.be.instanceOf(Broken)
      expect(() => (t as unknown as { x: number }).x).to.throw(UnknownClassError, /test\.serialize\.Vanished!/)
      expect(() => b.conn.get(oid)).to.not.throw()
      const rootRecord = db.storage.loadBefore(0n, 2n ** 64n - 1n)!.data
      expect(decodeForDump(rootRecord).state).to.deep.equal({ t: { $ref: `0x${oid.toString(16).padStart(16, '0')}`, class: 'test.serialize.Vanished!' } })
    })

    it('a Broken ghost made before its class was registered loads as that class once it is', () => {
      const { db } = storedUnderUnknownClass('test.serialize.Late')
      const b = session(db)
      const t = b.root.t as Persistent
      expect(t).to.be.instanceOf(Broken)
      expect(() => (t as unknown as { x: number }).x).to.throw(UnknownClassError, /test\.serialize\.Late/)
      // The module that defines the class is imported now (a dynamic import).
      class Late extends Persistent {
        x = 0
        double() {
          return this.x * 2
        }
      }
      registerClass('test.serialize.Late', Late)
      b.tm.abort()
      const again = b.root.t as Late
      expect(again).to.equal(t) // the same object: the root still holds it
      expect(again.x).to.equal(1)
      expect(again).to.be.instanceOf(Late)
      expect(again.double()).to.equal(2)
      again.x = 5
      b.tm.commit()
      const c = session(db)
      expect((c.root.t as Late).x).to.equal(5)
    })

    it('an application Broken subclass, registered as a placeholder, is refused at load as Broken', () => {
      const db = newDB()
      const a = session(db)
      class Gone extends Broken {
        static override brokenClassName = 'test.serialize.Gone'
      }
      registerClass('test.serialize.Gone', Gone)
      a.root.g = new Gone()
      a.tm.commit()
      const b = session(db)
      expect(() => (b.root.g as unknown as { x: unknown }).x).to.throw(UnknownClassError, /test\.serialize\.Gone/)
    })

    it('an instance of an unknown value class is written back under its class, not as a plain object', () => {
      const db = newDB()
      const a = session(db)
      class Valuable {
        x = 1
      }
      registerClass('test.serialize.Valuable', Valuable)
      a.root.item = new Item('v', [new Valuable(), { plain: true }])
      a.tm.commit()
      const oid = (a.root.item as Item)._p_oid!
      // The class is gone: its record names a class no one registered (yet).
      const rec = db.storage.loadBefore(oid, 2n ** 64n - 1n)!
      const renamed = new Uint8Array(Buffer.from(Buffer.from(rec.data).toString('latin1').replace('test.serialize.Valuable', 'test.serialize.Valuabl2'), 'latin1'))
      const txn = { user: '', description: '', extension: {} }
      db.storage.tpc_begin(txn)
      db.storage.store(oid, rec.serial, renamed, txn)
      db.storage.tpc_vote(txn)
      db.storage.tpc_finish(txn)
      // Another attribute of the object holding it changes: the object is written again.
      const b = session(db)
      const item = b.root.item as Item
      expect((item.value as unknown[])[0]).to.deep.include({ x: 1 })
      item.name = 'changed'
      b.tm.commit()
      const rewritten = db.storage.loadBefore(oid, 2n ** 64n - 1n)!.data
      // Still tag 09 naming the class, as the record it was loaded from.
      expect(Buffer.from(rewritten).includes(Buffer.from([0xd4, 0x09, 0x00, 0x92, 0xb7, ...Buffer.from('test.serialize.Valuabl2'), 0x81]))).to.equal(true)
      expect(Buffer.from(rewritten).includes(Buffer.from('__class__'))).to.equal(false)
      // The class comes back: the value is its instance again.
      class Valuabl2 {
        x = 0
      }
      registerClass('test.serialize.Valuabl2', Valuabl2)
      const c = session(db)
      const value = (c.root.item as Item).value as unknown[]
      expect(value[0]).to.be.instanceOf(Valuabl2)
      expect({ ...(value[0] as object) }).to.deep.equal({ x: 1 })
      expect(value[1]).to.deep.equal({ plain: true })
    })

    it('an unknown class loaded directly by oid is an error naming it', () => {
      const db = newDB()
      const txn = { user: '', description: '', extension: {} }
      // A record whose class is not registered, made by renaming a registered one.
      const s = session(db)
      s.root.i = new Item('x')
      s.tm.commit()
      const oid = db.storage.newOid()
      db.storage.tpc_begin(txn)
      const itemOid = (s.root.i as Item)._p_oid!
      const data = Buffer.from(Buffer.from(db.storage.loadBefore(itemOid, 2n ** 64n - 1n)!.data).toString('latin1').replace('test.Item', 'zz.NoSuch'), 'latin1')
      db.storage.store(oid, 0n, new Uint8Array(data), txn)
      db.storage.tpc_vote(txn)
      db.storage.tpc_finish(txn)
      const c = session(db)
      expect(() => c.conn.get(oid)).to.throw(UnknownClassError, /"zz\.NoSuch"/)
    })
  })

  describe('record format', () => {
    it('is a MessagePack array [version, class name, state] and names its references', () => {
      const db = newDB()
      const s = session(db)
      const target = new Item('t')
      s.root.item = new Item('h', target)
      s.tm.commit()
      const oid = (s.root.item as Item)._p_oid!
      const data = db.storage.loadBefore(oid, 2n ** 64n - 1n)!.data
      expect(data[0]).to.equal(0x93) // fixarray of 3
      expect(data[1]).to.equal(RECORD_FORMAT_VERSION)
      expect(data[2]).to.equal(0xa0 | 'test.Item'.length) // fixstr
      expect(Buffer.from(data.subarray(3, 3 + 9)).toString()).to.equal('test.Item')
      expect(recordClassName(data)).to.equal('test.Item')
      expect(referencesIn(data)).to.deep.equal([target._p_oid])
      // A reference: tag 1, then [8-byte oid, class name].
      const refTag = Buffer.from([0xd4, 0x01, 0x00, 0x92, 0xc4, 0x08])
      expect(Buffer.from(data).indexOf(refTag)).to.be.above(0)
    })

    it('refuses corrupt tag payloads with CorruptRecordError instead of reading wrong values', () => {
      const head = [0x93, 0x01, 0xa1, 0x63, 0x81, 0xa1, 0x61] // [1, "c", {a: <value>}]
      const corrupt = {
        'an empty bigint': [0xd4, 0x03, 0x00, 0xa0],
        'a hexadecimal bigint': [0xd4, 0x03, 0x00, 0xa4, ...Buffer.from('0x1f')],
        'a bigint that is not a number': [0xd4, 0x03, 0x00, 0xa2, ...Buffer.from('1z')],
        'a Map of an odd number of items': [0xd4, 0x05, 0x00, 0x93, 0x01, 0x02, 0x03],
        'a Float64Array of 3 bytes': [0xd4, 0x08, 0x00, 0x92, 0x09, 0xc4, 0x03, 0x01, 0x02, 0x03],
        'a reference of 3 bytes': [0xd4, 0x01, 0x00, 0x92, 0xc4, 0x03, 0x01, 0x02, 0x03, 0xa1, 0x78],
        'a Set that is not an array': [0xd4, 0x06, 0x00, 0x05],
      }
      for (const [what, value] of Object.entries(corrupt)) {
        expect(() => decodeForDump(new Uint8Array([...head, ...value])), what).to.throw(CorruptRecordError)
      }
    })

    it('writes each tag as the README says', () => {
      const enc = (value: unknown) => Buffer.from(encodeStateRecord('t', { v: value }, { persistentRef: () => ({ oid: 0n, className: 'x' }) }))
      // header 93 01 a1 74, then the state map 81 a1 76 (one key "v"), then the value
      const valueOf = (value: unknown) => enc(value).subarray(7)
      expect([...enc(1).subarray(0, 7)]).to.deep.equal([0x93, 0x01, 0xa1, 0x74, 0x81, 0xa1, 0x76])
      expect([...valueOf(undefined)]).to.deep.equal([0xd4, 0x00, 0x00])
      expect([...valueOf(-0)]).to.deep.equal([0x00])
      expect([...valueOf(12n)]).to.deep.equal([0xd4, 0x03, 0x00, 0xa2, 0x31, 0x32])
      expect([...valueOf(new Date(5))]).to.deep.equal([0xd4, 0x04, 0x00, 0x05])
      expect([...valueOf(new Map([[1, 2]]))]).to.deep.equal([0xd4, 0x05, 0x00, 0x92, 0x01, 0x02])
      expect([...valueOf(new Set([3]))]).to.deep.equal([0xd4, 0x06, 0x00, 0x91, 0x03])
      expect([...valueOf(new Uint8Array([7]).buffer)]).to.deep.equal([0xd4, 0x07, 0x00, 0xc4, 0x01, 0x07])
      expect([...valueOf(new Uint16Array([0x0102]))]).to.deep.equal([0xd4, 0x08, 0x00, 0x92, 0x04, 0xc4, 0x02, 0x02, 0x01])
      expect([...valueOf(new Point(1, 2))]).to.deep.equal([0xd4, 0x09, 0x00, 0x92, 0xb4, ...Buffer.from('test.serialize.Point'), 0x82, 0xa1, 0x78, 0x01, 0xa1, 0x79, 0x02])
      const a: unknown[] = []
      a.push(a)
      // The state map is object 0 and the array object 1: the array holds a back-reference to 1.
      expect([...valueOf(a)]).to.deep.equal([0x91, 0xd4, 0x02, 0x00, 0x01])
    })
  })
})
