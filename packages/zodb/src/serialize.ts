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
import { GHOST, Persistent, _meta, isStateKey } from './persistent.js'
import { plainObjectFor } from './sized-object.js'
import { bytesToId, checkId, idToBytes, idToHex, type Oid } from './tid.js'

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
  /**
   * The oid and class name to store for a reference to `obj` (a new object gets an oid here).
   * `path` names the reference for error messages, while this call lasts. The answer is read at
   * once: a writer may hand out the same object each time, refilled.
   */
  persistentRef(obj: Persistent, path: () => string): { oid: Oid; className: string }
}

/** A lazily built attribute path, for error messages only. */
class PathStep {
  constructor(
    readonly parent: PathStep | null,
    /** A function for the root's label, computed only if an error message needs it. */
    readonly key: string | number | (() => string),
  ) {}
  toString(): string {
    const parts: string[] = []
    for (let s: PathStep | null = this; s !== null; s = s.parent) {
      const k = typeof s.key === 'function' ? s.key() : s.key
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

/**
 * The built-in class `value` (an instance of a registered class) extends, whose internal data
 * (entries, elements, message...) is not among its own attributes and so would not be stored;
 * null for an ordinary class.
 */
function builtinBaseOf(value: object): string | null {
  if (Array.isArray(value)) return 'Array'
  if (ArrayBuffer.isView(value)) return 'ArrayBufferView'
  for (const B of [Map, Set, WeakMap, WeakSet, Date, Error, RegExp, Promise, ArrayBuffer, SharedArrayBuffer, Number, String, Boolean] as const) {
    if (value instanceof B) return B.name
  }
  return null
}

function refuseBuiltinSubclass(value: object, className: string, path: PathStep): void {
  const builtin = builtinBaseOf(value)
  if (builtin !== null) {
    throw new UnserializableError(
      path.toString(),
      `it is an instance of the registered class ${className}, which extends the built-in ${builtin}: only its own attributes would be stored, not the ${builtin}'s own data (hold a plain ${builtin} in an attribute instead)`,
    )
  }
}

/**
 * What a record's instance of an unregistered (non-persistent) class loads as: an object with
 * its attributes and `__class__` naming the class, whose prototype marks it so that it is
 * written back as that class's instance (tag 09) if its holder is stored again, instead of
 * becoming a plain object and losing its class for good.
 */
const unknownValuePrototype: object = Object.create(Object.prototype, { constructor: { value: Object, writable: true, configurable: true } })
const UNKNOWN_CLASS: unique symbol = Symbol('wendelin.zodb.unknownClass')

function unknownClassValue(className: string): Record<string, unknown> {
  const out = Object.create(unknownValuePrototype) as Record<string, unknown>
  Object.defineProperty(out, UNKNOWN_CLASS, { value: className })
  out.__class__ = className
  return out
}

/** The class name and attribute names to write for an object made by unknownClassValue. */
function unknownClassOf(value: object): { className: string; keys: string[] } {
  return { className: (value as { [UNKNOWN_CLASS]: string })[UNKNOWN_CLASS], keys: Object.keys(value).filter((k) => k !== '__class__') }
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
    // A Date's own class only: a subclass is a registered class (refused) or an unregistered one.
    if (proto === Date.prototype) return tagged(Tag.DATE, (value as Date).getTime())
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
      refuseBuiltinSubclass(value, className, path)
      const out = new Map<string, unknown>()
      for (const k of Object.keys(value)) out.set(k, this.write((value as Record<string, unknown>)[k], new PathStep(path, k)))
      return tagged(Tag.OBJECT, [className, out])
    }
    if (proto === unknownValuePrototype) {
      const unknown = unknownClassOf(value)
      const out = new Map<string, unknown>()
      for (const k of unknown.keys) out.set(k, this.write((value as Record<string, unknown>)[k], new PathStep(path, k)))
      return tagged(Tag.OBJECT, [unknown.className, out])
    }
    throw new UnserializableError(path.toString(), `it is ${describeValue(value)}`)
  }
}

/**
 * Encode a persistent object's record: its class name and the state `_p_getState()` returns.
 * Throws UnserializableError (naming the attribute path) for a value that cannot be stored.
 */
export function encodeRecord(obj: Persistent, className: string, refs: ReferenceWriter): Uint8Array {
  const own = (obj as { [OWN_RECORD]?: (className: string) => Uint8Array | null })[OWN_RECORD]
  if (own !== undefined) {
    const record = own.call(obj, className)
    if (record !== null) return record
  }
  if (obj._p_getState === defaultGetState) {
    // The default state is the object's own state attributes: written from the object itself,
    // without the copy _p_getState makes (a plain object filled key by key, then walked again).
    if (_meta(obj).state === GHOST) obj._p_activate()
    return recordEncoder(refs).recordOf(obj, className, obj, true)
  }
  // The state first: an encoder taken before a _p_getState that throws would never come back.
  const state = obj._p_getState()
  return recordEncoder(refs).recordOf(obj, className, state)
}

/** How error messages name the object a record is written for. */
function objectLabel(obj: Persistent, className: string): string {
  return `${className}(${obj._p_oid === null ? 'new object' : `oid 0x${idToHex(obj._p_oid)}`})`
}

const defaultGetState = Persistent.prototype._p_getState

/** Stands for the state in the back-reference numbering when it is written from its object (object 0, never referred to). */
const STATE_PLACEHOLDER = {}

/**
 * A persistent class may hand over its record already written: `obj[OWN_RECORD](className)`
 * returns exactly the bytes encodeRecord would write for the object's state, or null to be
 * encoded as usual. ZBigFile's ZBlk0 builds its record with `bytesRecord` and copies a 2 MiB
 * block once, into it, instead of into its own array first and into the record again.
 */
export const OWN_RECORD: unique symbol = Symbol('wendelin.zodb.ownRecord')
// Found on Persistent.prototype: the look-up of every record stops there instead of reaching the
// prototype hook (a Proxy trap per record). Subclasses define their own.
Object.defineProperty(Persistent.prototype, OWN_RECORD, { value: undefined, writable: true, configurable: true })

/** A ReferenceWriter for states that hold no persistent objects: one that does is a bug (`message`). */
function refusingReferences(message: string): ReferenceWriter {
  return {
    persistentRef() {
      throw new Error(message)
    },
  }
}

const noReferences = refusingReferences('bytesRecord: the state holds no references')
/** bytesRecord's record start for each class and key: everything before the bytes' bin header. */
const bytesRecordHeads = new Map<string, Uint8Array>()

/**
 * The bytes that precede the data in the record of class `className` whose state is
 * `{[key]: <a Uint8Array of n bytes>}`: the record is this prefix followed by the n bytes, as
 * encodeRecord writes it (see bytesRecord; ZBigFile's ZBlk0 also maps a page right after it).
 */
export function bytesRecordPrefix(className: string, key: string, n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffff_ffff) throw new RangeError(`bytesRecord: ${n} bytes`)
  const id = `${className}\u0000${key}`
  let head = bytesRecordHeads.get(id)
  if (head === undefined) {
    const empty = encodeStateRecord(className, { [key]: new Uint8Array(0) }, noReferences)
    // The empty array is the record's last value (bin 8 of length 0): what precedes it stays.
    if (empty.length < 2 || empty[empty.length - 2] !== 0xc4 || empty[empty.length - 1] !== 0) throw new Error('bytesRecord: unexpected record layout')
    head = empty.slice(0, empty.length - 2)
    bytesRecordHeads.set(id, head)
  }
  const lengthBytes = n < 0x100 ? 2 : n < 0x10000 ? 3 : 5 // bin 8/16/32, as #bytes writes them
  const prefix = new Uint8Array(head.length + lengthBytes)
  prefix.set(head)
  let at = head.length
  if (n < 0x100) {
    prefix[at++] = 0xc4
    prefix[at++] = n
  } else if (n < 0x10000) {
    prefix[at++] = 0xc5
    prefix[at++] = n >> 8
    prefix[at++] = n & 0xff
  } else {
    prefix[at++] = 0xc6
    new DataView(prefix.buffer).setUint32(at, n)
  }
  return prefix
}

