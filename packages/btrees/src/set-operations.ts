// Set operations over sorted key sequences: the engine behind union, intersection, difference,
// weightedUnion, weightedIntersection and multiunion. Inputs are walked once, in order, side by
// side; results are plain sorted arrays that the family classes wrap into sets and buckets.

/** A sorted input: a set's keys, or a mapping's keys with their values. */
export type SortedInput<K, V> = { keys: Iterable<K>; entries?: undefined } | { entries: Iterable<readonly [K, V]>; keys?: undefined }

/** Arithmetic of a value kind, for the weighted operations. */
export interface WeightArithmetic<V> {
  /** The value a set member stands for (1). */
  readonly one: V
  readonly zero: V
  add(a: V, b: V): V
  scale(value: V, weight: V): V
}

interface Step<K, V> {
  key: K
  value: V | undefined
}

/** Iterate an input as {key, value} steps; sets give `undefined` values. */
function* steps<K, V>(input: SortedInput<K, V>): Generator<Step<K, V>> {
  if (input.entries !== undefined) for (const [key, value] of input.entries) yield { key, value }
  else for (const key of input.keys) yield { key, value: undefined }
}

class Walker<K, V> {
  readonly #it: Iterator<Step<K, V>>
  current: Step<K, V> | null = null
  constructor(it: Iterable<Step<K, V>>) {
    this.#it = it[Symbol.iterator]()
    this.advance()
  }
  advance(): void {
    const r = this.#it.next()
    this.current = r.done ? null : r.value
  }
}

/** Keys (and values) of `a` whose key is not in `b`. */
export function difference<K, V>(
  a: SortedInput<K, V>,
  b: Iterable<K>,
  compare: (x: K, y: K) => number,
): { keys: K[]; values: V[] | undefined } {
  const keys: K[] = []
  const values: V[] | undefined = a.entries !== undefined ? [] : undefined
  const wa = new Walker(steps(a))
  const wb = new Walker(steps<K, V>({ keys: b }))
  while (wa.current && wb.current) {
    const c = compare(wa.current.key, wb.current.key)
    if (c < 0) {
      keys.push(wa.current.key)
      values?.push(wa.current.value as V)
      wa.advance()
    } else if (c === 0) {
      wa.advance()
      wb.advance()
    } else {
      wb.advance()
    }
  }
  for (; wa.current; wa.advance()) {
    keys.push(wa.current.key)
    values?.push(wa.current.value as V)
  }
  return { keys, values }
}

/** Sorted keys present in `a` or `b`. */
export function union<K>(a: Iterable<K>, b: Iterable<K>, compare: (x: K, y: K) => number): K[] {
  const out: K[] = []
  const wa = new Walker(steps<K, never>({ keys: a }))
  const wb = new Walker(steps<K, never>({ keys: b }))
  while (wa.current && wb.current) {
    const c = compare(wa.current.key, wb.current.key)
    if (c <= 0) {
      out.push(wa.current.key)
      wa.advance()
      if (c === 0) wb.advance()
    } else {
      out.push(wb.current.key)
      wb.advance()
    }
  }
  for (; wa.current; wa.advance()) out.push(wa.current.key)
  for (; wb.current; wb.advance()) out.push(wb.current.key)
  return out
}

/** Sorted keys present in both `a` and `b`. */
export function intersection<K>(a: Iterable<K>, b: Iterable<K>, compare: (x: K, y: K) => number): K[] {
  const out: K[] = []
  const wa = new Walker(steps<K, never>({ keys: a }))
  const wb = new Walker(steps<K, never>({ keys: b }))
  while (wa.current && wb.current) {
    const c = compare(wa.current.key, wb.current.key)
    if (c < 0) wa.advance()
    else if (c > 0) wb.advance()
    else {
      out.push(wa.current.key)
      wa.advance()
      wb.advance()
    }
  }
  return out
}

