// Value equality for conflict resolution: the three states of a bucket are decoded separately,
// so equal plain values are distinct objects, and persistent objects appear as references that
// are the same when their oids are.

import { PersistentReference } from '@wendelin/zodb'

export function sameValue(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true
  if (a instanceof PersistentReference || b instanceof PersistentReference) {
    return a instanceof PersistentReference && b instanceof PersistentReference && a.oid === b.oid
  }
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false
  if (a instanceof Date) return a.getTime() === (b as Date).getTime()
  if (ArrayBuffer.isView(a)) {
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
    const bv = b as ArrayBufferView
    const y = new Uint8Array(bv.buffer, bv.byteOffset, bv.byteLength)
    return x.length === y.length && x.every((v, i) => v === y[i])
  }
  if (a instanceof ArrayBuffer) return sameValue(new Uint8Array(a), new Uint8Array(b as ArrayBuffer))
  if (Array.isArray(a)) {
    const y = b as unknown[]
    return a.length === y.length && a.every((v, i) => sameValue(v, y[i]))
  }
  if (a instanceof Map) {
    const y = b as Map<unknown, unknown>
    if (a.size !== y.size) return false
    for (const [k, v] of a) if (!y.has(k) || !sameValue(v, y.get(k))) return false
    return true
  }
  if (a instanceof Set) {
    const y = b as Set<unknown>
    return a.size === y.size && [...a].every((v) => y.has(v))
  }
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  return ka.length === kb.length && ka.every((k) => sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
}
