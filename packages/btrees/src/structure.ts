// How a collection keeps its keys: in one leaf (buckets, sets) or in a tree of nodes (BTree,
// TreeSet). The API classes (SortedMapping, SortedSet) are written over these operations, so a
// mapping or set works the same whichever structure holds it.

import type { Family } from './family.js'
import type { Bound, LeafData, Lookup, PutResult } from './leaf.js'

/** A leaf as a forward range walks it. */
export type ForwardLeaf = LeafData<unknown, unknown> & { _next?: unknown }

export interface Structure {
  lookup(collection: object, key: unknown): Lookup<unknown>
  range(collection: object, lo: Bound<unknown> | undefined, hi: Bound<unknown> | undefined, reverse: boolean): Iterable<[unknown, unknown]>
  /**
   * Where a forward range starts: the leaf holding the first key at or above `lo`, and whether
   * the range goes on along the leaves' `_next` links (a tree) or stays in that leaf (a bucket).
   * What `range` does forward, for an iterator that walks the leaves itself (no generators).
   */
  forwardStart(collection: object, lo: Bound<unknown> | undefined): { leaf: ForwardLeaf | null; follow: boolean }
  put(collection: object, key: unknown, value: unknown, onlyIfAbsent: boolean): PutResult<unknown>
  remove(collection: object, key: unknown): Lookup<unknown>
  clear(collection: object): void
  count(collection: object): number
  /** Three-way merge of the collection's stored states (conflict resolution). */
  resolve(family: Family<unknown, unknown>, old: Record<string, unknown> | null, committed: Record<string, unknown>, mine: Record<string, unknown>): Record<string, unknown>
}