export interface WeightedResult<K, V> {
  /** The weight of the result, as BTrees defines it (see weightedUnion / weightedIntersection). */
  weight: V
  keys: K[]
  /** Absent when both inputs were sets. */
  values: V[] | undefined
}

/**
 * Union where values add up: a key in both gets `v1*w1 + v2*w2`, a key in one gets `v*w`; a set
 * member counts as value 1. Two sets give a set (weight 1).
 */
export function weightedUnion<K, V>(
  a: SortedInput<K, V>,
  b: SortedInput<K, V>,
  w1: V,
  w2: V,
  compare: (x: K, y: K) => number,
  arith: WeightArithmetic<V>,
): WeightedResult<K, V> {
  const merging = a.entries !== undefined || b.entries !== undefined
  const keys: K[] = []
  const values: V[] | undefined = merging ? [] : undefined
  const wa = new Walker(steps(a))
  const wb = new Walker(steps(b))
  const valueOf = (s: Step<K, V>) => s.value ?? arith.one
  const copy = (s: Step<K, V>, w: V) => {
    keys.push(s.key)
    values?.push(arith.scale(valueOf(s), w))
  }
  while (wa.current && wb.current) {
    const c = compare(wa.current.key, wb.current.key)
    if (c < 0) {
      copy(wa.current, w1)
      wa.advance()
    } else if (c > 0) {
      copy(wb.current, w2)
      wb.advance()
    } else {
      keys.push(wa.current.key)
      values?.push(arith.add(arith.scale(valueOf(wa.current), w1), arith.scale(valueOf(wb.current), w2)))
      wa.advance()
      wb.advance()
    }
  }
  for (; wa.current; wa.advance()) copy(wa.current, w1)
  for (; wb.current; wb.advance()) copy(wb.current, w2)
  return { weight: arith.one, keys, values }
}

/**
 * Intersection where values add up (`v1*w1 + v2*w2`, set members counting as 1). Two sets give
 * a set whose weight is `w1 + w2`; otherwise the weight is 1.
 */
export function weightedIntersection<K, V>(
  a: SortedInput<K, V>,
  b: SortedInput<K, V>,
  w1: V,
  w2: V,
  compare: (x: K, y: K) => number,
  arith: WeightArithmetic<V>,
): WeightedResult<K, V> {
  const merging = a.entries !== undefined || b.entries !== undefined
  const keys: K[] = []
  const values: V[] | undefined = merging ? [] : undefined
  const wa = new Walker(steps(a))
  const wb = new Walker(steps(b))
  while (wa.current && wb.current) {
    const c = compare(wa.current.key, wb.current.key)
    if (c < 0) wa.advance()
    else if (c > 0) wb.advance()
    else {
      keys.push(wa.current.key)
      values?.push(
        arith.add(arith.scale(wa.current.value ?? arith.one, w1), arith.scale(wb.current.value ?? arith.one, w2)),
      )
      wa.advance()
      wb.advance()
    }
  }
  return { weight: merging ? arith.one : arith.add(w1, w2), keys, values }
}

/** Sorted, duplicate-free union of many integer inputs (each a single integer or an iterable of them). */
export function multiunion<K extends number | bigint>(
  inputs: Iterable<K | Iterable<K>>,
  compare: (x: K, y: K) => number,
): K[] {
  const all: K[] = []
  for (const input of inputs) {
    if (typeof input === 'number' || typeof input === 'bigint') all.push(input)
    else for (const k of input as Iterable<K>) all.push(k)
  }
  all.sort(compare)
  let n = 0
  for (let i = 0; i < all.length; i++) {
    if (n === 0 || compare(all[n - 1]!, all[i]!) !== 0) all[n++] = all[i]!
  }
  all.length = n
  return all
}

/** Whether `keys` is sorted strictly ascending under `compare`. */
export function isStrictlySorted<K>(keys: readonly K[], compare: (x: K, y: K) => number): boolean {
  for (let i = 1; i < keys.length; i++) if (compare(keys[i - 1]!, keys[i]!) >= 0) return false
  return true
}
