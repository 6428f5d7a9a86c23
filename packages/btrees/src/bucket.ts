// Buckets: the leaves of B-trees, usable on their own as small sorted mappings (Bucket) and
// sets (SetBucket). A bucket is one persistent object holding sorted keys, their values, and a
// link to the next bucket of its tree, so a range scan walks leaves without touching the
// internal nodes above them.

import { PersistentReference } from '@wendelin/zodb'

import { BucketMergeConflict, mergeBuckets } from './bucket-merge.js'
import { type Bound, type Lookup, type PutResult, leafGet, leafPut, leafRange, leafRemove } from './leaf.js'
import type { Family } from './family.js'
import { sameValue } from './same-value.js'
import { SortedMapping } from './sorted-mapping.js'
import { SortedSet } from './sorted-set.js'

/** The stored state of a bucket. */
export interface BucketState<K, V> {
  _keys: K[]
  _values: V[] | null
  _next: unknown
}

/** Three-way merge of bucket states (see bucket-merge.ts); a changed `next` link means a split. */
export function resolveBucketConflict<K, V>(
  family: Family<K, V>,
  old: BucketState<K, V> | null,
  committed: BucketState<K, V>,
  mine: BucketState<K, V>,
): BucketState<K, V> {
  if (old === null) throw new BucketMergeConflict('conflicting inserts') // both created it? cannot happen for one oid
  if (!sameLink(committed._next, old._next) || !sameLink(mine._next, old._next)) throw new BucketMergeConflict('bucket split')
  const asContents = (s: BucketState<K, V>) => (s._values === null ? { keys: s._keys } : { keys: s._keys, values: s._values })
  const merged = mergeBuckets(asContents(old), asContents(committed), asContents(mine), family.keys.compare, sameValue)
  return { _keys: merged.keys, _values: merged.values ?? null, _next: old._next }
}

function sameLink(a: unknown, b: unknown): boolean {
  if (a === null || a === undefined) return b === null || b === undefined
  return a instanceof PersistentReference && b instanceof PersistentReference && a.oid === b.oid
}

/** A bucket: a sorted mapping in one persistent object. */
export class Bucket<K, V> extends SortedMapping<K, V> {
  /** @internal sorted keys */ _keys: K[] = []
  /** @internal values, parallel to _keys */ _values: V[] | null = []
  /** @internal the next bucket of the tree this bucket belongs to (null for the last, or a free bucket) */
  _next: Bucket<K, V> | null = null

  /** @internal */ _lookup(key: K): Lookup<V> {
    return leafGet(this, key, this.family.keys)
  }
  /** @internal */ _range(lo: Bound<K> | undefined, hi: Bound<K> | undefined, reverse: boolean) {
    return leafRange(this, lo, hi, reverse, this.family.keys.compare)
  }
  /** @internal */ _put(key: K, value: V | undefined, onlyIfAbsent: boolean): PutResult<V> {
    return leafPut(this, key, value, onlyIfAbsent, this.family.keys)
  }
  /** @internal */ _remove(key: K): Lookup<V> {
    return leafRemove(this, key, this.family.keys)
  }
  /** @internal */ _clear(): void {
    this._p_changed = true
    this._keys = []
    this._values = []
  }
  /** @internal */ _count(): number {
    return this._keys.length
  }

  override _p_resolveConflict(old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>) {
    return resolveBucketConflict(this.family, old as BucketState<K, V> | null, committed as unknown as BucketState<K, V>, mine as unknown as BucketState<K, V>) as unknown as Record<string, unknown>
  }
}

/** A set bucket: a sorted set in one persistent object. */
export class SetBucket<K> extends SortedSet<K> {
  /** @internal sorted keys */ _keys: K[] = []
  /** @internal sets have no values */ _values: null = null
  /** @internal */ _next: SetBucket<K> | null = null

  /** @internal */ _lookup(key: K): Lookup<undefined> {
    return leafGet(this, key, this.family.keys)
  }
  /** @internal */ _range(lo: Bound<K> | undefined, hi: Bound<K> | undefined, reverse: boolean) {
    return leafRange<K, undefined>(this, lo, hi, reverse, this.family.keys.compare)
  }
  /** @internal */ _put(key: K, _value: undefined, onlyIfAbsent: boolean): PutResult<undefined> {
    return leafPut(this, key, undefined, onlyIfAbsent, this.family.keys)
  }
  /** @internal */ _remove(key: K): Lookup<never> {
    return leafRemove(this, key, this.family.keys)
  }
  /** @internal */ _clear(): void {
    this._p_changed = true
    this._keys = []
  }
  /** @internal */ _count(): number {
    return this._keys.length
  }

  override _p_resolveConflict(old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>) {
    return resolveBucketConflict(this.family, old as BucketState<K, undefined> | null, committed as unknown as BucketState<K, undefined>, mine as unknown as BucketState<K, undefined>) as unknown as Record<string, unknown>
  }
}
