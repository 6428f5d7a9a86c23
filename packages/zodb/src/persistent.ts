// Persistent: the base class of objects that live in the database.
//
// How attribute access is made transparent (measured, see README "Why accessors"):
//
//  * unsaved objects (no connection yet) are ordinary objects: their attributes are own data
//    properties, exactly as the constructor and class fields made them.
//  * an active object of a connection (UPTODATE, CHANGED, STICKY) keeps its state in a hidden
//    dictionary `_p_dict`, and each attribute is an own accessor property whose getter and
//    setter are generated once per attribute name and shared by every object. Reads are a
//    monomorphic getter call that V8 inlines; the setter marks the object changed (and
//    registers it with its connection) before the first write of a transaction.
//  * a ghost has no state properties at all. Reading one falls through the prototype chain to
//    a Proxy placed under Persistent.prototype, which loads the object and reads again. Setting
//    an attribute that an object does not have yet reaches the same Proxy, which is how new
//    attributes are tracked too.
//
// A Proxy around every instance would be simpler, but bench/objects.bench.js measures it at
// about 40x a plain object per read and 15x per write; this layout reads at about 1.5x and
// writes (to a changed object) at about 2x.

import { ConnectionStateError } from './errors.js'
import { plainObjectFor } from './sized-object.js'
import { type Oid, type Tid, idToHex, tidToDate } from './tid.js'

/** Object states, numbered as in Python's persistent package. */
export const GHOST = -1
export const UPTODATE = 0
export const CHANGED = 1
export const STICKY = 2
export type PersistentState = typeof GHOST | typeof UPTODATE | typeof CHANGED | typeof STICKY

/** The summary `_p_status` gives. */
export type PersistentStatus = 'unsaved' | 'ghost' | 'saved' | 'changed' | 'sticky'

/** What a persistent object needs from the connection (its "jar") that manages it. */
export interface PersistentJar {
  /** Load the state of `obj`, a ghost of this jar (may throw POSKeyError, ReadConflictError...). */
  setstate(obj: Persistent): void
  /** `obj` is about to change for the first time in this transaction (may refuse by throwing). */
  register(obj: Persistent): void
  /** `obj` was loaded or changed: the cache may want to remember the access. */
  accessed?(obj: Persistent): void
  /** `obj` became a ghost. */
  ghostified?(obj: Persistent): void
  /**
   * `values[from..to]` (the values of a B-tree leaf being iterated) are about to be read one
   * after the other: when the first of them that is a ghost of this jar loads, the jar may fetch
   * the records of the others together. A hint, never required; the jar keeps the last one.
   * The values are looked at only then, not here: an iteration over loaded objects pays nothing
   * per leaf (and its optimized code never sees the ghosts' maps give way to the loaded ones).
   */
  preload?(values: readonly unknown[], from: number, to: number): void
}

/** Bookkeeping of one persistent object. Internal: use the `_p_*` accessors. */
export class PersistentMeta {
  jar: PersistentJar | null = null
  oid: Oid | null = null
  serial: Tid = 0n
  state: PersistentState = UPTODATE
  /**
   * Set by `_p_sticky = true` until `_p_sticky = false`: a change makes the object CHANGED for
   * a while, and it must come back STICKY, not UPTODATE, once stored, taken back or reloaded.
   */
  sticky = false
  /** True while the jar fills in the state: writes then are not changes. */
  loading = false
  /** Estimated size of the object's record in bytes. */
  size = 0
  /** The size the connection's object cache counted for the object while it is active there. */
  cachedSize = 0
  /** The cache's clock when the object took its place in the cache's LRU order; 0 while not there. */
  lruTick = 0
  /** The cache's clock when the object was last used (loaded, stored, added). */
  usedTick = 0
  /** The cache's weak reference to the object, made the first time it became a ghost there. */
  weakRef: WeakRef<object> | null = null
  /**
   * Set when the prototype hook gave the object an own property Object.keys does not list (a
   * `_v_*` or custom `_p_*` attribute, a symbol-keyed one): `ghostify` then looks for every key
   * at once, as it did for every object.
   */
  extras = false
}

type StateDict = Record<string, unknown>

/** Whether `key` names a state attribute (stored, change-tracked) rather than `_p_*` / `_v_*`. */
export function isStateKey(key: string): boolean {
  return !(key.charCodeAt(0) === 95 /* _ */ && (key.startsWith('_p_') || key.startsWith('_v_')))
}

/** Whether `obj` is a Persistent made by its constructor or `_p_new` (set in the class's static block). */
let hasSlots: (obj: object) => boolean
/**
 * The bookkeeping record of `obj`, read from its private field directly (set in the class's
 * static block): the `_p_meta` getter cost a call and two property look-ups where the callers
 * see many classes (the cache, the commit), 1.5% of a W-OBJ populate's CPU profile.
 */
