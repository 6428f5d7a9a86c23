// PersistentMapping: a Map-like persistent object that tracks its own mutations. Its state is
// `{ data: Map }`; each mutating method marks the object changed before changing the map, so a
// refused change (historical connection) leaves it untouched.

import { registerClass } from './class-registry.js'
import { Persistent } from './persistent.js'

export class PersistentMapping<K = string, V = unknown> extends Persistent implements Iterable<[K, V]> {
  data: Map<K, V>

  constructor(entries?: Iterable<readonly [K, V]> | Record<string, V> | null) {
    super()
    if (entries === null || entries === undefined) this.data = new Map()
    else if (Symbol.iterator in Object(entries)) this.data = new Map(entries as Iterable<readonly [K, V]>)
    else this.data = new Map(Object.entries(entries) as unknown as [K, V][])
  }

  get size(): number {
    return this.data.size
  }
  get(key: K): V | undefined {
    return this.data.get(key)
  }
  has(key: K): boolean {
    return this.data.has(key)
  }
  set(key: K, value: V): this {
    this._p_changed = true
    this.data.set(key, value)
    return this
  }
  delete(key: K): boolean {
    if (!this.data.has(key)) return false
    this._p_changed = true
    return this.data.delete(key)
  }
  clear(): void {
    if (this.data.size === 0) return
    this._p_changed = true
    this.data.clear()
  }
  /** Set every entry of `entries`. */
  update(entries: Iterable<readonly [K, V]>): void {
    this._p_changed = true
    for (const [k, v] of entries) this.data.set(k, v)
  }
  /** The value for `key`, setting it to `value` first if there is none. */
  setDefault(key: K, value: V): V {
    if (this.data.has(key)) return this.data.get(key) as V
    this.set(key, value)
    return value
  }
  /** Remove and return the value for `key` (`fallback` if absent). */
  pop(key: K, fallback?: V): V | undefined {
    if (!this.data.has(key)) return fallback
    const v = this.data.get(key)
    this.delete(key)
    return v
  }
  keys(): IterableIterator<K> {
    return this.data.keys()
  }
  values(): IterableIterator<V> {
    return this.data.values()
  }
  entries(): IterableIterator<[K, V]> {
    return this.data.entries()
  }
  forEach(fn: (value: V, key: K, map: this) => void): void {
    for (const [k, v] of this.data) fn(v, k, this)
  }
  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.data.entries()
  }
}

registerClass('zodb.PersistentMapping', PersistentMapping)
