// The wire protocol between the storage server and its clients (described byte by byte in the
// package README, "Protocol").
//
// Every message is a frame: a 4-byte big-endian unsigned length N (1 <= N <= the receiver's
// frame limit) followed by N bytes of one MessagePack value. 64-bit ids (oids, tids) are always
// MessagePack int64/uint64, decoded as bigint; records are MessagePack bin.

import { TransientError } from '@wendelin/transaction'
import {
  ConflictError,
  ConnectionStateError,
  POSError,
  POSKeyError,
  ReadConflictError,
  ReadOnlyError,
  StorageTransactionError,
  UndoError,
  type Oid,
  type Tid,
} from '@wendelin/zodb'

import { FrameReader as BaseFrameReader, unpackBody } from './framing.js'

export { BIG_FRAME_BYTES, DEFAULT_MAX_FRAME, MAGIC, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, encodeFrame, frameParts, peekId, peekTid, wholeFrameOf } from './framing.js'

/** The largest budget a loadBeforeMany request may give (bytes). */
export const MAX_REPLY_BUDGET = 16 << 20
/** What a record counts against a reply's budget besides its data (its oid, serials and framing). */
export const REPLY_RECORD_OVERHEAD = 32

/**
 * A transaction in an iterator reply: `[tid, status, user, description, extension, [[oid,
 * data | nil], …], cut?]` — `cut` (true) when its other records come in the next reply.
 */
export type IteratedTransaction = [Tid, ' ' | 'p', string, string, Record<string, unknown>, [Oid, Uint8Array | null][], true?]

/** `bytes` as a reply budget the server takes: whole bytes, 1 to MAX_REPLY_BUDGET. */
export function replyBudget(bytes: number): number {
  return Math.max(1, Math.min(MAX_REPLY_BUDGET, Math.floor(bytes)))
}

/** Decode a frame body (without its length prefix). Throws ProtocolError on malformed bytes. */
export function decodeBody(body: Uint8Array): unknown {
  try {
    return unpackBody(body)
  } catch (error) {
    throw new ProtocolError(`malformed message: ${(error as Error).message}`)
  }
}

/** The other side broke the protocol: malformed, oversized or unexpected frame. */
export class ProtocolError extends POSError {
  override name = 'ProtocolError'
}

/**
 * The client is not connected to its server (or lost the connection while a call was in
 * flight). A TransientError: retrying the transaction later, once reconnected, may succeed.
 */
export class ClientDisconnected extends TransientError {
  override name = 'ClientDisconnected'
}

/**
 * Splits a byte stream into frame bodies. `push` returns the complete bodies received so far;
 * a length of 0 or above `maxFrame` is a ProtocolError (the connection must be dropped).
 */
export class FrameReader extends BaseFrameReader {
  protected override error(message: string): Error {
    return new ProtocolError(message)
  }
}

/** An error as it travels in a reply. */
export interface WireError {
  name: string
  message: string
  oid?: bigint | null
  oldSerial?: bigint | null
  committedSerial?: bigint | null
  className?: string | null
}

export function errorToWire(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) }
  const w: WireError = { name: error.name, message: error.message }
  if (error instanceof ConflictError) {
    w.oid = error.oid
    w.oldSerial = error.oldSerial
    w.committedSerial = error.committedSerial
    w.className = error.className
  } else if (error instanceof POSKeyError) {
    w.oid = error.oid
  }
  return w
}

/** The error a reply carried, as an instance of the same class where the client knows it. */
export function errorFromWire(w: WireError): Error {
  let error: Error
  switch (w.name) {
    case 'POSKeyError':
      error = new POSKeyError(w.oid ?? 0n)
      error.message = w.message
      return error
    case 'ConflictError':
    case 'ReadConflictError': {
      const Cls = w.name === 'ConflictError' ? ConflictError : ReadConflictError
      error = new Cls('', { oid: w.oid ?? null, className: w.className ?? null, oldSerial: w.oldSerial ?? null, committedSerial: w.committedSerial ?? null })
      error.message = w.message
      return error
    }
    case 'ReadOnlyError':
      return new ReadOnlyError(w.message)
    case 'StorageTransactionError':
      return new StorageTransactionError(w.message)
    case 'UndoError':
      return new UndoError(w.message)
    case 'ConnectionStateError':
      return new ConnectionStateError(w.message)
    case 'ClientDisconnected':
      return new ClientDisconnected(w.message)
    case 'ProtocolError':
      return new ProtocolError(w.message)
    default:
      error = new POSError(w.message)
      error.name = w.name === 'Error' ? 'POSError' : w.name
      return error
  }
}

export function isBigint(x: unknown): x is bigint {
  return typeof x === 'bigint' && x >= 0n && x <= 0xffff_ffff_ffff_ffffn
}

export function isBytes(x: unknown): x is Uint8Array {
  return x instanceof Uint8Array
}