let metaOf: (obj: Persistent) => PersistentMeta
/** The state dictionary of `obj` and its setting, the same way (the `_p_dict` accessors are for other modules). */
let dictOf: (obj: Persistent) => StateDict | null
let setDict: (obj: Persistent, dict: StateDict | null) => void

// --- change tracking -------------------------------------------------------------------------

/** Called before a state attribute of an object with a jar is written. */
function beforeWrite(obj: Persistent): void {
  const meta = metaOf(obj)
  if (meta.loading || meta.jar === null) return
  if (meta.state === UPTODATE || meta.state === STICKY) {
    meta.jar.register(obj) // may throw (historical connection): then nothing is written
    meta.state = CHANGED
  }
}

interface AccessorPair {
  get(this: Persistent): unknown
  set(this: Persistent, value: unknown): void
}
const accessors = new Map<string, AccessorPair>()
/** Attribute names that get generated (fastest) accessors; later names share closures. */
const GENERATED_ACCESSOR_LIMIT = 4096

/** The shared getter/setter pair of an attribute name (generated so that V8 sees a named load). */
function accessorFor(key: string): AccessorPair {
  let pair = accessors.get(key)
  if (pair !== undefined) return pair
  if (key === '__proto__' || accessors.size >= GENERATED_ACCESSOR_LIMIT) {
    // Plain closures: no compilation per name. Used for the odd key and once many distinct
    // names were seen (an object used as a big dictionary: PersistentMapping suits it better).
    pair = {
      get() {
        const dict = dictOf(this)
        return dict !== null && Object.prototype.hasOwnProperty.call(dict, key) ? dict[key] : undefined
      },
      set(value) {
        if (metaOf(this).state !== CHANGED) beforeWrite(this)
        const dict = dictOf(this)
        if (dict === null) return
        if (key === '__proto__') Object.defineProperty(dict, key, { value, writable: true, enumerable: true, configurable: true })
        else dict[key] = value
      },
    }
  } else {
    const k = JSON.stringify(key)
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- one small function per attribute name, for speed
    pair = new Function(
      'beforeWrite',
      'CHANGED',
      `return {
        get() { return this._p_dict[${k}] },
        set(value) { if (this._p_meta.state !== CHANGED) beforeWrite(this); this._p_dict[${k}] = value },
      }`,
    )(beforeWrite, CHANGED) as AccessorPair
  }
  accessors.set(key, pair)
  return pair
}

/** The property descriptor of each attribute name's accessors (reused: defining one allocates nothing). */
const accessorDescriptors = new Map<string, PropertyDescriptor>()

function accessorDescriptor(key: string): PropertyDescriptor {
  let desc = accessorDescriptors.get(key)
  if (desc === undefined) {
    const pair = accessorFor(key)
    desc = { get: pair.get, set: pair.set, enumerable: true, configurable: true }
    accessorDescriptors.set(key, desc)
  }
  return desc
}

function defineStateAttribute(obj: Persistent, dict: StateDict, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(dict, key, { value, writable: true, enumerable: true, configurable: true })
  } else {
    dict[key] = value
  }
  Object.defineProperty(obj, key, accessorDescriptor(key))
}

/** Own string keys of `obj` that are state attributes, in definition order. */
function stateKeys(obj: object): string[] {
  return Object.keys(obj).filter(isStateKey)
}

/**
 * Switch an object with own data properties to the accessor layout (after it was stored, or
 * before its state is loaded). Deleting in reverse order keeps V8's fast object layout.
 *
 * Only the enumerable own properties are looked at (`Object.keys` reads V8's enum cache:
 * `getOwnPropertyNames` cost a sixth of the switch): non-enumerable ones are never state
 * attributes, and are left where they are.
 */
export function _activateLayout(obj: Persistent): void {
  if (dictOf(obj) !== null) return
  const names = Object.keys(obj)
  const proto = Object.getPrototypeOf(obj) as object
  const activators = activatorsOf.get(proto)
  if (activators !== undefined) {
    for (let i = 0; i < activators.length; i++) {
      const a = activators[i]!
      if (sameNames(a.names, names)) {
        if (a.activate(obj)) return
        break
      }
    }
  }
  const n = names.length
  // Sized for its attributes: a `{}` put the fifth of W-OBJ's Item in a property array of its own.
  const dict: StateDict = plainObjectFor(n)
  if (activatePlainLayout(obj, dict, names)) {
    learnActivator(proto, activators, names)
    return
  }
  const descs = scratchDescriptors
  for (let i = 0; i < n; i++) descs[i] = Object.getOwnPropertyDescriptor(obj, names[i]!)
  for (let i = n - 1; i >= 0; i--) delete (obj as unknown as StateDict)[names[i]!]
  setDict(obj, dict)
  try {
    for (let i = 0; i < n; i++) {
      const desc = descs[i]
      if (desc === undefined) continue
      const k = names[i]!
      if ('value' in desc && isStateKey(k)) defineStateAttribute(obj, dict, k, desc.value)
      else Object.defineProperty(obj, k, desc)
    }
  } finally {
    // Not held past the switch (their values would stay reachable from here).
    for (let i = 0; i < n; i++) descs[i] = undefined
  }
}

