// The B-tree algorithms, shared by BTree (mapping) and TreeSet.
//
// A tree node is one persistent object in one of two shapes:
//
//   inline    _keys/_values hold a single bucket's contents in the node's own record (a small
//             tree costs one object); _children = _separators = null.
//   internal  _children holds n child nodes (all internal nodes, or all buckets), _separators
//             the n-1 keys between them: child i holds the keys k with
//             _separators[i-1] <= k < _separators[i]; _keys = _values = null.
//
// Buckets are chained by their `_next` link in key order. Inserting splits a bucket that grows
// past the family's bucket size, and a node past its tree size (the root splits by moving its
// contents down, so the tree object keeps its identity). Deleting the last key of a bucket
// unlinks the bucket, and a node left without children is unlinked in turn; buckets are not
// rebalanced otherwise (as in ZODB's BTrees). While writing, every internal node on the path is
// registered as read-current with its connection: a concurrent split of that node then makes
// this commit fail with a conflict instead of losing a key in a bucket that moved away.

import type { Persistent } from '@wendelin/zodb'

import {
  type Bound,
  type LeafData,
  type LeafNode,
  type Lookup,
  type PutResult,
  belowUpper,
  leafGet,
  leafPut,
  leafRange,
  leafRemove,
  search,
  splitLeafInto,
} from './leaf.js'
import type { Family } from './family.js'

export interface TreeData<K, V> {
  _keys: K[] | null
  _values: V[] | null
  _children: Array<TreeNode<K, V> | Leaf<K, V>> | null
  _separators: K[] | null
}

export type TreeNode<K, V> = Persistent & TreeData<K, V>
export type Leaf<K, V> = LeafNode<K, V> & { _next: Leaf<K, V> | null }

/** What the algorithms need from the tree class. */
export interface TreeShape<K, V> {
  readonly family: Family<K, V>
  /** Whether entries carry values (a BTree) or not (a TreeSet). */
  readonly hasValues: boolean
  isNode(obj: unknown): obj is TreeNode<K, V>
  newLeaf(): Leaf<K, V>
  newNode(): TreeNode<K, V>
}

function isInline<K, V>(node: TreeData<K, V>): node is TreeData<K, V> & LeafData<K, V> {
  return node._children === null
}

/** Index of the child of `node` whose range holds `key`. */
function childIndex<K>(separators: readonly K[], key: K, compare: (a: K, b: K) => number): number {
  const i = search(separators, key, compare)
  return i >= 0 ? i + 1 : -i - 1
}

type Path<K, V> = Array<{ node: TreeNode<K, V>; index: number }>

function markReadCurrent(node: Persistent): void {
  const jar = node._p_jar as { readCurrent?(obj: Persistent): void } | null
  jar?.readCurrent?.(node)
}

/**
 * The leaf for `key` under `root` (an internal node); `writing` registers every internal node on
 * the way as read-current. No path is recorded: most inserts and removals change the leaf only,
 * and recording it cost a path array and an entry object per level on every insert (~280 of
 * ~2,500 bytes a W-OBJ populate allocated per object); the rare structural change descends again
 * with `descend`.
 */
function findLeaf<K, V>(shape: TreeShape<K, V>, root: TreeNode<K, V>, key: K, writing: boolean): Leaf<K, V> {
  const compare = shape.family.keys.compare
  let node: TreeNode<K, V> | Leaf<K, V> = root
  while (shape.isNode(node)) {
    if (writing) markReadCurrent(node)
    node = node._children![childIndex(node._separators!, key, compare)]!
  }
  return node
}

/** Descend from `root` to the leaf for `key`, recording the path of internal nodes. */
function descend<K, V>(shape: TreeShape<K, V>, root: TreeNode<K, V>, key: K, writing: boolean): { leaf: Leaf<K, V>; path: Path<K, V> } {
  const compare = shape.family.keys.compare
  const path: Path<K, V> = []
  let node: TreeNode<K, V> | Leaf<K, V> = root
  while (shape.isNode(node)) {
    if (writing) markReadCurrent(node)
    const index: number = childIndex(node._separators!, key, compare)
    path.push({ node, index })
    node = node._children![index]!
  }
  return { leaf: node, path }
}

