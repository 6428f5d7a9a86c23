// What may be a value of a B-tree: anything storable (the O… value families), or numbers of one
// kind where weighted set operations add and scale them (…I, …F, …L).

import type { WeightArithmetic } from './set-operations.js'

export class BTreeValueError extends TypeError {
  override name = 'BTreeValueError'
}

export interface ValueKind<V> {
  readonly name: 'object' | 'int' | 'float' | 'long'
  check(value: unknown): V
  /** Present for numeric kinds: what weightedUnion/weightedIntersection compute with. */
  readonly arithmetic?: WeightArithmetic<V>
}

export const objectValues: ValueKind<unknown> = {
  name: 'object',
  check(value) {
    if (value === undefined) throw new BTreeValueError('undefined cannot be stored as a B-tree value (use null)')
    return value
  },
}

export const intValues: ValueKind<number> = {
  name: 'int',
  check(value) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      throw new BTreeValueError(`integer value expected (a safe integer number), got ${String(value)}`)
    }
    return value
  },
  arithmetic: { one: 1, zero: 0, add: (a, b) => a + b, scale: (v, w) => v * w },
}

export const floatValues: ValueKind<number> = {
  name: 'float',
  check(value) {
    if (typeof value !== 'number') throw new BTreeValueError(`number value expected, got ${String(value)}`)
    return value
  },
  arithmetic: { one: 1, zero: 0, add: (a, b) => a + b, scale: (v, w) => v * w },
}

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

export const longValues: ValueKind<bigint> = {
  name: 'long',
  check(value) {
    const v = typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : value
    if (typeof v !== 'bigint' || v < INT64_MIN || v > INT64_MAX) {
      throw new BTreeValueError(`64-bit integer value expected (a bigint or safe integer), got ${String(value)}`)
    }
    return v
  },
  arithmetic: { one: 1n, zero: 0n, add: (a, b) => a + b, scale: (v, w) => v * w },
}