/** The descriptors `_activateLayout` takes before it deletes (one array reused: no array per stored object). */
const scratchDescriptors: Array<PropertyDescriptor | undefined> = []

type LookupAccessor = (this: object, key: string) => unknown
const lookupGetter = (Object.prototype as unknown as { __lookupGetter__: LookupAccessor }).__lookupGetter__
/** The values `activatePlainLayout` reads before it deletes. */
const scratchValues: unknown[] = []

/**
 * `_activateLayout` of the usual object: every enumerable own property a state attribute held
 * in a data property. Told apart without a descriptor object per property (`__lookupGetter__`
 * and `__lookupSetter__` stop at an own property and allocate nothing): the descriptors were
 * the biggest allocation of a W-OBJ populate (~500 of ~4,100 bytes per object, heap sampling).
 * False, with nothing changed, for any other object.
 */
function activatePlainLayout(obj: Persistent, dict: StateDict, names: string[]): boolean {
  const n = names.length
  const values = scratchValues
  let plain = true
  for (let i = 0; i < n; i++) {
    const k = names[i]!
    if (!isStateKey(k) || k === '__proto__' || lookupGetter.call(obj, k) !== undefined) {
      plain = false
      break
    }
    const value = (obj as unknown as StateDict)[k]
    // No getter: a data property, or an accessor without one (a setter only, or neither), which
    // reads undefined without running anything: only then is a descriptor asked for.
    if (value === undefined && !('value' in Object.getOwnPropertyDescriptor(obj, k)!)) {
      plain = false
      break
    }
    values[i] = value
  }
  try {
    if (!plain) return false
    for (let i = n - 1; i >= 0; i--) delete (obj as unknown as StateDict)[names[i]!]
    setDict(obj, dict)
    for (let i = 0; i < n; i++) {
      const k = names[i]!
      dict[k] = values[i]
      Object.defineProperty(obj, k, accessorDescriptor(k))
    }
    return true
  } finally {
    // Not held past the switch (their values would stay reachable from here).
    for (let i = 0; i < n; i++) values[i] = undefined
  }
}

/**
 * `activatePlainLayout` written out for one list of attribute names (`names`, as Object.keys
 * gives them): the same steps, with the names as constants. The loop over names did each read,
 * delete and store through V8's megamorphic keyed paths (the dictionary's stores adding
 * properties one transition at a time); here each site sees one name and the objects of one
 * class (W-OBJ populate: SQLiteStorage +5.3% objects/s, +4.0% CPU rate; MemoryStorage +7%; paired A/B rounds).
 * The dictionary is made as activatePlainLayout makes it (plainObjectFor, then the names in
 * order), so it takes the same hidden classes and the accessors' loads stay monomorphic.
 */
interface Activator {
  readonly names: readonly string[]
  /** Switch `obj`, whose Object.keys are `names`, to the accessor layout; false, with nothing changed, if it is not a plain object. */
  activate(obj: Persistent): boolean
}

/** Per prototype, the activators made for its objects' lists of names (at most MAX_ACTIVATORS_PER_CLASS). */
const activatorsOf = new WeakMap<object, Activator[]>()
const MAX_ACTIVATORS_PER_CLASS = 4
/** Names per activator at most: an object used as a big dictionary goes the generic way. */
const MAX_ACTIVATOR_NAMES = 64
/** Activators made in this process at most (each is a compiled function). */
const MAX_ACTIVATORS = 1024
let activatorCount = 0

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  const n = a.length
  if (b.length !== n) return false
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false
  return true
}

/** After activatePlainLayout switched an object of `proto` with these names: make their activator, within the limits. */
function learnActivator(proto: object, activators: Activator[] | undefined, names: string[]): void {
  const n = names.length
  if (n === 0 || n > MAX_ACTIVATOR_NAMES || activatorCount >= MAX_ACTIVATORS) return
  if (activators !== undefined && activators.length >= MAX_ACTIVATORS_PER_CLASS) return
  for (let i = 0; i < n; i++) {
    // Only what activatePlainLayout accepted; '__proto__' would be the prototype in a store.
    const k = names[i]!
    if (!isStateKey(k) || k === '__proto__') return
  }
  if (activators !== undefined && activators.some((a) => sameNames(a.names, names))) return
  const activator: Activator = { names: names.slice(), activate: compileActivator(names) }
  activatorCount++
  if (activators === undefined) activatorsOf.set(proto, [activator])
  else activators.push(activator)
}

