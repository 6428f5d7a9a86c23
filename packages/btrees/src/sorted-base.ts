// What every collection (bucket, set, B-tree, tree set) offers to readers, written once over a
// few structural primitives that leaves and trees implement differently.

import { Persistent, type PersistentJar } from '@wendelin/zodb'

import type { Family, FamilyMember } from './family.js'
import { type Bound, type Lookup, type PutResult, belowUpper, lowerIndex, upperIndex } from './leaf.js'
import type { ForwardLeaf, Structure } from './structure.js'

export interface RangeOptions {
  /** Leave out the lower bound itself. */
  excludeMin?: boolean
  /** Leave out the upper bound itself. */
  excludeMax?: boolean
  /** Iterate from the largest key down. */
  reverse?: boolean
}

/** Raised when a collection changes while one of its lazy iterators is in use. */
export class ConcurrentModificationError extends Error {
  override name = 'ConcurrentModificationError'
}

// Changes made through this process's API, per collection, so an iterator can tell that its
// collection changed under it (the value of `anyChange` at the collection's last change). Not
// stored, not a change: a plain side table.
const versions = new WeakMap<object, number>()
/**
 * Changes made to any collection of this process: an iterator whose collection-wide count has
 * not moved since its last step knows its own collection did not change either, without a
 * WeakMap lookup per key (a hot read of a big tree spends a third of its time on that).
 */
let anyChange = 0

export abstract class SortedBase<K, V> extends Persistent {
  /** @internal The structure that holds the keys (see structure.ts). */
  abstract get _structure(): Structure

  /** @internal */ _lookup(key: K): Lookup<V> {
    return this._structure.lookup(this, key) as Lookup<V>
  }
  /** @internal */ _range(lo: Bound<K> | undefined, hi: Bound<K> | undefined, reverse: boolean): Iterable<[K, V | undefined]> {
    return this._structure.range(this, lo, hi, reverse) as Iterable<[K, V | undefined]>
  }
  /** @internal */ _put(key: K, value: V | undefined, onlyIfAbsent: boolean): PutResult<V> {
    return this._structure.put(this, key, value, onlyIfAbsent) as PutResult<V>
  }
  /** @internal */ _remove(key: K): Lookup<V> {
    return this._structure.remove(this, key) as Lookup<V>
  }

  /** Concurrent changes merge as the structure allows (see bucket-merge.ts). */
  override _p_resolveConflict(old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>): Record<string, unknown> {
    return this._structure.resolve(this.family as Family<unknown, unknown>, old, committed, mine)
  }

  /** The family of this collection (key and value kinds, node sizes). */
  get family(): Family<K, V> {
    return (this.constructor as unknown as FamilyMember).family as Family<K, V>
  }

  /** @internal Validate a caller's key. */
  _key(key: unknown): K {
    return this.family.keys.check(key)
  }

  /** @internal Record a change made through the API (for iterators). */
  _touch(): void {
    // The collection's version is the process-wide count at its last change: unique to that
    // change, as an iterator needs, for one WeakMap operation per change instead of two.
    versions.set(this, ++anyChange)
  }

  /** Number of keys. Walks every bucket, unless the collection keeps a Length (trees, on request). */
  get size(): number {
    return this._structure.count(this)
  }

  isEmpty(): boolean {
    for (const _ of this._range(undefined, undefined, false)) return false
    return true
  }

  has(key: K): boolean {
    return this._lookup(this._key(key)).found
  }

  /** The smallest key, or the smallest key ≥ `atLeast`; undefined when there is none. */
  minKey(atLeast?: K): K | undefined {
    const lo = atLeast === undefined ? undefined : { key: this._key(atLeast), exclusive: false }
    for (const [k] of this._range(lo, undefined, false)) return k
    return undefined
  }

  /** The largest key, or the largest key ≤ `atMost`; undefined when there is none. */
  maxKey(atMost?: K): K | undefined {
    const hi = atMost === undefined ? undefined : { key: this._key(atMost), exclusive: false }
    for (const [k] of this._range(undefined, hi, true)) return k
    return undefined
  }

  /** Keys from `min` to `max` (both optional, both inclusive unless excluded), lazily. */
  keys(min?: K, max?: K, options: RangeOptions = {}): Generator<K, void, undefined> {
    return this._iterate(min, max, options, KEYS) as Generator<K, void, undefined>
  }

