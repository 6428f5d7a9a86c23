// The concrete collection classes, family by family, each registered under a stable name
// ("btrees.OOBTree", ...) so its records can be loaded again.
//
//   family  keys                 values              bucket / node size
//   OO      object keys          any value           30 / 250
//   OI      object keys          safe integers       60 / 250
//   OL      object keys          64-bit bigint       60 / 250
//   OF      object keys          float numbers       60 / 250
//   IO      safe integers        any value           60 / 500
//   II      safe integers        safe integers       120 / 500
//   IF      safe integers        float numbers       120 / 500
//   LO      64-bit bigint        any value           60 / 500
//   LL      64-bit bigint        64-bit bigint       120 / 500
//   LF      64-bit bigint        float numbers       120 / 500
//
// Every family has <P>BTree, <P>Bucket, <P>TreeSet and <P>Set (sets ignore the value kind), and
// its set operations (union, intersection, difference; weighted ones for numeric values;
// multiunion for integer keys) on the family object: `OO.union(a, b)`.

import { type AnyClass, registerClass } from '@wendelin/zodb'

import { BTree, type TreeOptions, TreeSet } from './btree.js'
import { Bucket, SetBucket } from './bucket.js'
import type { Family } from './family.js'
import { type KeyKind, type ObjectKey, intKeys, longKeys, objectKeys } from './key-kind.js'
import { type FamilyOperations, type IntegerKeyOperations, type WeightedOperations, makeOperations } from './operations.js'
import type { EntriesSource } from './sorted-mapping.js'
import { type ValueKind, floatValues, intValues, longValues, objectValues } from './value-kind.js'

/** A BTree class of a family, generic in the value type a user stores. */
export interface BTreeClass<K, V> {
  new <VV extends V = V>(source?: EntriesSource<K, NoInfer<VV>>, options?: TreeOptions): BTree<K, VV>
  readonly family: Family<K, V>
}
/** A BTree class of an object-key family, generic in the exact key type too (strings, say). */
export interface KeyedBTreeClass<K, V> {
  new <KK extends K = K, VV extends V = V>(source?: EntriesSource<NoInfer<KK>, NoInfer<VV>>, options?: TreeOptions): BTree<KK, VV>
  readonly family: Family<K, V>
}
export interface BucketClass<K, V> {
  new <VV extends V = V>(): Bucket<K, VV>
  readonly family: Family<K, V>
}
export interface KeyedBucketClass<K, V> {
  new <KK extends K = K, VV extends V = V>(): Bucket<KK, VV>
  readonly family: Family<K, V>
}
export interface TreeSetClass<K> {
  new <KK extends K = K>(source?: Iterable<NoInfer<KK>>, options?: TreeOptions): TreeSet<KK>
  readonly family: Family<K, unknown>
}
export interface SetClass<K> {
  new <KK extends K = K>(): SetBucket<KK>
  readonly family: Family<K, unknown>
}

export interface FamilyModule<K, V> extends FamilyOperations<K, V> {
  readonly family: Family<K, V>
  readonly BTree: BTreeClass<K, V>
  readonly Bucket: BucketClass<K, V>
  readonly TreeSet: TreeSetClass<K>
  readonly Set: SetClass<K>
}

function named<T extends AnyClass>(cls: T, name: string): T {
  Object.defineProperty(cls, 'name', { value: name })
  registerClass(`btrees.${name}`, cls)
  return cls
}

function defineFamily<K, V, Extra>(
  prefix: string,
  keys: KeyKind<K>,
  values: ValueKind<V>,
  maxBucketSize: number,
  maxTreeSize: number,
): FamilyModule<K, V> & Extra {
  const family: Family<K, V> = Object.freeze({ prefix, keys, values, maxBucketSize, maxTreeSize })
  const FamilyBucket = named(class extends Bucket<K, V> {
    static readonly family = family
  }, `${prefix}Bucket`)
  const FamilySet = named(class extends SetBucket<K> {
    static readonly family = family
  }, `${prefix}Set`)
  const FamilyBTree = named(class extends BTree<K, V> {
    static readonly family = family
    static readonly leafClass = FamilyBucket
  }, `${prefix}BTree`)
  const FamilyTreeSet = named(class extends TreeSet<K> {
    static readonly family = family
    static readonly leafClass = FamilySet
  }, `${prefix}TreeSet`)
  const operations = makeOperations(family, () => new FamilySet(), () => new FamilyBucket())
  return Object.freeze({
    family,
    BTree: FamilyBTree as unknown as BTreeClass<K, V>,
    Bucket: FamilyBucket as unknown as BucketClass<K, V>,
    TreeSet: FamilyTreeSet as unknown as TreeSetClass<K>,
    Set: FamilySet as unknown as SetClass<K>,
    ...operations,
  }) as FamilyModule<K, V> & Extra
}