function compileActivator(names: readonly string[]): (obj: Persistent) => boolean {
  const n = names.length
  const q = names.map((k) => JSON.stringify(k))
  const lines: string[] = []
  // As activatePlainLayout: no getter, and a value other than undefined or a data descriptor.
  lines.push(`if (${q.map((k) => `lookupGetter.call(obj, ${k}) !== undefined`).join(' || ')}) return false`)
  for (let i = 0; i < n; i++) lines.push(`const v${i} = obj[${q[i]}]`)
  lines.push(`if (${q.map((k, i) => `(v${i} === undefined && !('value' in getOwnPropertyDescriptor(obj, ${k})))`).join(' || ')}) return false`)
  for (let i = n - 1; i >= 0; i--) lines.push(`delete obj[${q[i]}]`)
  lines.push(`const dict = plainObjectFor(${n})`)
  for (let i = 0; i < n; i++) lines.push(`dict[${q[i]}] = v${i}`)
  lines.push('setDict(obj, dict)')
  for (let i = 0; i < n; i++) lines.push(`defineProperty(obj, ${q[i]}, d${i})`)
  lines.push('return true')
  const descriptors = names.map(accessorDescriptor)
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- one small function per class layout, for speed
  const make = new Function(
    'lookupGetter',
    'getOwnPropertyDescriptor',
    'plainObjectFor',
    'setDict',
    'defineProperty',
    ...descriptors.map((_, i) => `d${i}`),
    `return function activate(obj) {\n  ${lines.join('\n  ')}\n}`,
  ) as (...args: unknown[]) => (obj: Persistent) => boolean
  return make(lookupGetter, Object.getOwnPropertyDescriptor, plainObjectFor, setDict, Object.defineProperty, ...descriptors)
}

/** Drop every attribute (state and `_v_*`) and make the object a ghost. */
function ghostify(obj: Persistent): void {
  const meta = metaOf(obj)
  if (meta.extras) {
    // One call for string and symbol keys alike (getOwnPropertyNames and getOwnPropertySymbols
    // each cost about as much, even on an object with no symbols).
    deleteOwn(obj, Reflect.ownKeys(obj))
    meta.extras = false
  } else {
    // The usual object: its own properties are its state attributes, which Object.keys lists
    // from V8's enum cache (Reflect.ownKeys of an object with five accessors costs ~9x as much:
    // it was 3-5% of a W-OBJ populate, where the cache makes 90,000 ghosts). Deleted in reverse
    // order of definition, each is the last one: V8 keeps the fast layout.
    deleteOwn(obj, Object.keys(obj))
    // Anything the application defined itself (Object.defineProperty of a non-enumerable or a
    // symbol key) is still there; asked of an object with no own property left, this is cheap.
    const rest = Reflect.ownKeys(obj)
    if (rest.length > 0) deleteOwn(obj, rest)
  }
  setDict(obj, null)
  meta.state = GHOST
  meta.jar?.ghostified?.(obj)
}

function deleteOwn(obj: Persistent, keys: Array<string | symbol>): void {
  for (let i = keys.length - 1; i >= 0; i--) delete (obj as unknown as Record<string | symbol, unknown>)[keys[i]!]
}

// --- the prototype-chain hook for ghosts and new attributes ---------------------------------

const hookTarget = {}
const prototypeHook = new Proxy(hookTarget, {
  get(target, key, receiver: object) {
    if (typeof key === 'string' && key !== '_p_meta' && key !== '_p_dict' && key !== 'then' && isStateKey(key) && hasSlots(receiver)) {
      const obj = receiver as Persistent
      if (metaOf(obj).state === GHOST && metaOf(obj).jar !== null) {
        obj._p_activate()
        if (Object.prototype.hasOwnProperty.call(obj, key)) return (obj as unknown as StateDict)[key]
      }
    }
    return Reflect.get(target, key, receiver)
  },
  set(target, key, value, receiver: object) {
    if (typeof key === 'string' && hasSlots(receiver)) {
      const obj = receiver as Persistent
      if (!isStateKey(key)) {
        // _v_* and custom _p_* attributes: kept on the object, never stored, never a change.
        Object.defineProperty(obj, key, { value, writable: true, enumerable: false, configurable: true })
        metaOf(obj).extras = true
        return true
      }
      if (metaOf(obj).jar === null) {
        Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true })
        return true
      }
      if (metaOf(obj).state === GHOST) {
        obj._p_activate()
        if (Object.prototype.hasOwnProperty.call(obj, key)) {
          ;(obj as unknown as StateDict)[key] = value
          return true
        }
      }
      if (dictOf(obj) === null) _activateLayout(obj) // an added object that was never stored
      if (metaOf(obj).state !== CHANGED) beforeWrite(obj)
      defineStateAttribute(obj, dictOf(obj)!, key, value)
      return true
    }
    // A symbol-keyed attribute becomes an own property of the receiver (not a state attribute).
    if (typeof key === 'symbol' && hasSlots(receiver)) metaOf(receiver as Persistent).extras = true
    return Reflect.set(target, key, value, receiver)
  },
})

