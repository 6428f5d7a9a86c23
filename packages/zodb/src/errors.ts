// Errors of the object database. Every one is exported and `instanceof`-testable, and its message
// names the object, oid, class or attribute path that was wrong.
//
// ConflictError (and so ReadConflictError) extends the transaction package's TransientError:
// `manager.run()` / `attempts()` retry the work when one is raised.

import { TransientError } from '@wendelin/transaction'

import { idToHex, type Oid, type Tid } from './tid.js'

function hexOrNone(id: bigint | null | undefined): string {
  return id === null || id === undefined ? 'none' : idToHex(id)
}

/** Base class of the database's own errors (ConflictError excepted: it is a TransientError). */
export class POSError extends Error {
  override name = 'POSError'
}

/** No object with this oid (or no such revision) exists in the storage. */
export class POSKeyError extends POSError {
  override name = 'POSKeyError'
  constructor(
    readonly oid: Oid,
    detail = '',
  ) {
    super(`no object with oid 0x${idToHex(oid)}${detail ? `: ${detail}` : ''}`)
  }
}

export interface ConflictDetails {
  oid?: Oid | null
  /** The class name of the object in conflict, when known. */
  className?: string | null
  /** The serial the writer started from. */
  oldSerial?: Tid | null
  /** The serial committed meanwhile by someone else. */
  committedSerial?: Tid | null
}

/**
 * Two transactions changed the same object: the later commit fails (unless the object's class
 * resolves the conflict). Retrying the work in a new transaction usually succeeds.
 */
export class ConflictError extends TransientError {
  override name = 'ConflictError'
  readonly oid: Oid | null
  readonly className: string | null
  readonly oldSerial: Tid | null
  readonly committedSerial: Tid | null

  constructor(message: string, details: ConflictDetails = {}) {
    const what: string[] = []
    if (details.oid !== undefined && details.oid !== null) what.push(`oid 0x${idToHex(details.oid)}`)
    if (details.className) what.push(`class ${details.className}`)
    if (details.oldSerial !== undefined || details.committedSerial !== undefined) {
      what.push(`serial this transaction started from ${hexOrNone(details.oldSerial)}, committed serial ${hexOrNone(details.committedSerial)}`)
    }
    super(what.length > 0 ? `${message} (${what.join(', ')})` : message)
    this.oid = details.oid ?? null
    this.className = details.className ?? null
    this.oldSerial = details.oldSerial ?? null
    this.committedSerial = details.committedSerial ?? null
  }

  /** [serial committed meanwhile, serial this transaction started from], as ZODB's `serials`. */
  get serials(): [Tid | null, Tid | null] {
    return [this.committedSerial, this.oldSerial]
  }
}

/** A read that cannot be served consistently with the connection's snapshot, or a `readCurrent` object that changed. */
export class ReadConflictError extends ConflictError {
  override name = 'ReadConflictError'
}

/** A storage's two-phase commit was called with a transaction other than the one it is committing. */
export class StorageTransactionError extends POSError {
  override name = 'StorageTransactionError'
}

/** A write to a read-only storage or database. */
export class ReadOnlyError extends POSError {
  override name = 'ReadOnlyError'
}

/** A change to an object loaded by a historical (`at`/`before`) connection. */
export class ReadOnlyHistoryError extends POSError {
  override name = 'ReadOnlyHistoryError'
}

/** The connection (or database) is not in a state that allows the operation (closed, joined, ...). */
export class ConnectionStateError extends POSError {
  override name = 'ConnectionStateError'
}

/** A reference to a persistent object that belongs to another connection or database. */
export class InvalidObjectReference extends POSError {
  override name = 'InvalidObjectReference'
}

/** A value that cannot be stored (function, symbol, instance of an unregistered class, ...). */
export class UnserializableError extends POSError {
  override name = 'UnserializableError'
  constructor(
    /** Where the value was: e.g. `Account(oid 0x...).history[3].callback`. */
    readonly path: string,
    reason: string,
  ) {
    super(`cannot store ${path}: ${reason}`)
  }
}

/** A record names a class that was never registered with `registerClass`. */
export class UnknownClassError extends POSError {
  override name = 'UnknownClassError'
  constructor(
    readonly className: string,
    readonly oid: Oid | null = null,
  ) {
    super(
      `class ${JSON.stringify(className)}${oid === null ? '' : ` (object 0x${idToHex(oid)})`} is not registered: ` +
        'call registerClass(name, Class) before loading it',
    )
  }
}

/** A transaction cannot be undone (no such transaction, or a later one changed one of its objects). */
export class UndoError extends POSError {
  override name = 'UndoError'
}

/** A record that is not in a format this version can read. */
export class CorruptRecordError extends POSError {
  override name = 'CorruptRecordError'
}

/** A storage that lives in this thread's memory was asked for a spec another thread could open. */
export class StorageNotShareableError extends POSError {
  override name = 'StorageNotShareableError'
}
