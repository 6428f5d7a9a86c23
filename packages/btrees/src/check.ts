// check(): verify every structural invariant of a collection and name the first violation.
// Meant for tests, `wendelin verify`, and anyone who suspects a damaged tree.

import { BTree, TreeSet } from './btree.js'
import { Bucket, SetBucket } from './bucket.js'
import { describeKey } from './key-kind.js'
import type { Leaf, TreeNode } from './tree-node.js'
import type { SortedBase } from './sorted-base.js'

export class BTreeIntegrityError extends Error {
  override name = 'BTreeIntegrityError'
}

type AnyTree = BTree<unknown, unknown> | TreeSet<unknown>
type AnyLeaf = Leaf<unknown, unknown>
type AnyNode = TreeNode<unknown, unknown>

/** Throws BTreeIntegrityError describing the first broken invariant; returns the number of keys. */
export function check(collection: SortedBase<unknown, unknown>): number {
  const compare = collection.family.keys.compare
  const sameClass = collection.family.keys.sameClass
  const fail = (where: string, what: string): never => {
    throw new BTreeIntegrityError(`${collection.constructor.name}: ${where}: ${what}`)
  }
  let firstKey: unknown
  let haveFirst = false

  /** Keys sorted, unique, within (lo, hi), of one class; values parallel. */
  function checkLeafContents(where: string, keys: unknown[] | null, values: unknown[] | null, hasValues: boolean, lo: unknown, hi: unknown, hasLo: boolean, hasHi: boolean): void {
    if (!Array.isArray(keys)) fail(where, 'keys are missing')
    if (hasValues) {
      if (!Array.isArray(values)) fail(where, 'values are missing')
      if (values!.length !== keys!.length) fail(where, `${keys!.length} keys but ${values!.length} values`)
    } else if (values !== null && values !== undefined) {
      fail(where, 'a set has values')
    }
    for (let i = 0; i < keys!.length; i++) {
      const k = keys![i]
      if (!haveFirst) {
        firstKey = k
        haveFirst = true
      } else if (!sameClass(firstKey as never, k as never)) {
        fail(where, `key ${describeKey(k)} is not of the same kind as ${describeKey(firstKey)}`)
      }
      if (i > 0 && compare(keys![i - 1] as never, k as never) >= 0) {
        fail(where, `keys out of order at index ${i}: ${describeKey(keys![i - 1])} then ${describeKey(k)}`)
      }
      if (hasLo && compare(k as never, lo as never) < 0) fail(where, `key ${describeKey(k)} is below its parent's separator ${describeKey(lo)}`)
      if (hasHi && compare(k as never, hi as never) >= 0) fail(where, `key ${describeKey(k)} is not below its parent's separator ${describeKey(hi)}`)
    }
  }

  if (collection instanceof Bucket || collection instanceof SetBucket) {
    const leaf = collection as unknown as AnyLeaf
    checkLeafContents('bucket', leaf._keys, leaf._values, collection instanceof Bucket, undefined, undefined, false, false)
    return leaf._keys.length
  }
  if (!(collection instanceof BTree || collection instanceof TreeSet)) {
    return fail('root', 'not a B-tree collection')
  }
  const tree = collection as AnyTree
  const hasValues = tree instanceof BTree
  const isNode = (x: unknown): x is AnyNode => (hasValues ? x instanceof BTree : x instanceof TreeSet)
  const root = tree as unknown as AnyNode
  let count = 0

  if (root._children === null) {
    checkLeafContents('inline bucket', root._keys, root._values, hasValues, undefined, undefined, false, false)
    count = root._keys!.length
  } else {
    const leaves: AnyLeaf[] = []
    let leafDepth = -1
    const walk = (node: AnyNode, where: string, depth: number, lo: unknown, hi: unknown, hasLo: boolean, hasHi: boolean): void => {
      const children = node._children
      const seps = node._separators
      if (!Array.isArray(children) || !Array.isArray(seps)) fail(where, 'an internal node without children or separators')
      if (node._keys !== null || node._values !== null) fail(where, 'an internal node that also holds keys')
      if (children!.length === 0) fail(where, 'an internal node without children')
      if (seps!.length !== children!.length - 1) fail(where, `${children!.length} children but ${seps!.length} separators`)
      for (let i = 0; i < seps!.length; i++) {
        if (i > 0 && compare(seps![i - 1] as never, seps![i] as never) >= 0) fail(where, `separators out of order at index ${i}`)
        if (hasLo && compare(seps![i] as never, lo as never) < 0) fail(where, `separator ${describeKey(seps![i])} below the parent's range`)
        if (hasHi && compare(seps![i] as never, hi as never) >= 0) fail(where, `separator ${describeKey(seps![i])} beyond the parent's range`)
      }
      const kinds = new Set(children!.map((c) => (isNode(c) ? 'node' : 'leaf')))
      if (kinds.size > 1) fail(where, 'children mix internal nodes and buckets')
      for (let i = 0; i < children!.length; i++) {
        const child = children![i]
        const clo = i > 0 ? seps![i - 1] : lo
        const chi = i < seps!.length ? seps![i] : hi
        const childWhere = `${where}.children[${i}]`
        if (isNode(child)) {
          walk(child, childWhere, depth + 1, clo, chi, i > 0 || hasLo, i < seps!.length || hasHi)
        } else {
          const leaf = child as AnyLeaf
          const expected = hasValues ? Bucket : SetBucket
          if (!(leaf instanceof expected)) fail(childWhere, `a child that is neither a node nor a ${expected.name}`)
          if (leafDepth === -1) leafDepth = depth
          else if (leafDepth !== depth) fail(childWhere, `buckets at different depths (${leafDepth} and ${depth})`)
          if (leaf._keys.length === 0) fail(childWhere, 'an empty bucket')
          checkLeafContents(childWhere, leaf._keys, leaf._values, hasValues, clo, chi, i > 0 || hasLo, i < seps!.length || hasHi)
          leaves.push(leaf)
          count += leaf._keys.length
        }
      }
    }
    walk(root, 'root', 0, undefined, undefined, false, false)
    for (let i = 0; i < leaves.length; i++) {
      const expectedNext = i + 1 < leaves.length ? leaves[i + 1] : null
      if (leaves[i]!._next !== expectedNext) {
        fail(`bucket ${i}`, expectedNext === null ? 'the last bucket links to another bucket' : 'its next-bucket link skips or misorders buckets')
      }
    }
  }
  const length = (tree as unknown as { _length: { value: number } | null })._length
  if (length !== null && length.value !== count) fail('length', `the Length says ${length.value} but the tree holds ${count} keys`)
  return count
}
