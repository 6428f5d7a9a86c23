// The record encoder writes the bytes of "Record format, version 1" in one walk over the state;
// the two-step path (StateWriter, then msgpackr) is the reference it must match byte for byte,
// on values of every kind and size class, with the same references, numbering and errors.
import { expect } from 'chai'
import {
  Persistent,
  PersistentReference,
  UnserializableError,
  _decodeStateWithMsgpackr,
  _encodeStateRecordWithMsgpackr,
  decodeForDump,
  decodeState,
  encodeStateRecord,
  registerClass,
  type Oid,
} from '@wendelin/zodb'

import { newDB, session } from './helpers.js'

class Pt {
  x = 1
  y: unknown = 'two'
}
registerClass('test.recordEncoder.Pt', Pt)
class Obj extends Persistent {
  a = 1
}
registerClass('test.recordEncoder.Obj', Obj)

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x / 4294967296
  }
}

const numbers = [
  0, -0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53, -1, -32, -33, -128, -129,
  -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, 0.5, -1.25, 1e300, Number.MIN_VALUE, NaN, Infinity, -Infinity,
]
const chars = ['a', 'Z', ' ', 'é', 'ß', '€', '中', '😀', '\ud800', '\udc00', '\u0000', '\u07ff', '\u0800', '\uffff']

function randomString(r: () => number): string {
  const lengths = [0, 1, 10, 20, 31, 32, 33, 63, 64, 65, 100, 255, 256, 300]
  const n = lengths[Math.floor(r() * lengths.length)]!
  const ascii = r() < 0.5
  let out = ''
  while (out.length < n) out += ascii ? String.fromCharCode(97 + Math.floor(r() * 26)) : chars[Math.floor(r() * chars.length)]!
  return out
}

const typedKinds = [Uint8Array, Uint8ClampedArray, Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array]

function randomValue(r: () => number, depth: number, pool: object[], persistent: Persistent[]): unknown {
  const k = Math.floor(r() * (depth > 2 ? 6 : 20))
  switch (k) {
    case 0:
      return numbers[Math.floor(r() * numbers.length)]
    case 1:
      return Math.floor((r() - 0.5) * 2 ** (r() * 60))
    case 2:
      return randomString(r)
    case 3:
      return r() < 0.5 ? null : undefined
    case 4:
      return r() < 0.5
    case 5:
      return BigInt(Math.floor((r() - 0.5) * 2 ** 50)) * 12345n
    case 6:
    case 7: {
      const lengths = [0, 3, 15, 16, 17, 40]
      const n = lengths[Math.floor(r() * lengths.length)]!
      const a: unknown[] = []
      for (let i = 0; i < n; i++) a.push(randomValue(r, depth + 1, pool, persistent))
      if (r() < 0.1) a.length += 2 // holes
      pool.push(a)
      return a
    }
    case 8:
    case 9: {
      const o: Record<string, unknown> = r() < 0.2 ? Object.create(null) : {}
      const n = [0, 2, 15, 16, 20][Math.floor(r() * 5)]!
      for (let i = 0; i < n; i++) o[r() < 0.2 ? String(i) : randomString(r).slice(0, 40)] = randomValue(r, depth + 1, pool, persistent)
      if (r() < 0.1) Object.defineProperty(o, '__proto__', { value: 7, enumerable: true, writable: true, configurable: true })
      pool.push(o)
      return o
    }
    case 10:
      return pool.length > 0 ? pool[Math.floor(r() * pool.length)] : new Date(0) // shared reference or cycle
    case 11:
      return r() < 0.8 ? new Date(Math.floor(r() * 2e12)) : new Date(NaN)
    case 12: {
      const m = new Map<unknown, unknown>()
      for (let i = 0; i < Math.floor(r() * 10); i++) m.set(randomValue(r, depth + 2, pool, persistent), randomValue(r, depth + 1, pool, persistent))
      return m
    }
    case 13: {
      const s = new Set<unknown>()
      for (let i = 0; i < Math.floor(r() * 10); i++) s.add(randomValue(r, depth + 1, pool, persistent))
      return s
    }
    case 14: {
      const n = [0, 5, 255, 256, 9000][Math.floor(r() * 5)]!
      const K = typedKinds[Math.floor(r() * typedKinds.length)]!
      const bytes = new Uint8Array(n * 8 + 8).map((_, i) => (i * 7 + n) & 0xff)
      const view = r() < 0.3 ? new DataView(bytes.buffer, 3, n) : r() < 0.3 ? Buffer.from(bytes.buffer, 1, n) : new K(bytes.buffer, 0, n)
      return r() < 0.2 ? bytes.buffer : view
    }
    case 15: {
      const p = new Pt()
      p.y = randomValue(r, depth + 1, pool, persistent)
      return p
    }
    case 16:
      return new PersistentReference(BigInt(Math.floor(r() * 2 ** 40)), 'test.recordEncoder.Obj')
    case 17: {
      if (persistent.length > 0 && r() < 0.5) return persistent[Math.floor(r() * persistent.length)]
      const o = new Obj()
      persistent.push(o)
      return o
    }
    default:
      return randomString(r)
  }
}

