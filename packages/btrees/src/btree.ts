// BTree (a sorted mapping) and TreeSet (a sorted set) of any size: one persistent object per
// bucket and per internal node, so a tree of millions of keys loads only the path it walks.
// The algorithms are in tree-node.ts; this file gives them a face.

import { BucketMergeConflict, mergeBuckets } from './bucket-merge.js'
import { checkOneKeyKind, sameLink } from './bucket.js'
import type { Family } from './family.js'
import { Length } from './length.js'
import { sameValue } from './same-value.js'
import { type EntriesSource, SortedMapping } from './sorted-mapping.js'
import { SortedSet } from './sorted-set.js'
import type { Structure } from './structure.js'
import { type Leaf, type TreeNode, type TreeShape, treeClear, treeCount, treeForwardStart, treeGet, treePut, treeRange, treeRemove } from './tree-node.js'

export interface TreeOptions {
  /**
   * Keep the number of keys in a Length object beside the tree, so `size` costs one load
   * instead of a walk over every bucket. Concurrent inserts still merge (Length adds deltas).
   */
  trackLength?: boolean
}

/** The static side of tree classes. */
interface TreeClass {
  new (): TreeNode<unknown, unknown>
  readonly family: Family<unknown, unknown>
  readonly leafClass: new () => object
  readonly hasValues: boolean
}

/** A tree object as the structure sees it. */
type AnyTree = TreeNode<unknown, unknown> & { _length: Length | null }

/** The stored state of a tree node. */
interface TreeState {
  _keys: unknown[] | null
  _values: unknown[] | null
  _children: unknown[] | null
  _separators: unknown[] | null
  _length: unknown
}

// One shape per class: what the algorithms need (family, leaf and node constructors).
const shapes = new WeakMap<TreeClass, TreeShape<unknown, unknown>>()

function shapeOf(tree: object): TreeShape<unknown, unknown> {
  const cls = tree.constructor as TreeClass
  let shape = shapes.get(cls)
  if (shape === undefined) {
    shape = {
      family: cls.family,
      hasValues: cls.hasValues,
      isNode: (obj: unknown): obj is TreeNode<unknown, unknown> => obj instanceof cls,
      newLeaf: () => new cls.leafClass() as Leaf<unknown, unknown>,
      newNode: () => new cls(),
    }
    shapes.set(cls, shape)
  }
  return shape
}

/**
 * Conflicts on a tree node resolve only while the tree is small (its bucket inline in all three
 * states): then it is a bucket merge. Changes to internal nodes conflict.
 */
function resolveTreeConflict(family: Family<unknown, unknown>, old: TreeState | null, committed: TreeState, mine: TreeState): TreeState {
  if (old === null || old._children !== null || committed._children !== null || mine._children !== null) {
    throw new BucketMergeConflict('internal node changed')
  }
  if (!sameLink(old._length, committed._length) || !sameLink(old._length, mine._length)) {
    throw new BucketMergeConflict('internal node changed')
  }
  const asContents = (s: TreeState) => (s._values === null ? { keys: s._keys! } : { keys: s._keys!, values: s._values })
  const merged = mergeBuckets(asContents(old), asContents(committed), asContents(mine), family.keys.compare, sameValue)
  checkOneKeyKind(family, merged.keys)
  return { ...mine, _keys: merged.keys, _values: merged.values ?? null, _children: null, _separators: null }
}

/** Trees keep their keys in buckets under internal nodes (or inline while small). */
export const treeStructure: Structure = {
  lookup: (c, key) => treeGet(shapeOf(c), c as AnyTree, key),
  range: (c, lo, hi, reverse) => treeRange(shapeOf(c), c as AnyTree, lo, hi, reverse),
  forwardStart: (c, lo) => treeForwardStart(shapeOf(c), c as AnyTree, lo),
  put(c, key, value, onlyIfAbsent) {
    const r = treePut(shapeOf(c), c as AnyTree, key, value, onlyIfAbsent)
    if (r.inserted) (c as AnyTree)._length?.change(1)
    return r
  },
  remove(c, key) {
    const r = treeRemove(shapeOf(c), c as AnyTree, key)
    if (r.found) (c as AnyTree)._length?.change(-1)
    return r
  },
  clear(c) {
    const tree = c as AnyTree
    treeClear(shapeOf(tree), tree)
    // A fresh Length, not set(0): an insert committed meanwhile into a bucket this clear drops
    // would otherwise merge its +1 into the zero (Length adds deltas), counting a lost key.
    if (tree._length !== null) tree._length = new Length()
  },
  count: (c) => (c as AnyTree)._length?.value ?? treeCount(shapeOf(c), c as AnyTree),
  resolve: (family, old, committed, mine) =>
    resolveTreeConflict(family, old as unknown as TreeState | null, committed as unknown as TreeState, mine as unknown as TreeState) as unknown as Record<string, unknown>,
}

/** A sorted mapping of any size. */
export class BTree<K, V> extends SortedMapping<K, V> {
  static readonly hasValues: boolean = true
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

  /** @internal */ get _structure(): Structure {
    return treeStructure
  }
}

/** A sorted set of any size. */
export class TreeSet<K> extends SortedSet<K> {
  static readonly hasValues: boolean = false
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

  /** @internal */ get _structure(): Structure {
    return treeStructure
  }
}
