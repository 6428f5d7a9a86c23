// What may be a key of a B-tree, and in what order keys sort.
//
// A key kind validates keys on the way in (a bad key is a clear error, never a silently
// mis-sorted tree), normalizes them (copies arrays and dates so that the caller cannot mutate a
// key inside the tree) and compares them. Three kinds exist, named after ZODB's families:
//
//   int      (I…)  safe integers (JavaScript numbers, |n| ≤ 2^53-1)
//   long     (L…)  64-bit signed integers as bigint; safe-integer numbers are accepted and converted
//   object   (O…)  numbers, bigints, strings, Dates and arrays of those, in one total order:
//
//       numeric (number and bigint together, by value) < string < Date < array
//
//     strings compare by UTF-16 code units (JavaScript's `<`), Dates by time, arrays element by
//     element with a shorter prefix first. All top-level keys of one tree must be of one class
//     (all numeric, all strings, all Dates or all arrays): mixing is rejected, as comparing a
//     string with a number is in Python 3. Elements inside array keys may mix classes.

export class BTreeKeyError extends TypeError {
  override name = 'BTreeKeyError'
}

export interface KeyKind<K> {
  /** 'int' | 'long' | 'object' */
  readonly name: string
  /** Validate and normalize a key given by a caller; throws BTreeKeyError naming what is wrong. */
  check(key: unknown): K
  /** Total order: negative, zero or positive. Both arguments must have passed check(). */
  compare(a: K, b: K): number
  /** Whether a key may sit in the same tree as another (same class of key). */
  sameClass(a: K, b: K): boolean
}

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)
  if (typeof v === 'bigint') return `${v}n`
  if (v === null || typeof v !== 'object') return String(v)
  return Object.prototype.toString.call(v).slice(8, -1)
}

/** Safe-integer number keys (the I families). */
export const intKeys: KeyKind<number> = {
  name: 'int',
  check(key) {
    if (typeof key !== 'number' || !Number.isSafeInteger(key)) {
      throw new BTreeKeyError(`integer key expected (a safe integer number), got ${describeValue(key)}`)
    }
    return key === 0 ? 0 : key // -0 → 0
  },
  compare: (a, b) => a - b,
  sameClass: () => true,
}

/** 64-bit signed integer keys as bigint (the L families). */
export const longKeys: KeyKind<bigint> = {
  name: 'long',
  check(key) {
    let k: bigint
    if (typeof key === 'bigint') k = key
    else if (typeof key === 'number' && Number.isSafeInteger(key)) k = BigInt(key)
    else throw new BTreeKeyError(`64-bit integer key expected (a bigint or safe integer), got ${describeValue(key)}`)
    if (k < INT64_MIN || k > INT64_MAX) throw new BTreeKeyError(`key ${k}n is out of the signed 64-bit range`)
    return k
  },
  compare: (a, b) => (a < b ? -1 : a > b ? 1 : 0),
  sameClass: () => true,
}

/** A key accepted by the object families. */
export type ObjectKey = number | bigint | string | Date | readonly ObjectKey[]

const enum Rank {
  Numeric = 0,
  String = 1,
  Date = 2,
  Array = 3,
}

function rankOf(k: ObjectKey): Rank {
  switch (typeof k) {
    case 'number':
    case 'bigint':
      return Rank.Numeric
    case 'string':
      return Rank.String
    default:
      return k instanceof Date ? Rank.Date : Rank.Array
  }
}

function compareNumeric(a: number | bigint, b: number | bigint): number {
  if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0
  // number vs bigint: compare by value without losing precision.
  if (typeof a === 'number') {
    if (a === Infinity) return 1
    if (a === -Infinity) return -1
    if (!Number.isInteger(a)) {
      const floor = BigInt(Math.floor(a))
      return floor < (b as bigint) ? -1 : 1
    }
    const ab = BigInt(a)
    return ab < (b as bigint) ? -1 : ab > (b as bigint) ? 1 : 0
  }
  return -compareNumeric(b, a)
}

export function compareObjectKeys(a: ObjectKey, b: ObjectKey): number {
  const ra = rankOf(a)
  const rb = rankOf(b)
  if (ra !== rb) return ra - rb
  switch (ra) {
    case Rank.Numeric:
      return compareNumeric(a as number | bigint, b as number | bigint)
    case Rank.String:
      return a < b ? -1 : a > b ? 1 : 0
    case Rank.Date:
      return (a as Date).getTime() - (b as Date).getTime()
    case Rank.Array: {
      const xa = a as readonly ObjectKey[]
      const xb = b as readonly ObjectKey[]
      const n = Math.min(xa.length, xb.length)
      for (let i = 0; i < n; i++) {
        const c = compareObjectKeys(xa[i]!, xb[i]!)
        if (c !== 0) return c
      }
      return xa.length - xb.length
    }
  }
}

function checkObjectKey(key: unknown, path: string): ObjectKey {
  switch (typeof key) {
    case 'number':
      if (Number.isNaN(key)) throw new BTreeKeyError(`${path} is NaN, which has no place in an order`)
      return key === 0 ? 0 : key
    case 'bigint':
    case 'string':
      return key
    case 'object':
      if (key instanceof Date) {
        if (Number.isNaN(key.getTime())) throw new BTreeKeyError(`${path} is an invalid Date`)
        return new Date(key.getTime())
      }
      if (Array.isArray(key)) {
        // An index loop, not map(): map() skips the holes of a sparse array, which would let an
        // undefined element in (and break comparisons later).
        const copy: ObjectKey[] = new Array(key.length)
        for (let i = 0; i < key.length; i++) copy[i] = checkObjectKey(key[i], `${path}[${i}]`)
        return Object.freeze(copy)
      }
      break
  }
  throw new BTreeKeyError(
    `${path} cannot be a B-tree key: ${describeValue(key)} (keys are numbers, bigints, strings, Dates, or arrays of those)`,
  )
}

/** Keys of the object families (OO, OI, ...). */
export const objectKeys: KeyKind<ObjectKey> = {
  name: 'object',
  check: (key) => checkObjectKey(key, 'key'),
  compare: compareObjectKeys,
  sameClass: (a, b) => rankOf(a) === rankOf(b),
}

/** Describe a key for messages. */
export function describeKey(key: unknown): string {
  if (Array.isArray(key)) return `[${key.map(describeKey).join(', ')}]`
  if (key instanceof Date) return key.toISOString()
  return describeValue(key)
}
