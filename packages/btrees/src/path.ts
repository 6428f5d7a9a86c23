// pathTo: the persistent objects a lookup of one key reads, root first — the tree object, the
// internal nodes on the way down, and the bucket (none when the tree keeps its bucket inline).
// A value looked up through a tree depends on exactly these objects: if none of them changed,
// the lookup gives the same answer (ZBigFile uses it to map invalidations back to blocks).
import type { Persistent } from '@wendelin/zodb'

import { Bucket, SetBucket } from './bucket.js'
import { search } from './leaf.js'
import type { SortedBase } from './sorted-base.js'

interface NodeShape {
  _keys: unknown[] | null
  _children: Persistent[] | null
  _separators: unknown[] | null
}

/**
 * The objects a lookup of `key` in `tree` (a BTree or TreeSet) reads, root first: the tree
 * itself, its internal nodes, then the bucket holding (or that would hold) `key`.
 * @internal
 */
export function pathTo<K>(tree: SortedBase<K, unknown>, key: K): Persistent[] {
  if (tree instanceof Bucket || tree instanceof SetBucket) return [tree]
  const compare = tree.family.keys.compare as (a: K, b: K) => number
  const path: Persistent[] = []
  let node: Persistent = tree
  for (;;) {
    path.push(node)
    if (node instanceof Bucket || node instanceof SetBucket) return path
    const n = node as unknown as NodeShape
    const children = n._children
    if (children === null) return path // inline bucket: the node holds the entries itself
    const i = search(n._separators! as K[], key, compare)
    node = children[i >= 0 ? i + 1 : -i - 1]!
  }
}