type Numeric<K, V> = WeightedOperations<K, V>
type IntKeyed<K> = IntegerKeyOperations<K>

export const OO = defineFamily<ObjectKey, unknown, object>('OO', objectKeys, objectValues, 30, 250)
export const OI = defineFamily<ObjectKey, number, Numeric<ObjectKey, number>>('OI', objectKeys, intValues, 60, 250)
export const OL = defineFamily<ObjectKey, bigint, Numeric<ObjectKey, bigint>>('OL', objectKeys, longValues, 60, 250)
export const OF = defineFamily<ObjectKey, number, Numeric<ObjectKey, number>>('OF', objectKeys, floatValues, 60, 250)
export const IO = defineFamily<number, unknown, IntKeyed<number>>('IO', intKeys, objectValues, 60, 500)
export const II = defineFamily<number, number, Numeric<number, number> & IntKeyed<number>>('II', intKeys, intValues, 120, 500)
export const IF = defineFamily<number, number, Numeric<number, number> & IntKeyed<number>>('IF', intKeys, floatValues, 120, 500)
export const LO = defineFamily<bigint, unknown, IntKeyed<bigint>>('LO', longKeys, objectValues, 60, 500)
export const LL = defineFamily<bigint, bigint, Numeric<bigint, bigint> & IntKeyed<bigint>>('LL', longKeys, longValues, 120, 500)
export const LF = defineFamily<bigint, number, Numeric<bigint, number> & IntKeyed<bigint>>('LF', longKeys, floatValues, 120, 500)

export const families = { OO, OI, OL, OF, IO, II, IF, LO, LL, LF } as const

// ZODB's names, as values and as types.
export const OOBTree = OO.BTree as KeyedBTreeClass<ObjectKey, unknown>
export type OOBTree<K extends ObjectKey = ObjectKey, V = unknown> = BTree<K, V>
export const OOBucket = OO.Bucket as KeyedBucketClass<ObjectKey, unknown>
export type OOBucket<K extends ObjectKey = ObjectKey, V = unknown> = Bucket<K, V>
export const OOTreeSet = OO.TreeSet
export type OOTreeSet<K extends ObjectKey = ObjectKey> = TreeSet<K>
export const OOSet = OO.Set
export type OOSet<K extends ObjectKey = ObjectKey> = SetBucket<K>
export const OIBTree = OI.BTree as KeyedBTreeClass<ObjectKey, number>
export type OIBTree<K extends ObjectKey = ObjectKey> = BTree<K, number>
export const OLBTree = OL.BTree as KeyedBTreeClass<ObjectKey, bigint>
export type OLBTree<K extends ObjectKey = ObjectKey> = BTree<K, bigint>
export const OFBTree = OF.BTree as KeyedBTreeClass<ObjectKey, number>
export type OFBTree<K extends ObjectKey = ObjectKey> = BTree<K, number>
export const IOBTree = IO.BTree
export type IOBTree<V = unknown> = BTree<number, V>
export const IOBucket = IO.Bucket
export type IOBucket<V = unknown> = Bucket<number, V>
export const IOTreeSet = IO.TreeSet
export const IOSet = IO.Set
export const IIBTree = II.BTree
export type IIBTree = BTree<number, number>
export const IIBucket = II.Bucket
export const IITreeSet = II.TreeSet
export type IITreeSet = TreeSet<number>
export const IISet = II.Set
export type IISet = SetBucket<number>
export const IFBTree = IF.BTree
export type IFBTree = BTree<number, number>
export const LOBTree = LO.BTree
export type LOBTree<V = unknown> = BTree<bigint, V>
export const LOBucket = LO.Bucket
export const LOTreeSet = LO.TreeSet
export const LLBTree = LL.BTree
export type LLBTree = BTree<bigint, bigint>
export const LLBucket = LL.Bucket
export const LLTreeSet = LL.TreeSet
export type LLTreeSet = TreeSet<bigint>
export const LLSet = LL.Set
export type LLSet = SetBucket<bigint>
export const LFBTree = LF.BTree
export type LFBTree = BTree<bigint, number>