// --- the class -------------------------------------------------------------------------------

/**
 * Base class of persistent objects. Subclass it, register the subclass with `registerClass`,
 * and use attributes as usual:
 *
 *     class Account extends Persistent { owner = ''; balance = 0 }
 *     registerClass('bank.Account', Account)
 */
export class Persistent {
  // The two slots are private fields: invisible to Object.keys, spreading and
  // getOwnPropertyNames, and made at construction for a fraction of what two
  // Object.defineProperty calls of non-enumerable properties cost (about 0.2 us against 0.5 us
  // per object, on every populate and every ghost of a cold read).
  readonly #meta = new PersistentMeta()
  #dict: StateDict | null = null

  static {
    hasSlots = (obj) => #meta in obj
    metaOf = (obj) => obj.#meta
    dictOf = (obj) => obj.#dict
    setDict = (obj, dict) => {
      obj.#dict = dict
    }
  }

  /** @internal The bookkeeping record. */
  get _p_meta(): PersistentMeta {
    return this.#meta
  }

  /** @internal The state of an active object (its attributes' values); null for unsaved objects and ghosts. */
  get _p_dict(): StateDict | null {
    return this.#dict
  }
  set _p_dict(dict: StateDict | null) {
    this.#dict = dict
  }

  /**
   * Make an instance without running the constructor: how the database creates ghosts, and how
   * conflict resolution gets an object to call `_p_resolveConflict` on.
   */
  static _p_new<T extends Persistent>(cls: abstract new (...args: never[]) => T): T {
    // Persistent's constructor (its slots) with cls's prototype; cls's own constructor does not run.
    return Reflect.construct(Persistent, [], cls) as T
  }

  /** The object's id in its database, or null while unsaved. */
  get _p_oid(): Oid | null {
    return metaOf(this).oid
  }
  set _p_oid(oid: Oid | null) {
    const meta = metaOf(this)
    if (meta.oid === oid) return
    if (meta.jar !== null) {
      throw new ConnectionStateError(`cannot change _p_oid of an object that belongs to a connection (oid 0x${idToHex(meta.oid ?? 0n)})`)
    }
    meta.oid = oid
  }

  /** The connection that manages the object, or null while unsaved. */
  get _p_jar(): PersistentJar | null {
    return metaOf(this).jar
  }
  set _p_jar(jar: PersistentJar | null) {
    const meta = metaOf(this)
    if (meta.jar === jar) return
    if (meta.jar !== null) throw new ConnectionStateError('cannot change _p_jar of an object that already belongs to a connection')
    meta.jar = jar
  }

  /** The tid of the revision the object's state comes from (0n when unsaved). */
  get _p_serial(): Tid {
    return metaOf(this).serial
  }
  set _p_serial(serial: Tid) {
    if (typeof serial !== 'bigint') throw new TypeError('_p_serial must be a bigint tid')
    metaOf(this).serial = serial
  }

  /** GHOST (-1), UPTODATE (0), CHANGED (1) or STICKY (2). */
  get _p_state(): PersistentState {
    return metaOf(this).state
  }

  get _p_status(): PersistentStatus {
    const meta = metaOf(this)
    if (meta.jar === null) return 'unsaved'
    switch (meta.state) {
      case GHOST:
        return 'ghost'
      case CHANGED:
        return 'changed'
      case STICKY:
        return 'sticky'
      default:
        return 'saved'
    }
  }

  /**
   * true: changed in this transaction; false: up to date; null: a ghost. Setting true marks the
   * object changed (loading it first if it is a ghost); false forgets the change flag (the object
   * stays registered, and is not stored unless changed again); null makes an up-to-date object a
   * ghost. Python's `del obj._p_changed` is `obj._p_invalidate()` here: JavaScript has no way to
   * intercept `delete` of an inherited property.
   */
  get _p_changed(): boolean | null {
    const meta = metaOf(this)
    if (meta.state === GHOST) return null
    return meta.state === CHANGED
  }
  set _p_changed(value: boolean | null) {
    const meta = metaOf(this)
    if (value === null || value === undefined) {
      this._p_deactivate()
      return
    }
    if (meta.jar === null) return
    if (value) {
      if (meta.state === GHOST) this._p_activate()
      if (meta.state !== CHANGED) beforeWrite(this)
    } else if (meta.state === CHANGED) {
      meta.state = meta.sticky ? STICKY : UPTODATE
    }
  }

  /** When the object's revision was committed (null when unsaved). */
  get _p_mtime(): Date | null {
    const meta = metaOf(this)
    if (meta.jar === null || meta.serial === 0n) return null
    if (meta.state === GHOST) this._p_activate()
    return tidToDate(meta.serial)
  }

