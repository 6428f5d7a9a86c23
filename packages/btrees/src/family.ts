// A family fixes what a group of collection classes stores: the kind of its keys, the kind of
// its values, and the node sizes. Families are named as ZODB users know them: the first letter
// is the key kind (O object, I int, L 64-bit long), the second the value kind (O object,
// I int, F float, L long). Each family has a BTree, a Bucket, a TreeSet and a Set class.

import type { KeyKind } from './key-kind.js'
import type { ValueKind } from './value-kind.js'

export interface Family<K, V> {
  /** 'OO', 'IO', 'LL', ... */
  readonly prefix: string
  readonly keys: KeyKind<K>
  readonly values: ValueKind<V>
  /** Most keys a bucket holds before it splits. */
  readonly maxBucketSize: number
  /** Most children an internal node holds before it splits. */
  readonly maxTreeSize: number
}

/** The static side every collection class carries: which family it belongs to. */
export interface FamilyMember {
  readonly family: Family<unknown, unknown>
}

/** Constructors of a family's node classes, as the tree algorithms need them. */
export interface NodeClasses {
  /** A fresh, empty leaf of the collection's kind (a Bucket for maps, a Set for sets). */
  newLeaf(): object
  /** A fresh, empty internal node (same class as the tree). */
  newNode(): object
}