export function treeGet<K, V>(shape: TreeShape<K, V>, root: TreeNode<K, V>, key: K): Lookup<V> {
  if (isInline(root)) return leafGet(root, key, shape.family.keys)
  return leafGet(findLeaf(shape, root, key, false), key, shape.family.keys)
}

export function treePut<K, V>(
  shape: TreeShape<K, V>,
  root: TreeNode<K, V>,
  key: K,
  value: V | undefined,
  onlyIfAbsent: boolean,
): PutResult<V> {
  const { maxBucketSize } = shape.family
  if (isInline(root)) {
    const r = leafPut(root as TreeNode<K, V> & LeafData<K, V>, key, value, onlyIfAbsent, shape.family.keys)
    if (r.inserted && root._keys.length > maxBucketSize) splitInlineRoot(shape, root)
    return r
  }
  const leaf = findLeaf(shape, root, key, true)
  const r = leafPut(leaf, key, value, onlyIfAbsent, shape.family.keys)
  if (r.inserted && leaf._keys.length > maxBucketSize) {
    // The same descent (only the leaf changed), this time with its path; registered already.
    const { path } = descend(shape, root, key, false)
    const fresh = shape.newLeaf()
    splitLeafInto(leaf, fresh)
    fresh._next = leaf._next
    leaf._next = fresh
    insertChild(shape, path, fresh, fresh._keys[0]!)
  }
  return r
}

/** The inline bucket outgrew the root: move it into two buckets under the root. */
function splitInlineRoot<K, V>(shape: TreeShape<K, V>, root: TreeNode<K, V>): void {
  const first = shape.newLeaf()
  first._keys = root._keys!
  first._values = root._values
  const second = shape.newLeaf()
  splitLeafInto(first, second)
  first._next = second
  root._p_changed = true
  root._keys = null
  root._values = null
  root._children = [first, second]
  root._separators = [second._keys[0]!]
}

/** Insert `child` right after path's last position, splitting nodes that grow too big. */
function insertChild<K, V>(shape: TreeShape<K, V>, path: Path<K, V>, child: TreeNode<K, V> | Leaf<K, V>, separator: K): void {
  const { node, index } = path.pop()!
  node._p_changed = true
  node._children!.splice(index + 1, 0, child)
  node._separators!.splice(index, 0, separator)
  if (node._children!.length <= shape.family.maxTreeSize) return
  if (path.length === 0) {
    // The root keeps its identity: its contents move into a child, which then splits.
    const lower = shape.newNode()
    lower._keys = null
    lower._values = null
    lower._children = node._children
    lower._separators = node._separators
    const { upper, separator: up } = splitNode(shape, lower)
    node._children = [lower, upper]
    node._separators = [up]
  } else {
    const { upper, separator: up } = splitNode(shape, node)
    insertChild(shape, path, upper, up)
  }
}

function splitNode<K, V>(shape: TreeShape<K, V>, node: TreeNode<K, V>): { upper: TreeNode<K, V>; separator: K } {
  const mid = node._children!.length >>> 1
  node._p_changed = true
  const upper = shape.newNode()
  upper._keys = null
  upper._values = null
  upper._children = node._children!.splice(mid)
  upper._separators = node._separators!.splice(mid)
  const separator = node._separators!.pop()!
  return { upper, separator }
}

export function treeRemove<K, V>(shape: TreeShape<K, V>, root: TreeNode<K, V>, key: K): Lookup<V> {
  if (isInline(root)) return leafRemove(root as TreeNode<K, V> & LeafData<K, V>, key, shape.family.keys)
  const leaf = findLeaf(shape, root, key, true)
  const r = leafRemove(leaf, key, shape.family.keys)
  if (r.found && leaf._keys.length === 0) {
    // The same descent (only the leaf changed), this time with its path; registered already.
    const { path } = descend(shape, root, key, false)
    const previous = previousLeaf(shape, path)
    if (previous !== null) previous._next = leaf._next
    removeChild(shape, root, path)
  }
  return r
}