  /** The object's estimated size in bytes (its record's size when last loaded or stored). */
  get _p_estimatedSize(): number {
    return metaOf(this).size
  }
  set _p_estimatedSize(size: number) {
    if (!Number.isFinite(size) || size < 0) throw new RangeError(`_p_estimatedSize must be a non-negative number, got ${size}`)
    metaOf(this).size = Math.ceil(size)
  }

  /** A sticky object is never made a ghost (by the cache or `_p_deactivate`) until unstuck. */
  get _p_sticky(): boolean {
    return metaOf(this).sticky
  }
  set _p_sticky(value: boolean) {
    const meta = metaOf(this)
    if (value) {
      if (meta.jar === null) throw new ConnectionStateError('only an object of a connection can be sticky')
      if (meta.state === GHOST) this._p_activate()
      meta.sticky = true
      if (meta.state === UPTODATE) meta.state = STICKY
    } else {
      meta.sticky = false
      if (meta.state === STICKY) meta.state = UPTODATE
    }
  }

  /** Load the state of a ghost (no-op otherwise). */
  _p_activate(): void {
    const meta = metaOf(this)
    if (meta.state === GHOST && meta.jar !== null) meta.jar.setstate(this)
  }

  /** Make an up-to-date object a ghost, releasing its state; changed and sticky objects are left alone. */
  _p_deactivate(): void {
    const meta = metaOf(this)
    if (meta.jar === null || meta.oid === null || meta.state !== UPTODATE) return
    ghostify(this)
  }

  /** Make the object a ghost even if it is changed (its changes are lost). */
  _p_invalidate(): void {
    const meta = metaOf(this)
    if (meta.jar === null || meta.oid === null) return
    ghostify(this)
  }

  /**
   * The object's state, as stored: by default a plain object of its attributes (not `_v_*`,
   * not `_p_*`). Override together with `_p_setState` to store something else.
   */
  _p_getState(): Record<string, unknown> {
    if (metaOf(this).state === GHOST) this._p_activate()
    const out: Record<string, unknown> = {}
    // Read through the object's own attributes (accessors or plain properties): an attribute
    // removed with `delete` is gone, one defined with defineProperty is there.
    for (const k of stateKeys(this)) {
      const value = (this as unknown as StateDict)[k]
      if (k === '__proto__') Object.defineProperty(out, k, { value, writable: true, enumerable: true, configurable: true })
      else out[k] = value
    }
    return out
  }

  /** Set the object's attributes from a stored state (the inverse of `_p_getState`). */
  _p_setState(state: unknown): void {
    if (state === null || typeof state !== 'object') {
      throw new TypeError(`${this.constructor.name}._p_setState: expected an object of attributes, got ${typeof state}`)
    }
    for (const k of Object.keys(state)) {
      const desc = Object.getOwnPropertyDescriptor(state, k)!
      assignLoaded(this, k, desc.value)
    }
  }

  /**
   * Optional conflict resolution: given the state this transaction started from (`old`), the
   * state committed meanwhile (`committed`) and this transaction's state (`mine`), return the
   * merged state, or throw to leave the conflict unresolved. Called on an instance made without
   * running the constructor; only the states may be used.
   */
  _p_resolveConflict?(old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>): Record<string, unknown>

  /** @internal */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    const meta = metaOf(this)
    const id = meta.oid === null ? 'unsaved' : `oid 0x${idToHex(meta.oid)}`
    if (meta.state === GHOST) return `${this.constructor.name} <${id} ghost>`
    return `${this.constructor.name} <${id} ${this._p_status}> ${JSON.stringify(this._p_getState(), (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v instanceof Persistent ? `<${v.constructor.name} ${v._p_oid === null ? 'unsaved' : idToHex(v._p_oid)}>` : v))}`
  }
}

Object.setPrototypeOf(Persistent.prototype, prototypeHook)

// --- what the connection uses ------------------------------------------------------------------

/** @internal The bookkeeping record of `obj`. */
export function _meta(obj: Persistent): PersistentMeta {
  return metaOf(obj)
}

/** @internal Attach an unsaved object to a jar (connection.add). */
export function _attach(obj: Persistent, jar: PersistentJar, oid: Oid): void {
  const meta = metaOf(obj)
  meta.jar = jar
  meta.oid = oid
  meta.state = CHANGED
}

/** @internal Detach an object whose creation was aborted: it is unsaved again, with its state. */
export function _detach(obj: Persistent): void {
  const meta = metaOf(obj)
  if (meta.state === GHOST) {
    meta.jar = null
    meta.oid = null
    meta.state = UPTODATE
    meta.sticky = false
    return
  }
  if (dictOf(obj) !== null) {
    // Back to plain data properties.
    const dict = dictOf(obj)!
    const keys = Object.keys(dict)
    for (let i = keys.length - 1; i >= 0; i--) delete (obj as unknown as StateDict)[keys[i]!]
    setDict(obj, null)
    for (const k of keys) Object.defineProperty(obj, k, { value: dict[k], writable: true, enumerable: true, configurable: true })
  }
  meta.jar = null
  meta.oid = null
  meta.serial = 0n
  meta.state = UPTODATE
  meta.sticky = false
}

