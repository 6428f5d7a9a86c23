// BTree (a sorted mapping) and TreeSet (a sorted set) of any size: one persistent object per
// bucket and per internal node, so a tree of millions of keys loads only the path it walks.
// The algorithms are in tree-node.ts; this file gives them a face.

import { PersistentReference } from '@wendelin/zodb'

import { BucketMergeConflict, mergeBuckets } from './bucket-merge.js'
import type { Family } from './family.js'
import type { Bound, Lookup, PutResult } from './leaf.js'
import { Length } from './length.js'
import { sameValue } from './same-value.js'
import { type EntriesSource, SortedMapping } from './sorted-mapping.js'
import { SortedSet } from './sorted-set.js'
import { type Leaf, type TreeNode, type TreeShape, treeClear, treeCount, treeGet, treePut, treeRange, treeRemove } from './tree-node.js'

export interface TreeOptions {
  /**
   * Keep the number of keys in a Length object beside the tree, so `size` costs one load
   * instead of a walk over every bucket. Concurrent inserts still merge (Length adds deltas).
   */
  trackLength?: boolean
}

/** The static side of tree classes: family and leaf class. */
interface TreeClass {
  readonly family: Family<unknown, unknown>
  readonly leafClass: new () => object
}

/** The stored state of a tree node. */
interface TreeState {
  _keys: unknown[] | null
  _values: unknown[] | null
  _children: unknown[] | null
  _separators: unknown[] | null
  _length: unknown
}

function sameRef(a: unknown, b: unknown): boolean {
  if (a === null || a === undefined) return b === null || b === undefined
  return a instanceof PersistentReference && b instanceof PersistentReference && a.oid === b.oid
}

/**
 * Conflicts on a tree node resolve only while the tree is small (its bucket inline in all three
 * states): then it is a bucket merge. Changes to internal nodes conflict.
 */
function resolveTreeConflict(family: Family<unknown, unknown>, old: TreeState | null, committed: TreeState, mine: TreeState): TreeState {
  if (old === null || old._children !== null || committed._children !== null || mine._children !== null) {
    throw new BucketMergeConflict('internal node changed')
  }
  if (!sameRef(old._length, committed._length) || !sameRef(old._length, mine._length)) {
    throw new BucketMergeConflict('internal node changed')
  }
  const asContents = (s: TreeState) => (s._values === null ? { keys: s._keys! } : { keys: s._keys!, values: s._values })
  const merged = mergeBuckets(asContents(old), asContents(committed), asContents(mine), family.keys.compare, sameValue)
  return { ...mine, _keys: merged.keys, _values: merged.values ?? null, _children: null, _separators: null }
}

/** A sorted mapping of any size. */
export class BTree<K, V> extends SortedMapping<K, V> implements TreeShape<K, V> {
  /** @internal */ _keys: K[] | null = []
  /** @internal */ _values: V[] | null = []
  /** @internal */ _children: Array<TreeNode<K, V> | Leaf<K, V>> | null = null
  /** @internal */ _separators: K[] | null = null
  /** @internal */ _length: Length | null = null

  constructor(source?: EntriesSource<K, V>, options: TreeOptions = {}) {
    super()
    if (options.trackLength) this._length = new Length()
    if (source !== undefined) this.update(source)
  }

  get hasValues(): boolean {
    return true
  }
  /** @internal */ isNode(obj: unknown): obj is TreeNode<K, V> {
    return obj instanceof BTree
  }
  /** @internal */ newLeaf(): Leaf<K, V> {
    return new (this.constructor as unknown as TreeClass).leafClass() as Leaf<K, V>
  }
  /** @internal */ newNode(): TreeNode<K, V> {
    return new (this.constructor as new () => TreeNode<K, V>)()
  }

  /** @internal */ _lookup(key: K): Lookup<V> {
    return treeGet(this, this, key)
  }
  /** @internal */ _range(lo: Bound<K> | undefined, hi: Bound<K> | undefined, reverse: boolean) {
    return treeRange(this, this, lo, hi, reverse)
  }
  /** @internal */ _put(key: K, value: V | undefined, onlyIfAbsent: boolean): PutResult<V> {
    const r = treePut(this, this, key, value, onlyIfAbsent)
    if (r.inserted) this._length?.change(1)
    return r
  }
  /** @internal */ _remove(key: K): Lookup<V> {
    const r = treeRemove(this, this, key)
    if (r.found) this._length?.change(-1)
    return r
  }
  /** @internal */ _clear(): void {
    treeClear(this, this)
    this._length?.set(0)
  }
  /** @internal */ _count(): number {
    return treeCount(this, this)
  }

  override get size(): number {
    return this._length !== null ? this._length.value : this._count()
  }

  override _p_resolveConflict(old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>) {
    return resolveTreeConflict(this.family as Family<unknown, unknown>, old as unknown as TreeState | null, committed as unknown as TreeState, mine as unknown as TreeState) as unknown as Record<string, unknown>
  }
}

/** A sorted set of any size. */
export class TreeSet<K> extends SortedSet<K> implements TreeShape<K, undefined> {
  /** @internal */ _keys: K[] | null = []
  /** @internal */ _values: null = null
  /** @internal */ _children: Array<TreeNode<K, undefined> | Leaf<K, undefined>> | null = null
  /** @internal */ _separators: K[] | null = null
  /** @internal */ _length: Length | null = null

  constructor(source?: Iterable<K>, options: TreeOptions = {}) {
    super()
    if (options.trackLength) this._length = new Length()
    if (source !== undefined) this.update(source)
  }

  get hasValues(): boolean {
    return false
  }
  /** @internal */ isNode(obj: unknown): obj is TreeNode<K, undefined> {
    return obj instanceof TreeSet
  }
  /** @internal */ newLeaf(): Leaf<K, undefined> {
    return new (this.constructor as unknown as TreeClass).leafClass() as Leaf<K, undefined>
  }
  /** @internal */ newNode(): TreeNode<K, undefined> {
    return new (this.constructor as new () => TreeNode<K, undefined>)()
  }

  /** @internal */ _lookup(key: K): Lookup<undefined> {
    return treeGet(this, this, key)
  }
  /** @internal */ _range(lo: Bound<K> | undefined, hi: Bound<K> | undefined, reverse: boolean) {
    return treeRange(this, this, lo, hi, reverse)
  }
  /** @internal */ _put(key: K, _value: undefined, onlyIfAbsent: boolean): PutResult<undefined> {
    const r = treePut(this, this, key, undefined, onlyIfAbsent)
    if (r.inserted) this._length?.change(1)
    return r
  }
  /** @internal */ _remove(key: K): Lookup<undefined> {
    const r = treeRemove(this, this, key)
    if (r.found) this._length?.change(-1)
    return r
  }
  /** @internal */ _clear(): void {
    treeClear(this, this)
    this._length?.set(0)
  }
  /** @internal */ _count(): number {
    return treeCount(this, this)
  }

  override get size(): number {
    return this._length !== null ? this._length.value : this._count()
  }

  override _p_resolveConflict(old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>) {
    return resolveTreeConflict(this.family as Family<unknown, unknown>, old as unknown as TreeState | null, committed as unknown as TreeState, mine as unknown as TreeState) as unknown as Record<string, unknown>
  }
}
