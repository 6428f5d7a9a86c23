// The set API shared by set buckets and tree sets: Set-like, sorted, with ranges.

import { SortedBase } from './sorted-base.js'

export abstract class SortedSet<K> extends SortedBase<K, undefined> {
  /** Add `key`; returns whether it was new. */
  add(key: K): boolean {
    const r = this._put(this._key(key), undefined, true)
    if (r.inserted) this._touch()
    return r.inserted
  }

  /** Remove `key`; returns whether it was there. */
  delete(key: K): boolean {
    const r = this._remove(this._key(key))
    if (r.found) this._touch()
    return r.found
  }

  /** Add every key of `source`. */
  update(source: Iterable<K>): this {
    for (const k of source) this.add(k)
    return this
  }

  [Symbol.iterator](): Generator<K, void, undefined> {
    return this.keys()
  }
}
