// Set operations on collections of one family, with ZODB's BTrees semantics: results are new
// (unsaved) Set or Bucket objects of the family; a null input is an empty operand as BTrees
// treats None (union(null, b) is b, difference(a, null) is a, ...).

import { Bucket, SetBucket } from './bucket.js'
import type { Family } from './family.js'
import { SortedBase } from './sorted-base.js'
import { SortedMapping } from './sorted-mapping.js'
import * as merge from './set-operations.js'

type Collection<K> = SortedBase<K, unknown>
type KeySource<K> = Collection<K> | Iterable<K>

export interface FamilyOperations<K, V> {
  /** Keys in `a` or `b`, as a Set. */
  union(a: KeySource<K> | null, b: KeySource<K> | null): SetBucket<K> | KeySource<K> | null
  /** Keys in both, as a Set. */
  intersection(a: KeySource<K> | null, b: KeySource<K> | null): SetBucket<K> | KeySource<K> | null
  /** Entries (of a mapping) or keys (of a set) of `a` whose key is not in `b`. */
  difference(a: Collection<K> | null, b: KeySource<K> | null): Bucket<K, V> | SetBucket<K> | Collection<K> | null
}

export interface WeightedOperations<K, V> {
  /** [weight, result]: values add up as v1*w1 + v2*w2 (set members count as 1). */
  weightedUnion(a: Collection<K> | null, b: Collection<K> | null, w1?: V, w2?: V): [V, Bucket<K, V> | SetBucket<K> | Collection<K> | null]
  weightedIntersection(a: Collection<K> | null, b: Collection<K> | null, w1?: V, w2?: V): [V, Bucket<K, V> | SetBucket<K> | Collection<K> | null]
}

export interface IntegerKeyOperations<K> {
  /** Union of many integer sets (or single integers), as one Set. */
  multiunion(inputs: Iterable<K | KeySource<K>>): SetBucket<K>
}

export function makeOperations<K, V>(
  family: Family<K, V>,
  newSet: () => SetBucket<K>,
  newBucket: () => Bucket<K, V>,
): FamilyOperations<K, V> & Partial<WeightedOperations<K, V>> & Partial<IntegerKeyOperations<K>> {
  const compare = family.keys.compare

  /** Sorted, unique keys of a source: our collections iterate in order; anything else is sorted. */
  function keysOf(source: KeySource<K>): Iterable<K> {
    if (source instanceof SortedBase && source.family.keys === family.keys) return source.keys()
    if (source instanceof SortedBase) {
      throw new TypeError(`cannot combine a ${source.constructor.name} (${source.family.prefix} family) with ${family.prefix} collections`)
    }
    const keys = [...source].map((k) => family.keys.check(k)).sort(compare)
    return keys.filter((k, i) => i === 0 || compare(keys[i - 1]!, k) !== 0)
  }

  function input(c: Collection<K>): merge.SortedInput<K, V> {
    if (c.family.keys !== family.keys) throw new TypeError(`cannot combine a ${c.constructor.name} with ${family.prefix} collections`)
    return c instanceof SortedMapping ? { entries: (c as SortedMapping<K, V>).entries() } : { keys: c.keys() }
  }

  function toSet(keys: K[]): SetBucket<K> {
    const s = newSet()
    s._keys = keys
    return s
  }

  function toResult(keys: K[], values: V[] | undefined): Bucket<K, V> | SetBucket<K> {
    if (values === undefined) return toSet(keys)
    const b = newBucket()
    b._keys = keys
    b._values = values
    return b
  }

  const ops: FamilyOperations<K, V> & Partial<WeightedOperations<K, V>> & Partial<IntegerKeyOperations<K>> = {
    union(a, b) {
      if (a === null) return b
      if (b === null) return a
      return toSet(merge.union(keysOf(a), keysOf(b), compare))
    },
    intersection(a, b) {
      if (a === null) return b
      if (b === null) return a
      return toSet(merge.intersection(keysOf(a), keysOf(b), compare))
    },
    difference(a, b) {
      if (a === null || b === null) return a
      const r = merge.difference(input(a), keysOf(b), compare)
      return toResult(r.keys, r.values)
    },
  }

  const arith = family.values.arithmetic
  if (arith !== undefined) {
    // Weights are values of the family (as in BTrees, whose weight arguments parse as the value
    // type): a number weight of a 64-bit family becomes a bigint, a float weight of an integer
    // family is refused.
    const weight = (w: V) => family.values.check(w)
    ops.weightedUnion = (a, b, w1 = arith.one, w2 = arith.one) => {
      w1 = weight(w1)
      w2 = weight(w2)
      if (a === null) return b === null ? [arith.zero, null] : [w2, b]
      if (b === null) return [w1, a]
      const r = merge.weightedUnion(input(a), input(b), w1, w2, compare, arith)
      return [r.weight, toResult(r.keys, r.values)]
    }
    ops.weightedIntersection = (a, b, w1 = arith.one, w2 = arith.one) => {
      w1 = weight(w1)
      w2 = weight(w2)
      if (a === null) return b === null ? [arith.zero, null] : [w2, b]
      if (b === null) return [w1, a]
      const r = merge.weightedIntersection(input(a), input(b), w1, w2, compare, arith)
      return [r.weight, toResult(r.keys, r.values)]
    }
  }

  if (family.keys.name === 'int' || family.keys.name === 'long') {
    ops.multiunion = (inputs) => {
      const parts: Array<K | Iterable<K>> = []
      for (const x of inputs) {
        if (typeof x === 'number' || typeof x === 'bigint') parts.push(family.keys.check(x))
        else parts.push(keysOf(x as KeySource<K>))
      }
      return toSet(merge.multiunion(parts as Array<never>, compare as never) as K[])
    }
  }
  return ops
}