/**
 * A record of class `className` whose state is `{[key]: <a Uint8Array of n bytes>}`, with those
 * bytes, last in the record, left for the caller to fill: `bytes` (8-byte aligned) views them.
 * Once filled, `record` is byte for byte what encodeRecord writes for that state; `record` and
 * `bytes` share memory, so neither may change once the record is handed to a storage.
 */
export function bytesRecord(className: string, key: string, n: number): { record: Uint8Array; bytes: Uint8Array } {
  const prefix = bytesRecordPrefix(className, key, n)
  const pad = (8 - (prefix.length % 8)) % 8
  // Uninitialized: every byte is written here or by the caller.
  const memory = Buffer.allocUnsafeSlow(pad + prefix.length + n)
  const record = new Uint8Array(memory.buffer, memory.byteOffset + pad, prefix.length + n)
  record.set(prefix)
  return { record, bytes: record.subarray(prefix.length) }
}

/** Encode a record from a state given directly (conflict resolution writes merged states). */
export function encodeStateRecord(className: string, state: unknown, refs: ReferenceWriter): Uint8Array {
  return recordEncoder(refs).record(className, state, new PathStep(null, className))
}

/**
 * @internal The same record through the two-step path (StateWriter, then msgpackr): the
 * reference the direct encoder is tested against, byte for byte.
 */
export function _encodeStateRecordWithMsgpackr(className: string, state: unknown, refs: ReferenceWriter): Uint8Array {
  const wire = new StateWriter(refs).write(state, new PathStep(null, className))
  // msgpackr reuses its output buffer: copy the bytes out.
  return Uint8Array.prototype.slice.call(packr.pack([RECORD_FORMAT_VERSION, className, wire]))
}

// --- writing, directly ---------------------------------------------------------------------------

/** An encoder's output buffer with its views. */
interface OutputBuffer {
  buf: Buffer
  /** The same bytes as a plain Uint8Array: its slice is a plain array too (a Buffer's goes through its species, 4% of a populate). */
  plain: Uint8Array
  view: DataView
}

function outputBuffer(size: number): OutputBuffer {
  const buf = Buffer.allocUnsafe(size)
  return { buf, plain: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), view: new DataView(buf.buffer, buf.byteOffset, buf.byteLength) }
}

/** The output buffer reused from record to record (an encoder that finds it taken, as a nested one would, makes its own). */
let sharedOutput: OutputBuffer | null = outputBuffer(8192)

/**
 * Small records are handed out as views into shared chunks instead of a copy each (`slice`
 * makes an ArrayBuffer per record, with its own backing store for the GC to track: 10% of an
 * update, and GC work in a populate). A chunk lives as long as any record in it, so chunks are
 * small (8 KiB, the size of Node's own Buffer pool, which makes the same trade).
 */
const RECORD_CHUNK = 8 * 1024
const POOLED_RECORD_MAX = 512
let recordChunk = new Uint8Array(RECORD_CHUNK)
let recordChunkPos = 0