/**
 * @internal Fill a ghost (or an object being reset) with `state`: it becomes UPTODATE with the
 * accessor layout. The object's `_p_setState` does the work, so classes can override it.
 */
export function _loadState(obj: Persistent, state: unknown, serial: Tid, size: number): void {
  const meta = metaOf(obj)
  if (meta.state !== GHOST) ghostify(obj)
  meta.loading = true
  meta.state = UPTODATE
  try {
    if (obj._p_setState === defaultSetState && state !== null && typeof state === 'object') {
      if (Object.getPrototypeOf(state) === Object.prototype) {
        // A plain object fresh from the record (the loaders' case): it becomes the dictionary
        // itself, instead of being copied into a new one (an object and a store per attribute
        // less per load, and less for the next scavenge to copy).
        setDict(obj, state as StateDict)
        adoptState(obj, state as StateDict)
      } else {
        const dict: StateDict = {}
        setDict(obj, dict)
        setStateDirectly(obj, dict, state as StateDict)
      }
    } else {
      setDict(obj, {})
      obj._p_setState(state)
    }
  } catch (error) {
    meta.loading = false
    ghostify(obj)
    throw error
  } finally {
    meta.loading = false
  }
  meta.serial = serial
  meta.size = size
  if (meta.sticky) meta.state = STICKY // reloaded after an invalidation or an abort: still pinned
}

const defaultSetState = Persistent.prototype._p_setState

/**
 * What the default `_p_setState` does, without going through the prototype hook: an attribute
 * that an assignment would hand to the hook gets its accessor directly (while loading, the hook
 * does nothing else); any other (one named like a method or accessor of the class, or a `_v_`
 * name) is assigned as `_p_setState` would.
 */
/** setStateDirectly with `dict` as the state: only the accessors (and other assignments) are made. */
function adoptState(obj: Persistent, dict: StateDict): void {
  const proto = Object.getPrototypeOf(obj) as object
  const layout = layoutOf.get(proto)
  if (layout !== undefined && adoptLayout(obj, dict, layout)) return
  const names: string[] = []
  let allAccessors = true
  // for-in over a plain object walks its enum cache (Object.keys made an array per load).
  for (const k in dict) {
    if (!Object.prototype.hasOwnProperty.call(dict, k)) {
      allAccessors = false
      continue
    }
    if (isStateKey(k) && reachesHook(obj, k)) {
      Object.defineProperty(obj, k, accessorDescriptor(k))
      names.push(k)
    } else {
      allAccessors = false
      assignLoaded(obj, k, k === '__proto__' ? (Object.getOwnPropertyDescriptor(dict, k)!.value as unknown) : dict[k])
    }
  }
  if (allAccessors && names.length > 0) {
    const next: Layout = { names, descriptors: names.map(accessorDescriptor), keeper: null }
    // The class's first layout keeps its hidden class from the start (a class of one object per
    // connection, a tree's root, would otherwise lose it before its next load); a layout that
    // replaces another waits for its first reuse (a class whose objects alternate between
    // layouts then makes none).
    if (layout === undefined) next.keeper = layoutKeeper(obj, next)
    layoutOf.set(proto, next)
  }
}

/**
 * The attribute names of a class's objects, in record order, all of them accessors, with their
 * descriptors in one object: the layout the last load of an object of the class gave (most
 * objects of a class have the same attributes).
 */
interface Layout {
  names: string[]
  descriptors: PropertyDescriptor[]
  /**
   * An object of the class with these accessors and no state, never used: it keeps the hidden
   * class of the class's loaded objects alive while none of them is. V8 holds hidden classes
   * weakly and drops the optimized code that names a dead one ("weak objects" in
   * --trace-deopt): once every loaded object of a database was collected, the accessors, the
   * B-tree iterator and the decoder were recompiled inside the next database's reads (W-OBJ's
   * hot read of a second run in a process: 6-8M objects/s, up to 19M with the keepers).
   */
  keeper: object | null
}
/**
 * Per prototype, its last layout. An object whose record has exactly these names (and none of
 * them its own property) gets their accessors without the per-name look-ups of
 * `accessorDescriptor` and `reachesHook` (a Map, a WeakMap and a Set each).
 * It relies on `reachesHook`'s answers, with the same limit (see `hookKeysOf`).
 */
const layoutOf = new WeakMap<object, Layout>()