/** References numbered in the order the encoder asks for them. */
function refs(log: string[]) {
  const oids = new Map<Persistent, Oid>()
  return {
    persistentRef(obj: Persistent, path: () => string) {
      let oid = oids.get(obj)
      if (oid === undefined) oids.set(obj, (oid = BigInt(oids.size + 1) * 0x1_0000_0001n))
      log.push(`${oid}@${path()}`)
      return { oid, className: 'test.recordEncoder.Obj' }
    },
  }
}

function both(className: string, state: unknown): [Uint8Array, Uint8Array, string[], string[]] {
  const logA: string[] = []
  const logB: string[] = []
  const a = encodeStateRecord(className, state, refs(logA))
  const b = _encodeStateRecordWithMsgpackr(className, state, refs(logB))
  return [a, b, logA, logB]
}

describe('record encoder', () => {
  it('writes the same bytes as the two-step msgpackr path, on random states of every kind', () => {
    const r = rng(20261121)
    for (let i = 0; i < 1500; i++) {
      const pool: object[] = []
      const state: Record<string, unknown> = {}
      const n = Math.floor(r() * 8)
      for (let j = 0; j < n; j++) state[randomString(r).slice(0, 20) || `k${j}`] = randomValue(r, 0, pool, [])
      const [a, b, logA, logB] = both(r() < 0.5 ? 'test.recordEncoder.Obj' : randomString(r).slice(0, 70), state)
      expect(Buffer.from(a).toString('hex'), `state ${i}`).to.equal(Buffer.from(b).toString('hex'))
      expect(logA).to.deep.equal(logB)
    }
  })

  it('writes a stored object from its own attributes, as the state _p_getState gives would be written', () => {
    const r = rng(4242)
    const s = session(newDB())
    const objs: Obj[] = []
    for (let i = 0; i < 300; i++) {
      const o = new Obj() as Obj & Record<string, unknown>
      const n = Math.floor(r() * 8)
      const persistent: Persistent[] = []
      for (let j = 0; j < n; j++) o[randomString(r).slice(0, 20) || `k${j}`] = randomValue(r, 0, [], persistent)
      o._v_volatile = 'not stored'
      if (i % 7 === 0) Object.defineProperty(o, '__proto__', { value: { p: i }, writable: true, enumerable: true, configurable: true })
      objs.push(o)
    }
    s.root.objs = objs
    s.tm.commit()
    // Changed again: now written from the accessor layout.
    for (const o of objs) (o as Obj & Record<string, unknown>).again = o.a
    s.tm.commit()
    const storage = s.conn.db.storage
    // Every persistent object in these states is an Obj, stored by now.
    const writer = { persistentRef: (p: Persistent) => ({ oid: p._p_oid!, className: 'test.recordEncoder.Obj' }) }
    for (const o of objs) {
      const stored = storage.loadSerial(o._p_oid!, o._p_serial)
      const expected = _encodeStateRecordWithMsgpackr('test.recordEncoder.Obj', o._p_getState(), writer)
      expect(Buffer.from(stored).toString('hex')).to.equal(Buffer.from(expected).toString('hex'))
    }
  })

  it('writes the same bytes for numbers and strings at every size boundary', () => {
    for (const x of numbers) {
      const [a, b] = both('c', { x, l: [x, -x, x / 3] })
      expect(Buffer.from(a).toString('hex'), String(x)).to.equal(Buffer.from(b).toString('hex'))
    }
    for (const c of chars) {
      for (const n of [1, 10, 21, 31, 32, 33, 63, 64, 85, 86, 127, 128, 255, 256, 21845, 21846, 65535, 65536]) {
        const s = c.repeat(n)
        const [a, b] = both('c', { s, [s.slice(0, 300)]: 1 })
        expect(Buffer.from(a).toString('hex'), `${JSON.stringify(c)} x ${n}`).to.equal(Buffer.from(b).toString('hex'))
      }
    }
  })

  it('writes records msgpackr reads back, and large ones grow the buffer', () => {
    const big = { a: 'x'.repeat(100_000), b: Array.from({ length: 70_000 }, (_, i) => i), c: new Float64Array(10_000) }
    const [a, b] = both('c', big)
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).to.equal(0)
    const dumped = decodeForDump(a).state as { a: string; b: number[] }
    expect(dumped.a.length).to.equal(100_000)
    expect(dumped.b[69_999]).to.equal(69_999)
  })

  it('gives every record bytes of its own: later records (small ones share chunks) never change earlier ones', () => {
    const refs = { persistentRef: () => ({ oid: 1n, className: 'x' }) }
    const kept: Uint8Array[] = []
    // ~100-byte records across many shared chunks, with a large (unpooled) one between them.
    for (let i = 0; i < 3000; i++) kept.push(encodeStateRecord('c', i === 1500 ? { big: 'y'.repeat(5000) } : { i, s: `s${i}`.padEnd(80, '.') }, refs))
    for (let i = 0; i < 3000; i++) {
      const state = decodeState(kept[i]!, { persistentObject: () => null as never }).state as Record<string, unknown>
      expect(state).to.deep.equal(i === 1500 ? { big: 'y'.repeat(5000) } : { i, s: `s${i}`.padEnd(80, '.') })
      expect(kept[i]!.byteOffset % 8).to.equal(0)
    }
  })

  it('hands out a big record as the buffer it was written into, and later records never write into it', () => {
    const refs = { persistentRef: () => ({ oid: 1n, className: 'x' }) }
    const block = (fill: number) => new Uint8Array(2 << 20).fill(fill)
    const [a, b] = both('c', { data: block(7), n: 1 })
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).to.equal(0)
    // Not a copy of a bigger buffer: the record fills (nearly all of) its own.
    expect(a.buffer.byteLength - a.byteLength).to.be.at.most(a.byteLength / 8)
    const kept = [1, 2, 3].map((fill) => encodeStateRecord('c', { data: block(fill), n: fill }, refs))
    const small = encodeStateRecord('c', { s: 'after' }, refs)
    for (const [i, rec] of kept.entries()) {
      const state = decodeState(rec, { persistentObject: () => null as never }).state as { data: Uint8Array; n: number }
      expect(state.n).to.equal(i + 1)
      expect(state.data.every((x) => x === i + 1)).to.equal(true)
    }
    expect(decodeState(small, { persistentObject: () => null as never }).state).to.deep.equal({ s: 'after' })
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).to.equal(0)
  })

  it('fails with the same UnserializableError, naming the path', () => {
    const cases: unknown[] = [{ f: () => 1 }, { deep: [1, { s: Symbol('x') }] }, { m: new Map([[1, new WeakMap()]]) }, { e: new Error('x') }]
    for (const state of cases) {
      let ea: unknown
      let eb: unknown
      try {
        encodeStateRecord('c', state, refs([]))
      } catch (error) {
        ea = error
      }
      try {
        _encodeStateRecordWithMsgpackr('c', state, refs([]))
      } catch (error) {
        eb = error
      }
      expect(ea).to.be.instanceOf(UnserializableError)
      expect((ea as Error).message).to.equal((eb as Error).message)
    }
  })
})