  /** @internal The lazy iterator behind keys(), values() and entries(). */
  _iterate(min: K | undefined, max: K | undefined, options: RangeOptions, yields: Yields): Generator<unknown, void, undefined> {
    return new RangeIterator(this as unknown as AnyBase, min, max, options, yields) as unknown as Generator<unknown, void, undefined>
  }

  /** @internal Lazy entries in a range, failing if the collection changes meanwhile. */
  *_entriesIn(min: K | undefined, max: K | undefined, options: RangeOptions): Generator<[K, V | undefined], void, undefined> {
    const lo = min === undefined ? undefined : { key: this._key(min), exclusive: options.excludeMin ?? false }
    const hi = max === undefined ? undefined : { key: this._key(max), exclusive: options.excludeMax ?? false }
    const version = versions.get(this)
    for (const entry of this._range(lo, hi, options.reverse ?? false)) {
      yield entry
      if (versions.get(this) !== version) {
        throw new ConcurrentModificationError(`${this.constructor.name} changed while it was being iterated`)
      }
    }
  }

  /** Remove every key. */
  clear(): void {
    this._structure.clear(this)
    this._touch()
  }
}

/** What a RangeIterator yields: keys, values, or [key, value] entries. */
export const KEYS = 0
export const VALUES = 1
export const ENTRIES = 2
type Yields = typeof KEYS | typeof VALUES | typeof ENTRIES

type AnyBase = SortedBase<unknown, unknown>
/** What #step returns at the end, instead of a value. */
const END = Symbol('end')

/**
 * The lazy iterator of keys(), values() and entries(): what a generator over `_entriesIn` does
 * (bounds checked and the version taken at the first `next()`, a ConcurrentModificationError at
 * the `next()` after a change), but walking the leaves itself. Nested generators cost about
 * four resumptions and an entry array per key; this is a few field reads. Reverse ranges use
 * the structure's own `range`.
 */
class RangeIterator<T> {
  readonly #owner: AnyBase
  readonly #min: unknown
  readonly #max: unknown
  readonly #options: RangeOptions
  readonly #yields: Yields
  /** 0: not started, 1: running, 2: done. */
  #state = 0
  #version: number | undefined = undefined
  /** `anyChange` when the version was last checked. */
  #seenChanges = -1
  #reverse: Iterator<[unknown, unknown]> | null = null
  #leaf: ForwardLeaf | null = null
  #follow = false
  #keys: readonly unknown[] = []
  #values: readonly unknown[] | null = null
  #i = 0
  #last = -1
  #hi: Bound<unknown> | undefined = undefined
  #compare: (a: unknown, b: unknown) => number = () => 0
  /** The owner's connection, when it takes preload hints (every leaf of a tree is in it). */
  #jar: PersistentJar | null = null

  constructor(owner: AnyBase, min: unknown, max: unknown, options: RangeOptions, yields: Yields) {
    this.#owner = owner
    this.#min = min
    this.#max = max
    this.#options = options
    this.#yields = yields
  }

  [Symbol.iterator](): this {
    return this
  }

  next(): IteratorResult<T, undefined> {
    // The common step, small enough for V8 to inline into a for-of loop: started, nothing
    // changed anywhere, a key left in this leaf. Every path ends in the one result object
    // below, which the inlined loop then need not allocate (returning #step's own result
    // objects from a second site made V8 allocate one per key: a scavenge in most hot reads).
    const i = this.#i
    let value: unknown
    if (this.#state === 1 && anyChange === this.#seenChanges && i <= this.#last && this.#reverse === null) {
      this.#i = i + 1
      const yields = this.#yields
      const values = this.#values
      value = yields === VALUES ? (values === null ? undefined : values[i]) : yields === KEYS ? this.#keys[i] : [this.#keys[i], values === null ? undefined : values[i]]
    } else {
      value = this.#step()
    }
    const done = value === END
    return { value: (done ? undefined : value) as T, done } as IteratorResult<T, undefined>
  }

