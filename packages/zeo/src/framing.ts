// The framing of the wire protocol (see protocol.ts and the package README), without the error
// classes of @wendelin/zodb: the client's I/O worker imports only this, and starts faster for it
// (a worker thread that loads @wendelin/zodb takes 40-130 ms longer to start on this VM).

import { Packr } from 'msgpackr'

/** The protocol version this code speaks (2: adds `loadBeforeMany`). */
export const PROTOCOL_VERSION = 2
/** The oldest version the server still accepts (a version-1 client never sends what 2 added). */
export const MIN_PROTOCOL_VERSION = 1
/** The first element of the client's hello and of the server's welcome. */
export const MAGIC = 'WZEO'
/** Default largest frame either side accepts (a record of a 2 MiB ZBigFile block fits easily). */
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true, moreTypes: false })

/** One MessagePack value, framed: 4-byte big-endian length, then the body. A fresh buffer. */
export function encodeFrame(value: unknown): Uint8Array {
  const body = packr.pack(value)
  const out = new Uint8Array(4 + body.length)
  new DataView(out.buffer).setUint32(0, body.length)
  out.set(body, 4)
  return out
}

/** A frame body's MessagePack value; throws msgpackr's error on malformed bytes. */
export function unpackBody(body: Uint8Array): unknown {
  return packr.unpack(body)
}

/**
 * Splits a byte stream into frame bodies. `push` returns the complete bodies received so far;
 * a length of 0 or above `maxFrame` is an error (the connection must be dropped).
 */
export class FrameReader {
  #chunks: Buffer[] = []
  #buffered = 0
  #need = -1

  constructor(readonly maxFrame: number = DEFAULT_MAX_FRAME) {}

  /** The error a bad length is thrown as. */
  protected error(message: string): Error {
    return new Error(message)
  }

  get buffered(): number {
    return this.#buffered
  }

  /** Whether part of a frame was received (its length, or some of its bytes): `rest()` is not empty. */
  get pending(): boolean {
    return this.#need >= 0 || this.#buffered > 0
  }

  push(chunk: Buffer): Buffer[] {
    this.#chunks.push(chunk)
    this.#buffered += chunk.length
    const out: Buffer[] = []
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < 4) break
        const n = this.#take(4).readUInt32BE(0)
        if (n === 0 || n > this.maxFrame) throw this.error(`frame of ${n} bytes (limit ${this.maxFrame})`)
        this.#need = n
      }
      if (this.#buffered < this.#need) break
      out.push(this.#take(this.#need))
      this.#need = -1
    }
    return out
  }

  /**
   * The bytes received and not returned as a body yet, as they were on the wire (a length already
   * read is put back in front), for another reader to go on from; this reader is left empty.
   */
  rest(): Buffer {
    const parts = this.#need < 0 ? this.#chunks : [Buffer.alloc(4), ...this.#chunks]
    if (this.#need >= 0) parts[0]!.writeUInt32BE(this.#need, 0)
    const out = Buffer.concat(parts)
    this.#chunks = []
    this.#buffered = 0
    this.#need = -1
    return out
  }

  #take(n: number): Buffer {
    const first = this.#chunks[0]!
    let result: Buffer
    if (first.length >= n) {
      result = first.subarray(0, n)
      if (first.length === n) this.#chunks.shift()
      else this.#chunks[0] = first.subarray(n)
    } else {
      result = Buffer.allocUnsafe(n)
      let off = 0
      while (off < n) {
        const c = this.#chunks[0]!
        const k = Math.min(c.length, n - off)
        c.copy(result, off, 0, k)
        off += k
        if (k === c.length) this.#chunks.shift()
        else this.#chunks[0] = c.subarray(k)
      }
    }
    this.#buffered -= n
    return result
  }
}

/** The id of a server message without decoding all of it: body is [id, ...]. -1 if not that shape. */
export function peekId(body: Uint8Array): number {
  if (body.length < 2) return -1
  const h = body[0]!
  if (h < 0x91 || h > 0x9f) return -1 // a fixarray of 1..15 elements
  const b = body[1]!
  if (b < 0x80) return b
  if (b === 0xcc && body.length >= 3) return body[2]!
  if (b === 0xcd && body.length >= 4) return (body[2]! << 8) | body[3]!
  if (b === 0xce && body.length >= 6) return ((body[2]! << 24) >>> 0) + ((body[3]! << 16) | (body[4]! << 8) | body[5]!)
  return -1
}

const INVALIDATE = new TextEncoder().encode('invalidate')

/**
 * The tid in a successful reply `[id, 0, tid]` (isReply) or an invalidation push
 * `[0, "invalidate", tid, oids]`, read from the bytes without decoding the rest (the I/O worker
 * remembers it for reconnecting); null if the frame is not of that shape (an error reply).
 */
export function peekTid(body: Uint8Array, isReply: boolean): bigint | null {
  const h = body[0]
  if (h === undefined || h < 0x93 || h > 0x9f) return null
  let at = 1
  if (isReply) {
    const b = body[1]
    if (b === undefined) return null
    at += b < 0x80 ? 1 : b === 0xcc ? 2 : b === 0xcd ? 3 : b === 0xce ? 5 : 0
    if (at === 1 || body[at++] !== 0x00) return null
  } else {
    if (body[1] !== 0x00 || body[2] !== 0xa0 + INVALIDATE.length) return null
    for (let i = 0; i < INVALIDATE.length; i++) if (body[3 + i] !== INVALIDATE[i]) return null
    at = 3 + INVALIDATE.length
  }
  const t = body[at]
  if ((t !== 0xcf && t !== 0xd3) || body.length < at + 9) return null
  const tid = new DataView(body.buffer, body.byteOffset + at + 1, 8).getBigUint64(0)
  return t === 0xd3 && tid >= 1n << 63n ? null : tid
}