/** A copy of the first `n` bytes of `src`, for a record. */
function recordBytes(src: Uint8Array, n: number): Uint8Array {
  if (n > POOLED_RECORD_MAX) return src.slice(0, n)
  if (recordChunkPos + n > RECORD_CHUNK) {
    recordChunk = new Uint8Array(RECORD_CHUNK)
    recordChunkPos = 0
  }
  const chunk = recordChunk
  const start = recordChunkPos
  for (let i = 0; i < n; i++) chunk[start + i] = src[i]!
  recordChunkPos = (start + n + 7) & ~7 // 8-aligned starts, as a fresh buffer's
  return chunk.subarray(start, start + n)
}

/**
 * A record of at least this size, encoded into a buffer grown for it with at most an eighth
 * unused, is handed out as that buffer instead of a copy: a 2 MiB block is then copied once.
 */
const HANDOFF_MIN = 64 * 1024
const BIG_WRITE_HEADROOM = 4096

/** Objects numbered for back-references: a short list scanned by identity, a Map past SEEN_LIST_MAX. */
const SEEN_LIST_MAX = 8

/**
 * The encoder of the last record, handed to the next one: a record made an encoder and its list
 * of numbered objects each (about 250 of the ~4,300 bytes a W-OBJ populate allocates per object,
 * heap sampling). A nested encoding, which finds it taken, makes its own.
 */
let spareEncoder: RecordEncoder | null = null

function recordEncoder(refs: ReferenceWriter): RecordEncoder {
  const encoder = spareEncoder
  if (encoder === null) return new RecordEncoder(refs)
  spareEncoder = null
  encoder.reset(refs)
  return encoder
}

/** What a spare encoder refers to: not the last commit's writer (and its connection). */
const NO_REFERENCES = refusingReferences('RecordEncoder: used while spare')

/**
 * Writes a record's bytes in one walk over the state: the checks, numbering and references of
 * StateWriter and the bytes msgpackr writes for its output (the README's "Record format,
 * version 1"), without the intermediate Maps, arrays and tag objects. A test compares it with
 * `_encodeStateRecordWithMsgpackr` byte for byte.
 */
class RecordEncoder {
  /** The buffer taken at the start (the shared one, or a new one when it was taken). */
  #initial!: OutputBuffer
  #out!: OutputBuffer
  #buf!: Buffer
  #view!: DataView
  #pos = 0
  #shared = false
  /**
   * The first SEEN_LIST_MAX numbered objects: #seenList[0, #seenCount). Emptied by count, not by
   * `length = 0`, which gave back the list's storage: every record allocated it again (~150
   * bytes per record, heap sampling of a W-OBJ populate).
   */
  readonly #seenList: Array<object | null> = new Array<object | null>(SEEN_LIST_MAX).fill(null)
  #seenCount = 0
  #seenMap: Map<object, number> | null = null
  refs: ReferenceWriter
  /**
   * The object `recordOf` writes, and its class name: the root path's label names it, made only
   * when an error message needs it (idToHex per record cost 1-2% of an update). One root path
   * and label per encoder, reused from record to record, instead of a closure and a path each.
   */
  #labelled: Persistent | null = null
  #labelledClass = ''
  readonly #objectPath = new PathStep(null, () => objectLabel(this.#labelled!, this.#labelledClass))
  /**
   * The reference being written: the path of its parent and its key there (null: the path names
   * it), and the label the writer gets for it (one per encoder, not per reference; the reference's
   * own path step is made only if a message needs it).
   */
  #refPath: PathStep | null = null
  #refKey: string | number | null = null
  readonly #refLabel = () => String(this.#refKey === null ? this.#refPath : new PathStep(this.#refPath, this.#refKey))

  constructor(refs: ReferenceWriter) {
    this.refs = refs
    this.#takeOutput()
  }

  /** Ready for the next record (an encoder that was spare). */
  reset(refs: ReferenceWriter): void {
    this.refs = refs
    this.#pos = 0
    this.#takeOutput()
  }

