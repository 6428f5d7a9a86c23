// Records: how an object's state becomes bytes and back. The format is written down byte by
// byte in the package README ("Record format, version 1"); keep the two in step.
//
// msgpackr does the MessagePack encoding. Values MessagePack has no type for are written as a
// msgpackr "tag" — the three bytes 0xd4 <tag> 0x00 followed by one MessagePack value — with tag
// numbers of our own. Encoding is two steps: a walk over the state that checks every value,
// names the path to anything that cannot be stored, numbers objects for cycles and shared
// references, and turns the state into MessagePack-ready values; then msgpackr packs that.
// Decoding is the same backwards.

import { Packr, Unpackr, addExtension } from 'msgpackr'

import { findClass, nameOfClass, type AnyClass } from './class-registry.js'
import { CorruptRecordError, UnserializableError } from './errors.js'
import { Persistent } from './persistent.js'
import { bytesToId, idToBytes, idToHex, type Oid } from './tid.js'

export const RECORD_FORMAT_VERSION = 1

/** Tag numbers (MessagePack extension types) used inside records. */
export const Tag = {
  PERSISTENT_REF: 1,
  BACKREF: 2,
  BIGINT: 3,
  DATE: 4,
  MAP: 5,
  SET: 6,
  ARRAY_BUFFER: 7,
  TYPED_ARRAY: 8,
  OBJECT: 9,
} as const

/** Element kinds of TYPED_ARRAY, in their numbering. */
const typedKinds = [
  Buffer,
  Uint8Array,
  Uint8ClampedArray,
  Int8Array,
  Uint16Array,
  Int16Array,
  Uint32Array,
  Int32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView,
] as const

/** A tagged value on its way into or out of msgpackr. */
class Tagged {
  constructor(
    readonly tag: number,
    readonly value: unknown,
  ) {}
}
const tagClasses = new Map<number, new (value: unknown) => Tagged>()
for (const tag of Object.values(Tag)) {
  // msgpackr picks an extension by class, so each tag gets a class of its own.
  const C = class extends Tagged {
    constructor(value: unknown) {
      super(tag, value)
    }
  }
  tagClasses.set(tag, C)
  addExtension({ Class: C, type: tag, write: (t: Tagged) => t.value, read: (v: unknown) => new C(v) })
}
function tagged(tag: number, value: unknown): Tagged {
  return new (tagClasses.get(tag)!)(value)
}

const packr = new Packr({ useRecords: false, moreTypes: false, structuredClone: false, variableMapSize: true })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false, moreTypes: false, structuredClone: false })

// --- writing --------------------------------------------------------------------------------

/** What the writer needs to know about persistent objects referenced from a state. */
export interface ReferenceWriter {
  /** The oid and class name to store for a reference to `obj` (a new object gets an oid here). */
  persistentRef(obj: Persistent, path: () => string): { oid: Oid; className: string }
}