describe('record decoder', () => {
  /** Decoded values as comparable text: references by oid, shared objects by first path. */
  function show(value: unknown): string {
    const seen = new Map<object, string>()
    const walk = (v: unknown, path: string): unknown => {
      if (typeof v === 'bigint') return `${v}n`
      if (typeof v === 'number') return Object.is(v, -0) ? '-0' : Number.isNaN(v) ? 'NaN' : v === Infinity || v === -Infinity ? String(v) : v
      if (v === undefined) return '<undefined>'
      if (v === null || typeof v !== 'object') return v
      if (seen.has(v)) return `<same as ${seen.get(v)}>`
      seen.set(v, path)
      const proto = Object.getPrototypeOf(v) as object | null
      const tag = proto === null ? 'null-proto' : (proto as { constructor?: { name?: string } }).constructor?.name
      if ('$oid' in (v as object)) return `<ref ${String((v as { $oid: unknown }).$oid)}>`
      if (v instanceof Map) return { tag, entries: [...v].map(([k, x], i) => [walk(k, `${path}.k${i}`), walk(x, `${path}.v${i}`)]) }
      if (v instanceof Set) return { tag, items: [...v].map((x, i) => walk(x, `${path}.s${i}`)) }
      if (v instanceof Date) return { tag, t: String(v.getTime()) }
      if (v instanceof ArrayBuffer) return { tag, hex: Buffer.from(v).toString('hex') }
      if (ArrayBuffer.isView(v)) return { tag, hex: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex') }
      if (Array.isArray(v)) return { tag, items: Array.from({ length: v.length }, (_, i) => (i in v ? walk(v[i], `${path}[${i}]`) : '<hole>')) }
      return { tag, attrs: Object.keys(v).map((k) => [k, walk(Object.getOwnPropertyDescriptor(v, k)!.value, `${path}.${k}`)]) }
    }
    return JSON.stringify(walk(value, '$'))
  }
  const reader = (log: string[]) => {
    const made = new Map<bigint, object>()
    return {
      persistentObject(oid: bigint, className: string) {
        log.push(`${oid} ${className}`)
        let o = made.get(oid)
        if (o === undefined) made.set(oid, (o = { $oid: oid }))
        return o
      },
    }
  }

  it('reads random records as the two-step msgpackr path does, with the same references in the same order', () => {
    const r = rng(777)
    let fallbacks = 0
    for (let i = 0; i < 1500; i++) {
      const pool: object[] = []
      const state: Record<string, unknown> = {}
      const n = Math.floor(r() * 8)
      for (let j = 0; j < n; j++) state[r() < 0.7 ? `k${j}x${Math.floor(r() * 5)}` : randomString(r).slice(0, 20)] = randomValue(r, 0, pool, [])
      const data = encodeStateRecord('test.recordEncoder.Obj', state, refs([]))
      const logA: string[] = []
      const logB: string[] = []
      const a = decodeState(data, reader(logA))
      const b = _decodeStateWithMsgpackr(data, reader(logB))
      expect(a.className).to.equal(b.className)
      expect(show(a.state), `state ${i}`).to.equal(show(b.state))
      // The same references in the same order; where the one-pass reader handed the record to
      // msgpackr (a lone surrogate, say), the references it had met come first.
      expect(logA.slice(logA.length - logB.length)).to.deep.equal(logB)
      expect(logA.slice(0, logA.length - logB.length)).to.deep.equal(logB.slice(0, logA.length - logB.length))
      if (logA.length !== logB.length) fallbacks++
    }
    expect(fallbacks).to.be.below(300)
  })

  it('leaves records in other forms to msgpackr: other encodings, trailing bytes, corrupt ones', () => {
    const good = encodeStateRecord('c', { a: 1, b: 'xyz' }, refs([]))
    const variants: Uint8Array[] = [
      Buffer.concat([good, Buffer.from([0x01])]), // trailing byte
      good.subarray(0, good.length - 1), // truncated
      Buffer.from([0x93, 0x02, 0xa1, 0x63, 0x80]), // another format version
      Buffer.from([0x93, 0x01, 0xa1, 0x63, 0x81, 0xa1, 0x61, 0xca, 0x3f, 0xc0, 0x00, 0x00]), // float32
      Buffer.from([0x93, 0x01, 0xa1, 0x63, 0x82, 0xa1, 0x61, 0x01, 0xa1, 0x61, 0x02]), // a key twice
      Buffer.from([0x93, 0x01, 0xa1, 0x63, 0x81, 0x01, 0x01]), // a key that is not a string
      Buffer.from([0x93, 0x01, 0xa1, 0x63, 0xd4, 0x02, 0x00, 0x05]), // back-reference to nothing
      Buffer.from([0x92, 0x01, 0xa1]), // not a record
    ]
    for (const data of variants) {
      let a: unknown
      let b: unknown
      try {
        a = show(decodeState(data, reader([])))
      } catch (error) {
        a = `${(error as Error).name}: ${(error as Error).message}`
      }
      try {
        b = show(_decodeStateWithMsgpackr(data, reader([])))
      } catch (error) {
        b = `${(error as Error).name}: ${(error as Error).message}`
      }
      expect(a, Buffer.from(data).toString('hex')).to.equal(b)
    }
  })
})