/** `adoptState` through `layout`; false, with nothing done, when the record's names differ from it. */
function adoptLayout(obj: Persistent, dict: StateDict, layout: Layout): boolean {
  const names = layout.names
  let i = 0
  for (const k in dict) {
    if (names[i] !== k || !Object.prototype.hasOwnProperty.call(dict, k) || Object.prototype.hasOwnProperty.call(obj, k)) return false
    i++
  }
  if (i !== names.length) return false
  const descriptors = layout.descriptors
  // One defineProperty per name: a defineProperties of them all costs about twice as much.
  for (let j = 0; j < i; j++) Object.defineProperty(obj, names[j]!, descriptors[j]!)
  if (layout.keeper === null) layout.keeper = layoutKeeper(obj, layout)
  return true
}

/** The keeper of a layout whose class cannot be told from its prototype (none is made). */
const NO_KEEPER = Object.freeze({})

/**
 * A stateless object of `obj`'s class with `layout`'s accessors, made the way ghosts are (so
 * that it takes the same hidden classes); NO_KEEPER when the prototype's `constructor` does not
 * name the class. It has no jar and no state: it keeps nothing else alive.
 */
function layoutKeeper(obj: Persistent, layout: Layout): object {
  const proto = Object.getPrototypeOf(obj) as { constructor?: unknown }
  const cls = Object.prototype.hasOwnProperty.call(proto, 'constructor') ? proto.constructor : undefined
  if (typeof cls !== 'function' || (cls as { prototype?: unknown }).prototype !== proto) return NO_KEEPER
  const keeper = Persistent._p_new(cls as new () => Persistent)
  const { names, descriptors } = layout
  for (let j = 0; j < names.length; j++) Object.defineProperty(keeper, names[j]!, descriptors[j]!)
  return keeper
}

function setStateDirectly(obj: Persistent, dict: StateDict, state: StateDict): void {
  for (const k of Object.keys(state)) {
    const value = Object.getOwnPropertyDescriptor(state, k)!.value as unknown
    if (isStateKey(k) && reachesHook(obj, k)) defineStateAttribute(obj, dict, k, value)
    else assignLoaded(obj, k, value)
  }
}

/**
 * Assign a stored attribute that a property of the class's prototype chain stands for (a
 * method, an accessor): a read-only one (a getter without setter, added since the record was
 * written) shadows the stored value instead of making the object impossible to load (Python's
 * `__dict__.update` never fails either).
 */
function assignLoaded(obj: object, key: string, value: unknown): void {
  Reflect.set(obj, key, value)
}

/**
 * Per prototype: attribute names that no prototype between it and the hook defines. Filled as
 * loads meet names (a walk up the chain per attribute per load was 3% of a cold read); only
 * positive answers are kept, and a prototype that later gains a property of such a name (a class
 * patched at run time) must not have loaded objects with that attribute before.
 */
const hookKeysOf = new WeakMap<object, Set<string>>()

/** Whether a loaded attribute `key` of `obj` gets a tracking accessor: it is not own, and no accessor of the prototype chain takes it. */
function reachesHook(obj: object, key: string): boolean {
  if (Object.prototype.hasOwnProperty.call(obj, key)) return false
  const proto = Object.getPrototypeOf(obj) as object | null
  if (proto === null) return false
  let known = hookKeysOf.get(proto)
  if (known?.has(key) === true) return true
  for (let p: object | null = proto; p !== prototypeHook; p = Object.getPrototypeOf(p) as object | null) {
    if (p === null) return false
    const desc = Object.getOwnPropertyDescriptor(p, key)
    if (desc === undefined) continue
    // An accessor of the class takes the value. A method or a class-level default (a data
    // property) is shadowed by the stored attribute, as by the own property an assignment
    // makes: it gets the tracking accessor, as it had in the connection that stored it.
    if (!('value' in desc)) return false
    break
  }
  if (known === undefined) hookKeysOf.set(proto, (known = new Set()))
  known.add(key)
  return true
}

/**
 * @internal After a commit stored the object: it is up to date at `serial`. False when it is a
 * ghost (stored from a savepoint's record after eviction): nothing to update, nothing to count.
 */
export function _stored(obj: Persistent, serial: Tid, size: number): boolean {
  const meta = metaOf(obj)
  if (meta.state === GHOST) return false
  _activateLayout(obj)
  meta.serial = serial
  meta.size = size
  if (meta.state === CHANGED) meta.state = meta.sticky ? STICKY : UPTODATE
  return true
}

/** @internal A ghost of `cls` with the given oid, attached to `jar`. */
export function _newGhost<T extends Persistent>(cls: abstract new (...args: never[]) => T, jar: PersistentJar, oid: Oid): T {
  const obj = Persistent._p_new(cls)
  const meta = metaOf(obj)
  meta.jar = jar
  meta.oid = oid
  meta.state = GHOST
  return obj
}

/** @internal Make the object a ghost regardless of state (used by the cache and invalidation). */
export function _ghostify(obj: Persistent): void {
  if (metaOf(obj).state !== GHOST) ghostify(obj)
}