/** A lazily built attribute path, for error messages only. */
class PathStep {
  constructor(
    readonly parent: PathStep | null,
    readonly key: string | number,
  ) {}
  toString(): string {
    const parts: string[] = []
    for (let s: PathStep | null = this; s !== null; s = s.parent) {
      const k = s.key
      parts.push(typeof k === 'number' ? `[${k}]` : s.parent === null || k.startsWith('<') || k.startsWith('.get(') ? k : /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`)
    }
    return parts.reverse().join('')
  }
}

function describeValue(value: unknown): string {
  if (typeof value === 'function') return `a function (${value.name || 'anonymous'})`
  if (typeof value === 'symbol') return `a symbol (${value.toString()})`
  if (value !== null && typeof value === 'object') {
    const ctor = (value as { constructor?: { name?: string } }).constructor
    return `an instance of the unregistered class ${ctor?.name ?? '(anonymous)'}: register it with registerClass(name, Class)`
  }
  return typeof value
}

class StateWriter {
  readonly #seen = new Map<object, number>()
  constructor(readonly refs: ReferenceWriter) {}

  write(value: unknown, path: PathStep): unknown {
    switch (typeof value) {
      case 'string':
      case 'number':
      case 'boolean':
      case 'undefined':
        return value
      case 'bigint':
        return tagged(Tag.BIGINT, value.toString())
      case 'object':
        if (value === null) return null
        return this.#writeObject(value, path)
      default:
        throw new UnserializableError(path.toString(), `it is ${describeValue(value)}`)
    }
  }

  #writeObject(value: object, path: PathStep): unknown {
    if (value instanceof PersistentReference) return tagged(Tag.PERSISTENT_REF, [idToBytes(value.oid), value.className])
    if (value instanceof Persistent) {
      const { oid, className } = this.refs.persistentRef(value, () => path.toString())
      return tagged(Tag.PERSISTENT_REF, [idToBytes(oid), className])
    }
    const seen = this.#seen.get(value)
    if (seen !== undefined) return tagged(Tag.BACKREF, seen)
    this.#seen.set(value, this.#seen.size)

    const proto = Object.getPrototypeOf(value) as object | null
    if (proto === Array.prototype) {
      const arr = value as unknown[]
      const out = new Array<unknown>(arr.length)
      for (let i = 0; i < arr.length; i++) out[i] = this.write(arr[i], new PathStep(path, i))
      return out
    }
    if (proto === Object.prototype || proto === null) {
      const out = new Map<string, unknown>()
      for (const k of Object.keys(value)) out.set(k, this.write((value as Record<string, unknown>)[k], new PathStep(path, k)))
      return out
    }
    if (value instanceof Date) return tagged(Tag.DATE, value.getTime())
    if (proto === Map.prototype) {
      const out: unknown[] = []
      let i = 0
      for (const [k, v] of value as Map<unknown, unknown>) {
        const valuePath = typeof k === 'string' || typeof k === 'number' ? `.get(${JSON.stringify(k)})` : `<value ${i}>`
        out.push(this.write(k, new PathStep(path, `<key ${i}>`)), this.write(v, new PathStep(path, valuePath)))
        i++
      }
      return tagged(Tag.MAP, out)
    }
    if (proto === Set.prototype) {
      const out: unknown[] = []
      let i = 0
      for (const v of value as Set<unknown>) out.push(this.write(v, new PathStep(path, `<item ${i++}>`)))
      return tagged(Tag.SET, out)
    }
    if (proto === ArrayBuffer.prototype) return tagged(Tag.ARRAY_BUFFER, new Uint8Array((value as ArrayBuffer).slice(0)))
    if (ArrayBuffer.isView(value)) {
      const kind = typedKinds.findIndex((k) => proto === k.prototype)
      if (kind >= 0) {
        const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice()
        return tagged(Tag.TYPED_ARRAY, [kind, bytes])
      }
    }
    const className = nameOfClass((value as { constructor?: unknown }).constructor)
    if (className !== undefined && (value as { constructor?: { prototype?: unknown } }).constructor?.prototype === proto) {
      const out = new Map<string, unknown>()
      for (const k of Object.keys(value)) out.set(k, this.write((value as Record<string, unknown>)[k], new PathStep(path, k)))
      return tagged(Tag.OBJECT, [className, out])
    }
    throw new UnserializableError(path.toString(), `it is ${describeValue(value)}`)
  }
}

/**
 * Encode a persistent object's record: its class name and the state `_p_getState()` returns.
 * Throws UnserializableError (naming the attribute path) for a value that cannot be stored.
 */
export function encodeRecord(obj: Persistent, className: string, refs: ReferenceWriter): Uint8Array {
  const label = `${className}(${obj._p_oid === null ? 'new object' : `oid 0x${idToHex(obj._p_oid)}`})`
  const state = obj._p_getState()
  const wire = new StateWriter(refs).write(state, new PathStep(null, label))
  return encodeWire(className, wire)
}

/** Encode a record from a state given directly (conflict resolution writes merged states). */
export function encodeStateRecord(className: string, state: unknown, refs: ReferenceWriter): Uint8Array {
  const wire = new StateWriter(refs).write(state, new PathStep(null, className))
  return encodeWire(className, wire)
}

function encodeWire(className: string, wire: unknown): Uint8Array {
  // msgpackr reuses its output buffer: copy the bytes out.
  return Uint8Array.prototype.slice.call(packr.pack([RECORD_FORMAT_VERSION, className, wire]))
}

// --- reading --------------------------------------------------------------------------------

/** What the reader needs to turn stored references into objects. */
export interface ReferenceReader {
  /** The object for a reference (a ghost made without a load, or the cached object). */
  persistentObject(oid: Oid, className: string): unknown
}

/** The parts of a record, without interpreting the state. */
export interface RawRecord {
  version: number
  className: string
  /** The state as decoded by msgpackr, tags still wrapped. */
  wire: unknown
}

export function decodeRaw(data: Uint8Array): RawRecord {
  let decoded: unknown
  try {
    decoded = unpackr.unpack(data)
  } catch (error) {
    throw new CorruptRecordError(`record of ${data.length} bytes is not valid MessagePack: ${(error as Error).message}`)
  }
  if (!Array.isArray(decoded) || decoded.length !== 3 || typeof decoded[1] !== 'string') {
    throw new CorruptRecordError('not a record: expected [version, className, state]')
  }
  const [version, className, wire] = decoded as [unknown, string, unknown]
  if (version !== RECORD_FORMAT_VERSION) {
    throw new CorruptRecordError(`record format version ${String(version)} is not supported (this version reads ${RECORD_FORMAT_VERSION})`)
  }
  return { version, className, wire }
}

/** The class name a record names (no class needs to be registered). */
export function recordClassName(data: Uint8Array): string {
  return decodeRaw(data).className
}

class StateReader {
  readonly #table: unknown[] = []
  constructor(readonly refs: ReferenceReader) {}

  read(wire: unknown): unknown {
    if (wire === null || typeof wire !== 'object') return wire
    if (Array.isArray(wire)) {
      const out = new Array<unknown>(wire.length)
      this.#table.push(out)
      for (let i = 0; i < wire.length; i++) out[i] = this.read(wire[i])
      return out
    }
    if (wire instanceof Map) {
      const out: Record<string, unknown> = {}
      this.#table.push(out)
      this.#fill(out, wire, true)
      return out
    }
    if (wire instanceof Tagged) return this.#readTagged(wire)
    throw new CorruptRecordError(`unexpected ${Object.prototype.toString.call(wire)} in a record`)
  }

  #fill(out: Record<string, unknown>, wire: Map<unknown, unknown>, plain: boolean): void {
    for (const [k, v] of wire) {
      if (typeof k !== 'string') throw new CorruptRecordError('an attribute name in a record is not a string')
      // A plain object has no setters but __proto__: assignment is the same, and much cheaper.
      if (plain && k !== '__proto__') out[k] = this.read(v)
      else Object.defineProperty(out, k, { value: this.read(v), writable: true, enumerable: true, configurable: true })
    }
  }

  #readTagged(t: Tagged): unknown {
    const v = t.value
    switch (t.tag) {
      case Tag.PERSISTENT_REF: {
        const [oid, className] = v as [Uint8Array, string]
        return this.refs.persistentObject(bytesToId(oid), className)
      }
      case Tag.BACKREF: {
        const n = v as number
        if (!(n >= 0 && n < this.#table.length)) throw new CorruptRecordError(`back-reference ${n} to an object not yet read`)
        return this.#table[n]
      }
      case Tag.BIGINT:
        return BigInt(v as string)
      case Tag.DATE: {
        const d = new Date(v as number)
        this.#table.push(d)
        return d
      }
      case Tag.MAP: {
        const out = new Map<unknown, unknown>()
        this.#table.push(out)
        const items = v as unknown[]
        for (let i = 0; i < items.length; i += 2) out.set(this.read(items[i]), this.read(items[i + 1]))
        return out
      }
      case Tag.SET: {
        const out = new Set<unknown>()
        this.#table.push(out)
        for (const item of v as unknown[]) out.add(this.read(item))
        return out
      }
      case Tag.ARRAY_BUFFER: {
        const bytes = v as Uint8Array
        const out = new Uint8Array(bytes).buffer
        this.#table.push(out)
        return out
      }
      case Tag.TYPED_ARRAY: {
        const [kind, bytes] = v as [number, Uint8Array]
        const K = typedKinds[kind]
        if (K === undefined) throw new CorruptRecordError(`unknown typed array kind ${kind}`)
        const buffer = new Uint8Array(bytes).buffer // a copy, aligned at 0
        let out: object
        if (K === Buffer) out = Buffer.from(buffer)
        else if (K === DataView) out = new DataView(buffer)
        else {
          const TA = K as unknown as new (b: ArrayBuffer) => ArrayBufferView
          out = new TA(buffer)
        }
        this.#table.push(out)
        return out
      }
      case Tag.OBJECT: {
        const [className, attrs] = v as [string, Map<unknown, unknown>]
        const cls: AnyClass | undefined = findClass(className)
        // An unknown class still loads, as a plain object that says what it was.
        const out = (cls !== undefined ? Object.create(cls.prototype as object) : { __class__: className }) as Record<string, unknown>
        this.#table.push(out)
        this.#fill(out, attrs, false)
        return out
      }
      default:
        throw new CorruptRecordError(`unknown tag ${t.tag} in a record`)
    }
  }
}

/** Decode a record's state, making persistent references through `refs`. */
export function decodeState(data: Uint8Array, refs: ReferenceReader): { className: string; state: unknown } {
  const raw = decodeRaw(data)
  return { className: raw.className, state: new StateReader(refs).read(raw.wire) }
}

/**
 * A reference to a persistent object outside any connection: what conflict resolution sees in
 * the states it merges (references compare by oid: use `sameAs`), and what it writes back.
 */
export class PersistentReference {
  constructor(
    readonly oid: Oid,
    readonly className: string,
  ) {}
  sameAs(other: unknown): boolean {
    return other instanceof PersistentReference && other.oid === this.oid
  }
}

/** Decode a record's state without any class: persistent references become `{ $ref: '0x<hex oid>', class }` objects. */
export function decodeForDump(data: Uint8Array): { className: string; state: unknown } {
  return decodeState(data, { persistentObject: (oid, className) => ({ $ref: `0x${idToHex(oid)}`, class: className }) })
}

/** The oids a record refers to (for garbage collection; no class needed). */
export function referencesIn(data: Uint8Array): Oid[] {
  const out: Oid[] = []
  const visit = (w: unknown): void => {
    if (w === null || typeof w !== 'object') return
    if (Array.isArray(w)) {
      for (const x of w) visit(x)
    } else if (w instanceof Map) {
      for (const x of w.values()) visit(x)
    } else if (w instanceof Tagged) {
      if (w.tag === Tag.PERSISTENT_REF) out.push(bytesToId((w.value as [Uint8Array])[0]))
      else if (w.tag !== Tag.TYPED_ARRAY && w.tag !== Tag.ARRAY_BUFFER) visit(w.value)
    }
  }
  visit(decodeRaw(data).wire)
  return out
}
