// Conflict resolution, as storages do it: when a transaction stores an object that someone else
// committed meanwhile, the object's class may merge the three states (the one the transaction
// started from, the committed one, and its own) instead of failing the commit. Classes opt in by
// defining `_p_resolveConflict`. References to persistent objects in the states are
// PersistentReference values (no connection is involved).

import createDebug from 'debug'

import { findClass } from './class-registry.js'
import { ConflictError } from './errors.js'
import { Persistent } from './persistent.js'
import { PersistentReference, decodeRaw, decodeState, encodeStateRecord } from './serialize.js'
import type { Oid, Tid } from './tid.js'

const log = createDebug('wendelin:zodb:conflict')

type State = Record<string, unknown>
type Resolver = (old: State | null, committed: State, mine: State) => State

function referenceReader() {
  return { persistentObject: (oid: Oid, className: string) => new PersistentReference(oid, className) }
}

function stateOf(data: Uint8Array): State {
  return decodeState(data, referenceReader()).state as State
}

/**
 * Merge `newData` (based on `oldSerial`) with the revision `committedSerial` of `oid`; returns the
 * merged record or throws ConflictError. `loadSerial` reads old revisions from the storage.
 */
export function tryToResolveConflict(
  oid: Oid,
  committedSerial: Tid,
  oldSerial: Tid,
  newData: Uint8Array,
  loadSerial: (oid: Oid, serial: Tid) => Uint8Array,
): Uint8Array {
  let className: string | null = null
  const fail = (reason: string, cause?: unknown): ConflictError => {
    const error = new ConflictError(`database conflict error: ${reason}`, { oid, className, oldSerial, committedSerial })
    if (cause !== undefined) (error as { cause?: unknown }).cause = cause
    return error
  }
  try {
    className = decodeRaw(newData).className
  } catch (error) {
    throw fail('the new record cannot be read', error)
  }
  const cls = findClass(className)
  const resolve = (cls?.prototype as { _p_resolveConflict?: Resolver } | undefined)?._p_resolveConflict
  if (cls === undefined || typeof resolve !== 'function' || !(cls.prototype instanceof Persistent)) {
    throw fail('the object was changed by another transaction and its class does not resolve conflicts')
  }
  try {
    const old = oldSerial === 0n ? null : stateOf(loadSerial(oid, oldSerial))
    const committed = stateOf(loadSerial(oid, committedSerial))
    const mine = stateOf(newData)
    const instance = Persistent._p_new(cls as unknown as new () => Persistent)
    const merged: unknown = resolve.call(instance, old, committed, mine)
    // Stored, a state that is not an object of attributes would make the object unloadable
    // (_p_setState refuses it) for every later reader: fail this commit instead.
    if (merged === null || typeof merged !== 'object') throw new TypeError(`it returned ${merged === null ? 'null' : typeof merged}, not a state object`)
    const data = encodeStateRecord(className, merged, {
      persistentRef: (obj, path) => {
        throw new TypeError(`conflict resolution cannot create persistent objects (${obj.constructor.name} at ${path()})`)
      },
    })
    log('resolved a conflict on %s (%s)', oid, className)
    return data
  } catch (error) {
    // A resolver's own ConflictError (one that says which key clashed, say) usually cannot name
    // the object: as in ZODB, the conflict that leaves the storage always does.
    if (error instanceof ConflictError && error.oid !== null) throw error
    throw fail(`${className}._p_resolveConflict could not merge the changes: ${error instanceof Error ? error.message : String(error)}`, error)
  }
}
