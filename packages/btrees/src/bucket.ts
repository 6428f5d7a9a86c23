// Buckets: the leaves of B-trees, usable on their own as small sorted mappings (Bucket) and
// sets (SetBucket). A bucket is one persistent object holding sorted keys, their values, and a
// link to the next bucket of its tree, so a range scan walks leaves without touching the
// internal nodes above them.

import { PersistentReference } from '@wendelin/zodb'

import { BucketMergeConflict, mergeBuckets } from './bucket-merge.js'
import type { Family } from './family.js'
import { type LeafNode, leafGet, leafPut, leafRange, leafRemove } from './leaf.js'
import { sameValue } from './same-value.js'
import { SortedMapping } from './sorted-mapping.js'
import { SortedSet } from './sorted-set.js'
import type { Structure } from './structure.js'

/** The stored state of a bucket. */
export interface BucketState<K, V> {
  _keys: K[]
  _values: V[] | null
  _next: unknown
}

/** Three-way merge of bucket states (see bucket-merge.ts); a changed `_next` link means a split. */
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
  checkOneKeyKind(family, merged.keys)
  return { _keys: merged.keys, _values: merged.values ?? null, _next: old._next }
}

/**
 * Each side checked its keys against the keys it saw, but two sides that started from an empty
 * leaf (or replaced all its keys) may each bring keys of another kind, which the object key order
 * sorts apart instead of refusing (Python 3 refuses to compare them, and BTrees then conflicts).
 */
export function checkOneKeyKind<K>(family: Family<K, unknown>, keys: readonly K[]): void {
  for (let i = 1; i < keys.length; i++) {
    if (!family.keys.sameClass(keys[0]!, keys[i]!)) throw new BucketMergeConflict('keys of different kinds', keys[i])
  }
}

export function sameLink(a: unknown, b: unknown): boolean {
  if (a === null || a === undefined) return b === null || b === undefined
  return a instanceof PersistentReference && b instanceof PersistentReference && a.oid === b.oid
}

type AnyLeaf = LeafNode<unknown, unknown> & { family: Family<unknown, unknown> }

/** Buckets and set buckets keep all their keys in their own record. */
export const leafStructure: Structure = {
  lookup: (c, key) => leafGet(c as AnyLeaf, key, (c as AnyLeaf).family.keys),
  range: (c, lo, hi, reverse) => leafRange(c as AnyLeaf, lo, hi, reverse, (c as AnyLeaf).family.keys.compare),
  forwardStart: (c) => ({ leaf: c as AnyLeaf, follow: false }),
  put: (c, key, value, onlyIfAbsent) => leafPut(c as AnyLeaf, key, value, onlyIfAbsent, (c as AnyLeaf).family.keys),
  remove: (c, key) => leafRemove(c as AnyLeaf, key, (c as AnyLeaf).family.keys),
  clear(c) {
    const leaf = c as AnyLeaf
    leaf._p_changed = true
    leaf._keys = []
    if (leaf._values !== null) leaf._values = []
  },
  count: (c) => (c as AnyLeaf)._keys.length,
  resolve: (family, old, committed, mine) =>
    resolveBucketConflict(family, old as BucketState<unknown, unknown> | null, committed as unknown as BucketState<unknown, unknown>, mine as unknown as BucketState<unknown, unknown>) as unknown as Record<string, unknown>,
}

/** A bucket: a sorted mapping in one persistent object. */
export class Bucket<K, V> extends SortedMapping<K, V> {
  /** @internal sorted keys */ _keys: K[] = []
  /** @internal values, parallel to _keys */ _values: V[] | null = []
  /** @internal the next bucket of the tree this bucket belongs to (null for the last, or a free bucket) */
  _next: Bucket<K, V> | null = null

  /** @internal */ get _structure(): Structure {
    return leafStructure
  }
}

/** A set bucket: a sorted set in one persistent object. */
export class SetBucket<K> extends SortedSet<K> {
  /** @internal sorted keys */ _keys: K[] = []
  /** @internal sets have no values */ _values: null = null
  /** @internal */ _next: SetBucket<K> | null = null

  /** @internal */ get _structure(): Structure {
    return leafStructure
  }
}