  #takeOutput(): void {
    if (sharedOutput !== null) {
      this.#out = sharedOutput
      sharedOutput = null
      this.#shared = true
    } else {
      this.#out = outputBuffer(1024)
      this.#shared = false
    }
    this.#initial = this.#out
    this.#buf = this.#out.buf
    this.#view = this.#out.view
  }

  /** The number of an object already written, or undefined (then it gets the next number). */
  #numberOf(value: object): number | undefined {
    const map = this.#seenMap
    if (map !== null) {
      const n = map.get(value)
      if (n === undefined) map.set(value, map.size)
      return n
    }
    const list = this.#seenList
    const count = this.#seenCount
    for (let i = 0; i < count; i++) if (list[i] === value) return i
    if (count < SEEN_LIST_MAX) {
      list[count] = value
      this.#seenCount = count + 1
    } else {
      const m = new Map<object, number>()
      for (let i = 0; i < count; i++) m.set(list[i]!, i)
      m.set(value, count)
      this.#seenMap = m
    }
    return undefined
  }

  /** The record of persistent object `obj` whose state is `state` (`obj` itself with `ownStateOf`). */
  recordOf(obj: Persistent, className: string, state: unknown, ownStateOf = false): Uint8Array {
    this.#labelled = obj
    this.#labelledClass = className
    return this.record(className, state, this.#objectPath, ownStateOf)
  }

  /** The record of `state`, or with `ownStateOf`, of the state attributes of the persistent object `state`. */
  record(className: string, state: unknown, path: PathStep, ownStateOf = false): Uint8Array {
    try {
      this.#room(2)
      this.#buf[this.#pos++] = 0x93
      this.#buf[this.#pos++] = RECORD_FORMAT_VERSION
      this.#string(className)
      if (ownStateOf) this.#ownState(state as Persistent, path)
      else this.#value(state, path)
      const n = this.#pos
      const out = this.#out
      if (out !== this.#initial && n >= HANDOFF_MIN && out.buf.length - n <= n >>> 3) {
        // A big record in a buffer grown for it, nearly full: it becomes the record (its bytes
        // were copied once, into it), and the encoder's first buffer goes back to be shared.
        this.#out = this.#initial
        return out.plain.subarray(0, n)
      }
      return recordBytes(out.plain, n)
    } finally {
      if (this.#shared) {
        sharedOutput = this.#out
        // The next record's encoder: nothing of this record's is held on to.
        this.#seenList.fill(null, 0, this.#seenCount)
        this.#seenCount = 0
        this.#seenMap = null
        this.refs = NO_REFERENCES
        this.#labelled = null
        this.#refPath = null
        spareEncoder = this
      }
    }
  }

  #room(n: number): void {
    const needed = this.#pos + n
    if (needed <= this.#buf.length) return
    // Doubling, unless one write needs more than that (a big typed array): then just its size
    // and a little for the rest of the record, so that the buffer can become the record.
    let size = this.#buf.length * 2
    if (size < needed) size = needed + BIG_WRITE_HEADROOM
    const bigger = outputBuffer(size)
    this.#buf.copy(bigger.buf, 0, 0, this.#pos)
    this.#out = bigger
    this.#buf = bigger.buf
    this.#view = bigger.view
  }

  #byte(b: number): void {
    this.#room(1)
    this.#buf[this.#pos++] = b
  }

  #tag(tag: number): void {
    this.#room(3)
    const buf = this.#buf
    buf[this.#pos++] = 0xd4
    buf[this.#pos++] = tag
    buf[this.#pos++] = 0
  }

  /** A child value: primitives are written at once, without a path step. */
  #child(value: unknown, path: PathStep, key: string | number): void {
    switch (typeof value) {
      case 'string':
        this.#string(value)
        return
      case 'number':
        this.#number(value)
        return
      case 'boolean':
        this.#byte(value ? 0xc3 : 0xc2)
        return
      case 'undefined':
        this.#tag(0)
        return
      default:
        if (value === null) this.#byte(0xc0)
        else if (value instanceof Persistent) this.#persistent(value, path, key)
        else this.#value(value, new PathStep(path, key))
    }
  }

  #value(value: unknown, path: PathStep): void {
    switch (typeof value) {
      case 'string':
        this.#string(value)
        return
      case 'number':
        this.#number(value)
        return
      case 'boolean':
        this.#byte(value ? 0xc3 : 0xc2)
        return
      case 'undefined':
        this.#tag(0)
        return
      case 'bigint':
        this.#tag(Tag.BIGINT)
        this.#string(value.toString())
        return
      case 'object':
        if (value === null) this.#byte(0xc0)
        else this.#object(value, path)
        return
      default:
        throw new UnserializableError(path.toString(), `it is ${describeValue(value)}`)
    }
  }

  /** A reference to `obj`, at `key` of `path` (or at `path` itself when `key` is null). */
  #persistent(obj: Persistent, path: PathStep, key: string | number | null): void {
    this.#refPath = path
    this.#refKey = key
    const ref = this.refs.persistentRef(obj, this.#refLabel)
    this.#refPath = null
    this.#reference(ref.oid, ref.className)
  }

  #reference(oid: Oid, className: string): void {
    this.#tag(Tag.PERSISTENT_REF)
    this.#room(11)
    const buf = this.#buf
    buf[this.#pos++] = 0x92
    buf[this.#pos++] = 0xc4
    buf[this.#pos++] = 8
    checkId(oid, 'id')
    this.#view.setBigUint64(this.#pos, oid)
    this.#pos += 8
    this.#string(className)
  }

  #object(value: object, path: PathStep): void {
    // Persistent first: `instanceof` of anything else walks a persistent object's prototype chain
    // through the prototype hook, a Proxy (about 55 ns against 9 when found before it).
    if (value instanceof Persistent) {
      this.#persistent(value, path, null)
      return
    }
    if (value instanceof PersistentReference) {
      this.#reference(value.oid, value.className)
      return
    }
    const seen = this.#numberOf(value)
    if (seen !== undefined) {
      this.#tag(Tag.BACKREF)
      this.#number(seen)
      return
    }

    const proto = Object.getPrototypeOf(value) as object | null
    if (proto === Array.prototype) {
      const arr = value as unknown[]
      const n = arr.length
      this.#arrayHeader(n)
      for (let i = 0; i < n; i++) this.#child(arr[i], path, i)
      return
    }
    if (proto === Object.prototype || proto === null) {
      this.#attributes(value as Record<string, unknown>, path)
      return
    }
    if (proto === Date.prototype) {
      this.#tag(Tag.DATE)
      this.#number((value as Date).getTime())
      return
    }
    if (proto === Map.prototype) {
      const map = value as Map<unknown, unknown>
      this.#tag(Tag.MAP)
      this.#arrayHeader(map.size * 2)
      let i = 0
      for (const [k, v] of map) {
        const valuePath = typeof k === 'string' || typeof k === 'number' ? `.get(${JSON.stringify(k)})` : `<value ${i}>`
        this.#child(k, path, `<key ${i}>`)
        this.#child(v, path, valuePath)
        i++
      }
      return
    }
    if (proto === Set.prototype) {
      const set = value as Set<unknown>
      this.#tag(Tag.SET)
      this.#arrayHeader(set.size)
      let i = 0
      for (const v of set) this.#child(v, path, `<item ${i++}>`)
      return
    }
    if (proto === ArrayBuffer.prototype) {
      this.#tag(Tag.ARRAY_BUFFER)
      this.#bytes(new Uint8Array(value as ArrayBuffer))
      return
    }
    if (ArrayBuffer.isView(value)) {
      const kind = typedKinds.findIndex((k) => proto === k.prototype)
      if (kind >= 0) {
        this.#tag(Tag.TYPED_ARRAY)
        this.#byte(0x92)
        this.#number(kind)
        this.#bytes(new Uint8Array(value.buffer, value.byteOffset, value.byteLength))
        return
      }
    }
    const className = nameOfClass((value as { constructor?: unknown }).constructor)
    if (className !== undefined && (value as { constructor?: { prototype?: unknown } }).constructor?.prototype === proto) {
      refuseBuiltinSubclass(value, className, path)
      this.#tag(Tag.OBJECT)
      this.#byte(0x92)
      this.#string(className)
      this.#attributes(value as Record<string, unknown>, path)
      return
    }
    if (proto === unknownValuePrototype) {
      const unknown = unknownClassOf(value)
      this.#tag(Tag.OBJECT)
      this.#byte(0x92)
      this.#string(unknown.className)
      this.#attributes(value as Record<string, unknown>, path, unknown.keys)
      return
    }
    throw new UnserializableError(path.toString(), `it is ${describeValue(value)}`)
  }

  /** What the default `_p_getState` returns, written as that state would be: its own state attributes. */
  #ownState(obj: Persistent, path: PathStep): void {
    this.#numberOf(STATE_PLACEHOLDER)
    const keys = Object.keys(obj)
    for (let i = 0; i < keys.length; i++) {
      if (!isStateKey(keys[i]!)) {
        this.#attributes(obj as unknown as Record<string, unknown>, path, keys.filter(isStateKey))
        return
      }
    }
    this.#attributes(obj as unknown as Record<string, unknown>, path, keys)
  }

  /** A map of an object's own enumerable string keys (or of `keys`) to their values. */
  #attributes(value: Record<string, unknown>, path: PathStep, keys = Object.keys(value)): void {
    const n = keys.length
    this.#room(5)
    const buf = this.#buf
    if (n < 0x10) {
      buf[this.#pos++] = 0x80 | n
    } else if (n < 0x10000) {
      buf[this.#pos++] = 0xde
      buf[this.#pos++] = n >> 8
      buf[this.#pos++] = n & 0xff
    } else {
      buf[this.#pos++] = 0xdf
      this.#view.setUint32(this.#pos, n)
      this.#pos += 4
    }
    for (let i = 0; i < n; i++) {
      const k = keys[i]!
      this.#string(k)
      this.#child(value[k], path, k)
    }
  }

  #arrayHeader(n: number): void {
    this.#room(5)
    const buf = this.#buf
    if (n < 0x10) {
      buf[this.#pos++] = 0x90 | n
    } else if (n < 0x10000) {
      buf[this.#pos++] = 0xdc
      buf[this.#pos++] = n >> 8
      buf[this.#pos++] = n & 0xff
    } else {
      buf[this.#pos++] = 0xdd
      this.#view.setUint32(this.#pos, n)
      this.#pos += 4
    }
  }

  /** bin 8/16/32 with a copy of the bytes. */
  #bytes(bytes: Uint8Array): void {
    const n = bytes.byteLength
    this.#room(n + 5)
    const buf = this.#buf
    if (n < 0x100) {
      buf[this.#pos++] = 0xc4
      buf[this.#pos++] = n
    } else if (n < 0x10000) {
      buf[this.#pos++] = 0xc5
      buf[this.#pos++] = n >> 8
      buf[this.#pos++] = n & 0xff
    } else {
      buf[this.#pos++] = 0xc6
      this.#view.setUint32(this.#pos, n)
      this.#pos += 4
    }
    buf.set(bytes, this.#pos)
    this.#pos += n
  }

  /** Integers that fit 32 bits as MessagePack integers, anything else as float64 (as msgpackr). */
  #number(value: number): void {
    this.#room(9)
    const buf = this.#buf
    if (value >>> 0 === value) {
      if (value < 0x80) {
        buf[this.#pos++] = value
      } else if (value < 0x100) {
        buf[this.#pos++] = 0xcc
        buf[this.#pos++] = value
      } else if (value < 0x10000) {
        buf[this.#pos++] = 0xcd
        buf[this.#pos++] = value >> 8
        buf[this.#pos++] = value & 0xff
      } else {
        buf[this.#pos++] = 0xce
        this.#view.setUint32(this.#pos, value)
        this.#pos += 4
      }
    } else if (value >> 0 === value) {
      if (value >= -0x20) {
        buf[this.#pos++] = 0x100 + value
      } else if (value >= -0x80) {
        buf[this.#pos++] = 0xd0
        buf[this.#pos++] = value + 0x100
      } else if (value >= -0x8000) {
        buf[this.#pos++] = 0xd1
        this.#view.setInt16(this.#pos, value)
        this.#pos += 2
      } else {
        buf[this.#pos++] = 0xd2
        this.#view.setInt32(this.#pos, value)
        this.#pos += 4
      }
    } else {
      buf[this.#pos++] = 0xcb
      this.#view.setFloat64(this.#pos, value)
      this.#pos += 8
    }
  }

  /**
   * UTF-8 with the smallest header for its byte length. As msgpackr: strings under 64 code
   * units are encoded here (a lone surrogate as its own three bytes), longer ones by Buffer
   * (a lone surrogate as U+FFFD).
   */
  #string(value: string): void {
    const n = value.length
    const headerSize = n < 0x20 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5
    this.#room(5 + n * 3)
    const buf = this.#buf
    const start = this.#pos
    let length: number
    if (n < 0x40) {
      let p = start + headerSize
      for (let i = 0; i < n; i++) {
        let c1 = value.charCodeAt(i)
        let c2: number
        if (c1 < 0x80) {
          buf[p++] = c1
        } else if (c1 < 0x800) {
          buf[p++] = (c1 >> 6) | 0xc0
          buf[p++] = (c1 & 0x3f) | 0x80
        } else if ((c1 & 0xfc00) === 0xd800 && ((c2 = value.charCodeAt(i + 1)) & 0xfc00) === 0xdc00) {
          c1 = 0x10000 + ((c1 & 0x03ff) << 10) + (c2 & 0x03ff)
          i++
          buf[p++] = (c1 >> 18) | 0xf0
          buf[p++] = ((c1 >> 12) & 0x3f) | 0x80
          buf[p++] = ((c1 >> 6) & 0x3f) | 0x80
          buf[p++] = (c1 & 0x3f) | 0x80
        } else {
          buf[p++] = (c1 >> 12) | 0xe0
          buf[p++] = ((c1 >> 6) & 0x3f) | 0x80
          buf[p++] = (c1 & 0x3f) | 0x80
        }
      }
      length = p - start - headerSize
    } else {
      length = buf.write(value, start + headerSize, buf.length - start - headerSize, 'utf8')
    }
    const actual = length < 0x20 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : 5
    if (actual !== headerSize) buf.copyWithin(start + actual, start + headerSize, start + headerSize + length)
    if (actual === 1) {
      buf[start] = 0xa0 | length
    } else if (actual === 2) {
      buf[start] = 0xd9
      buf[start + 1] = length
    } else if (actual === 3) {
      buf[start] = 0xda
      buf[start + 1] = length >> 8
      buf[start + 2] = length & 0xff
    } else {
      buf[start] = 0xdb
      this.#view.setUint32(start + 1, length)
    }
    this.#pos = start + actual + length
  }
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

/** A bigint's payload: decimal, optional leading '-' (BigInt() would also take '', spaces, 0x...). */
const DECIMAL = /^-?[0-9]+$/

function isPair(v: unknown): v is [unknown, unknown] {
  return Array.isArray(v) && v.length === 2
}

function corruptTag(what: string, payload: unknown): CorruptRecordError {
  return new CorruptRecordError(`a ${what} in a record has a malformed payload (${Object.prototype.toString.call(payload)})`)
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
        if (!isPair(v) || !(v[0] instanceof Uint8Array) || v[0].length !== 8 || typeof v[1] !== 'string') throw corruptTag('reference', v)
        const [oid, className] = v as [Uint8Array, string]
        return this.refs.persistentObject(bytesToId(oid), className)
      }
      case Tag.BACKREF: {
        const n = v as number
        if (!(n >= 0 && n < this.#table.length)) throw new CorruptRecordError(`back-reference ${n} to an object not yet read`)
        return this.#table[n]
      }
      case Tag.BIGINT:
        if (typeof v !== 'string' || !DECIMAL.test(v)) throw corruptTag('bigint', v)
        return BigInt(v)
      case Tag.DATE: {
        if (typeof v !== 'number') throw corruptTag('Date', v)
        const d = new Date(v)
        this.#table.push(d)
        return d
      }
      case Tag.MAP: {
        if (!Array.isArray(v) || v.length % 2 !== 0) throw corruptTag('Map', v)
        const out = new Map<unknown, unknown>()
        this.#table.push(out)
        const items = v as unknown[]
        for (let i = 0; i < items.length; i += 2) out.set(this.read(items[i]), this.read(items[i + 1]))
        return out
      }
      case Tag.SET: {
        if (!Array.isArray(v)) throw corruptTag('Set', v)
        const out = new Set<unknown>()
        this.#table.push(out)
        for (const item of v as unknown[]) out.add(this.read(item))
        return out
      }
      case Tag.ARRAY_BUFFER: {
        if (!(v instanceof Uint8Array)) throw corruptTag('ArrayBuffer', v)
        const bytes = v
        const out = new Uint8Array(bytes).buffer
        this.#table.push(out)
        return out
      }
      case Tag.TYPED_ARRAY: {
        if (!isPair(v) || typeof v[0] !== 'number' || !(v[1] instanceof Uint8Array)) throw corruptTag('typed array', v)
        const [kind, bytes] = v as [number, Uint8Array]
        const K = typedKinds[kind]
        if (K === undefined) throw new CorruptRecordError(`unknown typed array kind ${kind}`)
        const elementSize = (K as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1
        if (bytes.length % elementSize !== 0) throw new CorruptRecordError(`a ${K.name} of ${bytes.length} bytes in a record`)
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
        if (!isPair(v) || typeof v[0] !== 'string' || !(v[1] instanceof Map)) throw corruptTag('class instance', v)
        const [className, attrs] = v as [string, Map<unknown, unknown>]
        const cls: AnyClass | undefined = findClass(className)
        // An unknown class still loads, as an object that says what it was (and is written back as it).
        const out = (cls !== undefined ? Object.create(cls.prototype as object) : unknownClassValue(className)) as Record<string, unknown>
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
  const fast = new RecordDecoder(data, refs).record()
  if (fast !== null) return fast
  return _decodeStateWithMsgpackr(data, refs)
}

/** @internal The two-step path (msgpackr, then StateReader): what RecordDecoder is tested against. */
export function _decodeStateWithMsgpackr(data: Uint8Array, refs: ReferenceReader): { className: string; state: unknown } {
  const raw = decodeRaw(data)
  return { className: raw.className, state: new StateReader(refs).read(raw.wire) }
}

/** The numbering table RecordDecoder reuses from record to record (null while one decodes). */
let sharedTable: unknown[] | null = []

/** Scratch bytes for reading a big-endian float64 out of a record. */
const scratchFloatBytes = new Uint8Array(8)
const scratchFloatView = new DataView(scratchFloatBytes.buffer)

/**
 * Short ASCII strings (attribute names, mostly) come from a small cache: every record gives the
 * same string for the same name, already internalized by its first use as a property key,
 * instead of a new one built character by character (its building and the look-up of a new key
 * string on every store were a sixth of a record's decoding).
 */
const KEY_CACHE_MAX_LENGTH = 16
const keyCache: (string | undefined)[] = new Array<string | undefined>(512).fill(undefined)

function cachedAscii(data: Uint8Array, start: number, n: number): string {
  let h = n
  for (let i = 0; i < n; i++) h = (h * 31 + data[start + i]!) | 0
  const slot = (h ^ (h >>> 9)) & 511
  const cached = keyCache[slot]
  if (cached !== undefined && cached.length === n) {
    let same = true
    for (let i = 0; i < n; i++) {
      if (cached.charCodeAt(i) !== data[start + i]) {
        same = false
        break
      }
    }
    if (same) return cached
  }
  let out = ''
  for (let i = 0; i < n; i++) out += String.fromCharCode(data[start + i]!)
  keyCache[slot] = out
  return out
}

/** Thrown inside RecordDecoder when a record is not in the form it reads: the two-step path takes over. */
const NOT_FAST = { notFast: true }

/**
 * Reads a record in one pass into the state, with the numbering and references of StateReader,
 * for records as RecordEncoder writes them. Anything else (other MessagePack encodings, strings
 * that are not valid UTF-8 or hold U+FFFD, trailing bytes, anything corrupt) is left to the
 * two-step path, which then gives its result or its error: `record()` returns null, after
 * asking for the references it met so far (the reader returns the same object again for
 * those). A test compares both paths on random states.
 */
class RecordDecoder {
  #pos = 0
  /** Objects numbered for back-references: a shared array when free (a new one per record was a tenth of a record's garbage). */
  readonly #table: unknown[]
  readonly #data: Uint8Array
  /** Made when a string needs it (a record from SQLite is a Buffer already; one per record was a tenth of a cold read's garbage). */
  #buffer: Buffer | null = null

  constructor(
    data: Uint8Array,
    readonly refs: ReferenceReader,
  ) {
    this.#data = data
    if (sharedTable !== null) {
      this.#table = sharedTable
      sharedTable = null
    } else {
      this.#table = []
    }
  }

  #text(encoding: 'utf8' | 'latin1', start: number, end: number): string {
    let buffer = this.#buffer
    if (buffer === null) {
      const data = this.#data
      buffer = this.#buffer = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    }
    return buffer.toString(encoding, start, end)
  }

  /** Big-endian unsigned integer of `n` (1-4) bytes at the position, which moves past it. */
  #uint(n: number): number {
    this.#need(n)
    const data = this.#data
    let v = 0
    for (let i = 0; i < n; i++) v = v * 256 + data[this.#pos++]!
    return v
  }

  /** Big-endian float64 at the position, through a scratch buffer (no DataView per record). */
  #float64(): number {
    this.#need(8)
    const data = this.#data
    for (let i = 0; i < 8; i++) scratchFloatBytes[i] = data[this.#pos++]!
    return scratchFloatView.getFloat64(0)
  }

  record(): { className: string; state: unknown } | null {
    try {
      if (this.#u8() !== 0x93 || this.#u8() !== RECORD_FORMAT_VERSION) return null
      const className = this.#string(this.#u8())
      const state = this.#value()
      if (this.#pos !== this.#data.length) return null
      return { className, state }
    } catch {
      return null // not in the form read here, or something went wrong: the two-step path says what
    } finally {
      this.#table.length = 0
      sharedTable = this.#table
    }
  }

  #u8(): number {
    if (this.#pos >= this.#data.length) throw NOT_FAST
    return this.#data[this.#pos++]!
  }

  #need(n: number): void {
    if (this.#pos + n > this.#data.length) throw NOT_FAST
  }

  /** A string whose header byte is `b`; ASCII only. */
  #string(b: number): string {
    let n: number
    if ((b & 0xe0) === 0xa0) n = b & 0x1f
    else if (b === 0xd9) n = this.#u8()
    else if (b === 0xda) n = this.#uint(2)
    else if (b === 0xdb) n = this.#uint(4)
    else throw NOT_FAST
    this.#need(n)
    const data = this.#data
    const start = this.#pos
    const end = start + n
    this.#pos = end
    for (let i = start; i < end; i++) {
      if (data[i]! >= 0x80) {
        // Valid UTF-8 reads the same whichever decoder; anything Buffer replaces with U+FFFD
        // (a lone surrogate, say) is msgpackr's to read.
        const text = this.#text('utf8', start, end)
        if (text.includes('\ufffd')) throw NOT_FAST
        return text
      }
    }
    if (n <= KEY_CACHE_MAX_LENGTH) return cachedAscii(data, start, n)
    return this.#text('latin1', start, end)
  }

  #arrayLength(b: number): number {
    if ((b & 0xf0) === 0x90) return b & 0x0f
    if (b === 0xdc) return this.#uint(2)
    if (b === 0xdd) return this.#uint(4)
    throw NOT_FAST
  }

  #mapLength(b: number): number {
    if ((b & 0xf0) === 0x80) return b & 0x0f
    if (b === 0xde) return this.#uint(2)
    if (b === 0xdf) return this.#uint(4)
    throw NOT_FAST
  }

  /** A bin's length; the position is then at its first byte. */
  #binLength(): number {
    const b = this.#u8()
    let n: number
    if (b === 0xc4) n = this.#u8()
    else if (b === 0xc5) n = this.#uint(2)
    else if (b === 0xc6) n = this.#uint(4)
    else throw NOT_FAST
    this.#need(n)
    return n
  }

  #bin(): Uint8Array {
    const n = this.#binLength()
    const start = this.#pos
    this.#pos += n
    return this.#data.subarray(start, start + n)
  }

  /** A number as RecordEncoder writes them (integers of 32 bits, float64). */
  #number(b: number): number {
    if (b < 0x80) return b
    if (b >= 0xe0) return b - 0x100
    switch (b) {
      case 0xcc:
        return this.#u8()
      case 0xcd:
        return this.#uint(2)
      case 0xce:
        return this.#uint(4)
      case 0xd0:
        return (this.#uint(1) << 24) >> 24
      case 0xd1:
        return (this.#uint(2) << 16) >> 16
      case 0xd2:
        return this.#uint(4) | 0
      case 0xcb:
        return this.#float64()
      default:
        throw NOT_FAST
    }
  }

  #value(): unknown {
    const b = this.#u8()
    if (b < 0x80 || b >= 0xe0) return this.#number(b)
    if ((b & 0xe0) === 0xa0) return this.#string(b)
    if ((b & 0xf0) === 0x80) return this.#object(b)
    if ((b & 0xf0) === 0x90) return this.#array(b)
    switch (b) {
      case 0xc0:
        return null
      case 0xc2:
        return false
      case 0xc3:
        return true
      case 0xd9:
      case 0xda:
      case 0xdb:
        return this.#string(b)
      case 0xdc:
      case 0xdd:
        return this.#array(b)
      case 0xde:
      case 0xdf:
        return this.#object(b)
      case 0xd4:
        return this.#tagged()
      default:
        return this.#number(b)
    }
  }

  #array(b: number): unknown[] {
    const n = this.#arrayLength(b)
    if (n > this.#data.length - this.#pos) throw NOT_FAST // each element takes a byte at least
    const out = new Array<unknown>(n)
    this.#table.push(out)
    for (let i = 0; i < n; i++) out[i] = this.#value()
    return out
  }

  #object(b: number): Record<string, unknown> {
    const n = this.#mapLength(b)
    const out = plainObjectFor(n)
    this.#table.push(out)
    this.#fill(out, n, true)
    return out
  }

  /** Attributes of a map: string keys, each once (a repeated key is left to the two-step path). */
  #fill(out: Record<string, unknown>, n: number, plain: boolean): void {
    for (let i = 0; i < n; i++) {
      const k = this.#string(this.#u8())
      if (Object.prototype.hasOwnProperty.call(out, k)) throw NOT_FAST
      const v = this.#value()
      if (plain && k !== '__proto__') out[k] = v
      else Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true })
    }
  }

  #tagged(): unknown {
    const tag = this.#u8()
    if (this.#u8() !== 0) throw NOT_FAST
    switch (tag) {
      case 0:
        return undefined
      case Tag.PERSISTENT_REF: {
        if (this.#u8() !== 0x92) throw NOT_FAST
        if (this.#binLength() !== 8) throw NOT_FAST
        const oid = bytesToId(this.#data, this.#pos) // no subarray per reference
        this.#pos += 8
        const className = this.#string(this.#u8())
        return this.refs.persistentObject(oid, className)
      }
      case Tag.BACKREF: {
        const n = this.#number(this.#u8())
        if (!(n >= 0 && n < this.#table.length)) throw NOT_FAST
        return this.#table[n]
      }
      case Tag.BIGINT: {
        const text = this.#string(this.#u8())
        if (!DECIMAL.test(text)) throw NOT_FAST
        return BigInt(text)
      }
      case Tag.DATE: {
        const d = new Date(this.#number(this.#u8()))
        this.#table.push(d)
        return d
      }
      case Tag.MAP: {
        const out = new Map<unknown, unknown>()
        this.#table.push(out)
        const n = this.#arrayLength(this.#u8())
        if (n % 2 !== 0) throw NOT_FAST
        for (let i = 0; i < n; i += 2) out.set(this.#value(), this.#value())
        return out
      }
      case Tag.SET: {
        const out = new Set<unknown>()
        this.#table.push(out)
        const n = this.#arrayLength(this.#u8())
        for (let i = 0; i < n; i++) out.add(this.#value())
        return out
      }
      case Tag.ARRAY_BUFFER: {
        const out = new Uint8Array(this.#bin()).buffer // a copy (Buffer's slice would not copy)
        this.#table.push(out)
        return out
      }
      case Tag.TYPED_ARRAY: {
        if (this.#u8() !== 0x92) throw NOT_FAST
        const kind = this.#number(this.#u8())
        const K = typedKinds[kind]
        if (K === undefined) throw NOT_FAST
        const buffer = new Uint8Array(this.#bin()).buffer // a copy, aligned at 0
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
        if (this.#u8() !== 0x92) throw NOT_FAST
        const className = this.#string(this.#u8())
        const cls: AnyClass | undefined = findClass(className)
        const out = (cls !== undefined ? Object.create(cls.prototype as object) : unknownClassValue(className)) as Record<string, unknown>
        this.#table.push(out)
        const b = this.#u8()
        this.#fill(out, this.#mapLength(b), false)
        return out
      }
      default:
        throw NOT_FAST
    }
  }
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