/** The leaf before the one `path` leads to, or null for the first leaf of the tree. */
function previousLeaf<K, V>(shape: TreeShape<K, V>, path: Path<K, V>): Leaf<K, V> | null {
  for (let level = path.length - 1; level >= 0; level--) {
    const { node, index }: { node: TreeNode<K, V>; index: number } = path[level]!
    if (index > 0) {
      let n: TreeNode<K, V> | Leaf<K, V> = node._children![index - 1]!
      while (shape.isNode(n)) n = n._children![n._children!.length - 1]!
      return n
    }
  }
  return null
}

/** Remove the child at path's last position; a node left empty goes too; an empty root becomes inline. */
function removeChild<K, V>(shape: TreeShape<K, V>, root: TreeNode<K, V>, path: Path<K, V>): void {
  const { node, index } = path.pop()!
  node._p_changed = true
  node._children!.splice(index, 1)
  if (node._separators!.length > 0) node._separators!.splice(index > 0 ? index - 1 : 0, 1)
  if (node._children!.length > 0) return
  if (path.length > 0) {
    removeChild(shape, root, path)
    return
  }
  root._children = null
  root._separators = null
  root._keys = []
  root._values = shape.hasValues ? [] : null
}

export function treeClear<K, V>(shape: TreeShape<K, V>, root: TreeNode<K, V>): void {
  root._p_changed = true
  root._children = null
  root._separators = null
  root._keys = []
  root._values = shape.hasValues ? [] : null
}

/** Entries inside the bounds, lazily: forward along the bucket chain, backward by descent. */
export function* treeRange<K, V>(
  shape: TreeShape<K, V>,
  root: TreeNode<K, V>,
  lo: Bound<K> | undefined,
  hi: Bound<K> | undefined,
  reverse: boolean,
): Generator<[K, V | undefined]> {
  const compare = shape.family.keys.compare
  if (isInline(root)) {
    yield* leafRange(root, lo, hi, reverse, compare)
    return
  }
  if (reverse) {
    yield* reverseRange(shape, root, lo, hi)
    return
  }
  let leaf: Leaf<K, V> | null = lo === undefined ? firstLeaf(shape, root) : findLeaf(shape, root, lo.key, false)
  let lower = lo
  while (leaf !== null) {
    for (const entry of leafRange(leaf, lower, hi, false, compare)) yield entry
    const keys = leaf._keys
    if (keys.length > 0 && !belowUpper(keys[keys.length - 1]!, hi, compare)) return
    lower = undefined
    leaf = leaf._next
  }
}

/** Where treeRange starts going forward: the leaf, and whether to follow `_next` links from it. */
export function treeForwardStart<K, V>(
  shape: TreeShape<K, V>,
  root: TreeNode<K, V>,
  lo: Bound<K> | undefined,
): { leaf: LeafData<K, V> | Leaf<K, V>; follow: boolean } {
  if (isInline(root)) return { leaf: root, follow: false }
  return { leaf: lo === undefined ? firstLeaf(shape, root) : findLeaf(shape, root, lo.key, false), follow: true }
}

function firstLeaf<K, V>(shape: TreeShape<K, V>, root: TreeNode<K, V>): Leaf<K, V> {
  let n: TreeNode<K, V> | Leaf<K, V> = root
  while (shape.isNode(n)) n = n._children![0]!
  return n
}

function* reverseRange<K, V>(
  shape: TreeShape<K, V>,
  node: TreeNode<K, V> | Leaf<K, V>,
  lo: Bound<K> | undefined,
  hi: Bound<K> | undefined,
): Generator<[K, V | undefined]> {
  const compare = shape.family.keys.compare
  if (!shape.isNode(node)) {
    yield* leafRange(node, lo, hi, true, compare)
    return
  }
  const seps = node._separators!
  const last = hi === undefined ? node._children!.length - 1 : childIndex(seps, hi.key, compare)
  const first = lo === undefined ? 0 : childIndex(seps, lo.key, compare)
  for (let i = last; i >= first; i--) yield* reverseRange(shape, node._children![i]!, lo, hi)
}

/** Number of keys, by walking the bucket chain. */
export function treeCount<K, V>(shape: TreeShape<K, V>, root: TreeNode<K, V>): number {
  if (isInline(root)) return root._keys.length
  let n = 0
  for (let leaf: Leaf<K, V> | null = firstLeaf(shape, root); leaf !== null; leaf = leaf._next) n += leaf._keys.length
  return n
}
