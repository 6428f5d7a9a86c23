// The mapping API shared by buckets and B-trees: Map-like, sorted, with ranges.

import type { RangeOptions } from './sorted-base.js'
import { ENTRIES, SortedBase, VALUES } from './sorted-base.js'

export type EntriesSource<K, V> = Iterable<readonly [K, V]> | { entries(): Iterable<readonly [K, V]> }

export abstract class SortedMapping<K, V> extends SortedBase<K, V> {
  /** The value under `key`, or `fallback` (undefined) when absent. */
  get(key: K): V | undefined
  get<D>(key: K, fallback: D): V | D
  get<D>(key: K, fallback?: D): V | D | undefined {
    const r = this._lookup(this._key(key))
    return r.found ? (r.value as V) : fallback
  }

  set(key: K, value: V): this {
    const checked = this.family.values.check(value) // may be normalized (a number to a bigint)
    const r = this._put(this._key(key), checked, false)
    if (r.inserted || !Object.is(r.previous, checked)) this._touch()
    return this
  }

  /** The value under `key`; when absent, store `fallback` there and return it. */
  setdefault(key: K, fallback: V): V {
    const r = this._put(this._key(key), this.family.values.check(fallback), true)
    if (r.inserted) this._touch()
    return r.value as V
  }

  /** Remove `key`; returns whether it was there. */
  delete(key: K): boolean {
    const r = this._remove(this._key(key))
    if (r.found) this._touch()
    return r.found
  }

  /** Remove `key` and return its value; `fallback` (undefined) when absent. */
  pop(key: K): V | undefined
  pop<D>(key: K, fallback: D): V | D
  pop<D>(key: K, fallback?: D): V | D | undefined {
    const r = this._remove(this._key(key))
    if (!r.found) return fallback
    this._touch()
    return r.value as V
  }

  /** Set every entry of `source` (pairs, a Map, or another mapping). */
  update(source: EntriesSource<K, V>): this {
    const pairs = Symbol.iterator in source ? source : source.entries()
    for (const [k, v] of pairs) this.set(k, v)
    return this
  }

  values(min?: K, max?: K, options: RangeOptions = {}): Generator<V, void, undefined> {
    return this._iterate(min, max, options, VALUES) as Generator<V, void, undefined>
  }

  entries(min?: K, max?: K, options: RangeOptions = {}): Generator<[K, V], void, undefined> {
    return this._iterate(min, max, options, ENTRIES) as Generator<[K, V], void, undefined>
  }

  [Symbol.iterator](): Generator<[K, V], void, undefined> {
    return this.entries()
  }

  forEach(fn: (value: V, key: K, mapping: this) => void): void {
    for (const [k, v] of this.entries()) fn(v, k, this)
  }
}
