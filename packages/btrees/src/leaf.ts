// Operations on one sorted leaf: a bucket, a set bucket, or a small tree whose single bucket is
// kept inline in the tree's own record. A leaf is `keys` (sorted, unique) with parallel `values`
// (null for sets). Every mutation marks the persistent object changed *before* touching its
// arrays, so a refused change (a read-only connection) leaves it as it was.

import type { Persistent } from '@wendelin/zodb'

import { BTreeKeyError, describeKey, type KeyKind } from './key-kind.js'

export interface LeafData<K, V> {
  _keys: K[]
  _values: V[] | null
}

export type LeafNode<K, V> = Persistent & LeafData<K, V>

/** A key bound of a range: the key and whether the bound itself is excluded. */
export interface Bound<K> {
  key: K
  exclusive: boolean
}

export interface Lookup<V> {
  found: boolean
  value: V | undefined
}

export interface PutResult<V> {
  /** The key was not there before. */
  inserted: boolean
  /** The value now under the key (the old one when `onlyIfAbsent` found it). */
  value: V | undefined
  /** The value replaced or kept, when the key was there. */
  previous: V | undefined
}

/** Binary search: the index of `key`, or `-(insertionPoint) - 1` when absent. */
export function search<K>(keys: readonly K[], key: K, compare: (a: K, b: K) => number): number {
  let lo = 0
  let hi = keys.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const c = compare(keys[mid]!, key)
    if (c < 0) lo = mid + 1
    else if (c > 0) hi = mid - 1
    else return mid
  }
  return -lo - 1
}

export function leafGet<K, V>(leaf: LeafData<K, V>, key: K, kind: KeyKind<K>): Lookup<V> {
  const i = search(leaf._keys, key, kind.compare)
  return i >= 0 ? { found: true, value: leaf._values?.[i] } : { found: false, value: undefined }
}

/** Refuse a key of another class than the keys already in the leaf (mixed kinds). */
export function checkSameClass<K>(keys: readonly K[], key: K, kind: KeyKind<K>): void {
  if (keys.length > 0 && !kind.sameClass(keys[0]!, key)) {
    throw new BTreeKeyError(
      `key ${describeKey(key)} cannot share a tree with keys like ${describeKey(keys[0])}: all keys of a tree must be of one kind`,
    )
  }
}

export function leafPut<K, V>(
  leaf: LeafNode<K, V>,
  key: K,
  value: V | undefined,
  onlyIfAbsent: boolean,
  kind: KeyKind<K>,
): PutResult<V> {
  const i = search(leaf._keys, key, kind.compare)
  if (i >= 0) {
    const previous = leaf._values?.[i]
    if (onlyIfAbsent || leaf._values === null || Object.is(previous, value)) {
      return { inserted: false, value: previous, previous }
    }
    leaf._p_changed = true
    leaf._values[i] = value as V
    return { inserted: false, value, previous }
  }
  checkSameClass(leaf._keys, key, kind)
  const at = -i - 1
  leaf._p_changed = true
  const keys = leaf._keys
  const values = leaf._values
  if (at === keys.length) {
    // Appending (keys inserted in order, as a populate does): a splice made an array for its
    // (empty) result each, keys and values.
    keys.push(key)
    values?.push(value as V)
  } else {
    keys.splice(at, 0, key)
    values?.splice(at, 0, value as V)
  }
  return { inserted: true, value, previous: undefined }
}

export function leafRemove<K, V>(leaf: LeafNode<K, V>, key: K, kind: KeyKind<K>): Lookup<V> {
  const i = search(leaf._keys, key, kind.compare)
  if (i < 0) return { found: false, value: undefined }
  const value = leaf._values?.[i]
  leaf._p_changed = true
  leaf._keys.splice(i, 1)
  leaf._values?.splice(i, 1)
  return { found: true, value }
}

/** Index of the first key inside the lower bound. */
export function lowerIndex<K>(keys: readonly K[], lo: Bound<K> | undefined, compare: (a: K, b: K) => number): number {
  if (lo === undefined) return 0
  const i = search(keys, lo.key, compare)
  return i >= 0 ? (lo.exclusive ? i + 1 : i) : -i - 1
}

/** Index of the last key inside the upper bound (-1 if none). */
export function upperIndex<K>(keys: readonly K[], hi: Bound<K> | undefined, compare: (a: K, b: K) => number): number {
  if (hi === undefined) return keys.length - 1
  const i = search(keys, hi.key, compare)
  return i >= 0 ? (hi.exclusive ? i - 1 : i) : -i - 2
}

/** Whether `key` is still at or below the upper bound. */
export function belowUpper<K>(key: K, hi: Bound<K> | undefined, compare: (a: K, b: K) => number): boolean {
  if (hi === undefined) return true
  const c = compare(key, hi.key)
  return hi.exclusive ? c < 0 : c <= 0
}

/** Entries of one leaf inside the bounds, in either direction. */
export function* leafRange<K, V>(
  leaf: LeafData<K, V>,
  lo: Bound<K> | undefined,
  hi: Bound<K> | undefined,
  reverse: boolean,
  compare: (a: K, b: K) => number,
): Generator<[K, V | undefined]> {
  const keys = leaf._keys
  const values = leaf._values
  const first = lowerIndex(keys, lo, compare)
  const last = upperIndex(keys, hi, compare)
  if (reverse) for (let i = last; i >= first; i--) yield [keys[i]!, values?.[i]]
  else for (let i = first; i <= last; i++) yield [keys[i]!, values?.[i]]
}

/** Move the upper half of `leaf` into `fresh` (an empty leaf of the same kind). */
export function splitLeafInto<K, V>(leaf: LeafNode<K, V>, fresh: LeafData<K, V>): void {
  const mid = leaf._keys.length >>> 1
  leaf._p_changed = true
  fresh._keys = leaf._keys.splice(mid)
  fresh._values = leaf._values === null ? null : leaf._values.splice(mid)
}