  /** The next value, or END. */
  #step(): unknown {
    if (this.#state !== 1) {
      if (this.#state === 2) return END
      this.#state = 2 // until started: a bad bound ends the iteration, as it would a generator
      this.#start()
      this.#state = 1
    } else if (anyChange !== this.#seenChanges) {
      if (versions.get(this.#owner) !== this.#version) {
        this.#state = 2
        throw new ConcurrentModificationError(`${this.#owner.constructor.name} changed while it was being iterated`)
      }
      this.#seenChanges = anyChange
    }
    if (this.#reverse !== null) {
      const r = this.#reverse.next()
      if (r.done === true) {
        this.#state = 2
        return END
      }
      return this.#project(r.value[0], r.value[1])
    }
    while (this.#i > this.#last) {
      if (!this.#advance()) {
        this.#state = 2
        return END
      }
    }
    const i = this.#i++
    const values = this.#values
    const yields = this.#yields
    // #project's work, written out: this runs once per leaf, often before V8 has optimized it
    // (each call then costs).
    return yields === VALUES ? (values === null ? undefined : values[i]) : yields === KEYS ? this.#keys[i] : [this.#keys[i], values === null ? undefined : values[i]]
  }

  return(value?: unknown): IteratorResult<T, undefined> {
    if (this.#state === 1) this.#reverse?.return?.()
    this.#state = 2
    return { value: value as undefined, done: true }
  }

  throw(error: unknown): never {
    if (this.#state === 1) this.#reverse?.return?.()
    this.#state = 2
    throw error
  }

  #project(key: unknown, value: unknown): T {
    const yields = this.#yields
    return (yields === VALUES ? value : yields === KEYS ? key : [key, value]) as T
  }

  #start(): void {
    const owner = this.#owner
    const options = this.#options
    const lo = this.#min === undefined ? undefined : { key: owner._key(this.#min), exclusive: options.excludeMin ?? false }
    const hi = this.#max === undefined ? undefined : { key: owner._key(this.#max), exclusive: options.excludeMax ?? false }
    this.#version = versions.get(owner)
    this.#seenChanges = anyChange
    if (options.reverse ?? false) {
      this.#reverse = owner._range(lo, hi, true)[Symbol.iterator]()
      return
    }
    this.#hi = hi
    this.#compare = owner.family.keys.compare as (a: unknown, b: unknown) => number
    const jar = owner._p_jar
    this.#jar = jar !== null && typeof jar.preload === 'function' ? jar : null
    const { leaf, follow } = owner._structure.forwardStart(owner, lo)
    this.#follow = follow
    if (leaf !== null) this.#enter(leaf, lo)
  }

  #enter(leaf: ForwardLeaf, lo: Bound<unknown> | undefined): void {
    this.#leaf = leaf
    const keys = leaf._keys
    const values = leaf._values
    const hi = this.#hi
    const first = lo === undefined ? 0 : lowerIndex(keys, lo, this.#compare)
    const last = hi === undefined ? keys.length - 1 : upperIndex(keys, hi, this.#compare)
    this.#keys = keys
    this.#values = values
    this.#i = first
    this.#last = last
    // Values (or entries) of this leaf are about to be read: if they are ghosts, the connection
    // may load their records together when the first one loads (one storage query for the leaf
    // instead of one per object). Only a hint: the values are not looked at here.
    const jar = this.#jar
    if (jar !== null && values !== null && first < last && this.#yields !== KEYS) jar.preload!(values, first, last)
  }

  /** On to the next leaf of a tree, unless the range ends here. */
  #advance(): boolean {
    const leaf = this.#leaf
    if (!this.#follow || leaf === null) return false
    const hi = this.#hi
    if (hi !== undefined) {
      const keys = leaf._keys
      if (keys.length > 0 && !belowUpper(keys[keys.length - 1], hi, this.#compare)) return false
    }
    const next = leaf._next as ForwardLeaf | null | undefined
    if (next === null || next === undefined) return false
    this.#enter(next, undefined)
    return true
  }
}

/**
 * An iterator made once and never used: it keeps the hidden class of RangeIterator objects
 * alive between iterations. V8 holds hidden classes weakly and drops the optimized code that
 * names a dead one ("weak objects" in --trace-deopt): when no iterator was left after a read
 * and a collection, `next` and the loops that inline it were recompiled inside the next read.
 * The same holds for the loaded objects' hidden classes (zodb's persistent.ts keeps those).
 * W-OBJ on SQLite, runs 2 and 3 of a process, with the objects' keepers: hot read 7.8-13.9M
 * without this one, 16.0-19.1M with it.
 */
const iteratorKeeper: object = new RangeIterator(null as unknown as AnyBase, undefined, undefined, {}, VALUES)
void iteratorKeeper
