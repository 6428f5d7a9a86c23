// What every collection (bucket, set, B-tree, tree set) offers to readers, written once over a
// few structural primitives that leaves and trees implement differently.

import { Persistent } from '@wendelin/zodb'

import type { Family, FamilyMember } from './family.js'
import type { Bound, Lookup, PutResult } from './leaf.js'
import type { Structure } from './structure.js'

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
// collection changed under it. Not stored, not a change: a plain side table.
const versions = new WeakMap<object, number>()

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
    versions.set(this, (versions.get(this) ?? 0) + 1)
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
  *keys(min?: K, max?: K, options: RangeOptions = {}): Generator<K, void, undefined> {
    for (const [k] of this._entriesIn(min, max, options)) yield k
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
