// The framing of the wire protocol (see protocol.ts and the package README), without the error
// classes of @wendelin/zodb: the client's I/O worker imports only this, and starts faster for it
// (a worker thread that loads @wendelin/zodb takes 40-130 ms longer to start on this VM).

import { Packr, RESERVE_START_SPACE } from 'msgpackr'

/** The protocol version this code speaks (2: adds `loadBeforeMany`). */
export const PROTOCOL_VERSION = 2
/** The oldest version the server still accepts (a version-1 client never sends what 2 added). */
export const MIN_PROTOCOL_VERSION = 1
/** The first element of the client's hello and of the server's welcome. */
export const MAGIC = 'WZEO'
/** Default largest frame either side accepts (a record of a 2 MiB ZBigFile block fits easily). */
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024

/**
 * Big frames, and big byte arrays in a frame: a frame of at least this many bytes is assembled
 * in a buffer of its own as its bytes come (FrameReader.push), and a byte array of at least this
 * many bytes is written as it is, not copied into the frame (frameParts).
 */
export const BIG_FRAME_BYTES = 256 * 1024

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true, moreTypes: false })

/** One MessagePack value, framed: 4-byte big-endian length, then the body. A fresh buffer. */
export function encodeFrame(value: unknown): Uint8Array {
  const body = packr.pack(value)
  const out = new Uint8Array(4 + body.length)
  new DataView(out.buffer).setUint32(0, body.length)
  out.set(body, 4)
  return out
}

/**
 * `value` framed as parts to write to a socket one after the other, without copying big byte
 * arrays: every Uint8Array of BIG_FRAME_BYTES or more inside arrays (a load's record in a reply)
 * goes out as it is, between the encodings of what comes before and after it. encodeFrame
 * copied a 2 MiB record twice (into the encoder's buffer, then into the frame). A part may be a
 * view of the encoder's buffer (never overwritten, but shared): write them, never transfer them.
 */
export function frameParts(value: unknown): Uint8Array[] {
  if (!hasBigBytes(value, 0)) {
    // The length goes into the 4 bytes the encoder leaves free in front: no copy of the body.
    const frame = packr.pack(value, RESERVE_START_SPACE | 4)
    new DataView(frame.buffer, frame.byteOffset, 4).setUint32(0, frame.length - 4)
    // A view keeps the encoder's whole buffer alive while it waits to be written, and that buffer
    // grows to the biggest value encoded: a small reply queued for a client that does not read
    // would hold megabytes its writableLength does not count. Only a frame that is most of its
    // buffer stays a view.
    return [frame.length * 2 >= frame.buffer.byteLength ? frame : new Uint8Array(frame)]
  }
  const parts: Uint8Array[] = []
  let small: Uint8Array[] = [new Uint8Array(4)] // the length, filled in last
  let smallBytes = 4
  const add = (bytes: Uint8Array) => {
    small.push(bytes)
    smallBytes += bytes.length
  }
  const endSmall = () => {
    const joined = new Uint8Array(smallBytes)
    let off = 0
    for (const b of small) {
      joined.set(b, off)
      off += b.length
    }
    parts.push(joined)
    small = []
    smallBytes = 0
  }
  const encode = (v: unknown, depth: number) => {
    if (v instanceof Uint8Array && v.length >= BIG_FRAME_BYTES) {
      const header = new Uint8Array(5)
      header[0] = 0xc6 // bin 32
      new DataView(header.buffer).setUint32(1, v.length)
      add(header)
      endSmall()
      parts.push(v)
    } else if (Array.isArray(v) && depth < MAX_PART_DEPTH && hasBigBytes(v, depth)) {
      const n = v.length
      const header = n < 16 ? Uint8Array.of(0x90 | n) : n < 0x10000 ? Uint8Array.of(0xdc, n >> 8, n & 0xff) : Uint8Array.of(0xdd, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
      add(header)
      for (const item of v) encode(item, depth + 1)
    } else {
      add(packr.pack(v))
    }
  }
  encode(value, 0)
  if (smallBytes > 0) endSmall()
  let length = -4
  for (const p of parts) length += p.length
  new DataView(parts[0]!.buffer, parts[0]!.byteOffset, 4).setUint32(0, length)
  return parts
}

/** How deep in nested arrays frameParts looks for big byte arrays (a reply's records are at 3-4). */
const MAX_PART_DEPTH = 6

function hasBigBytes(v: unknown, depth: number): boolean {
  if (v instanceof Uint8Array) return v.length >= BIG_FRAME_BYTES
  if (!Array.isArray(v) || depth >= MAX_PART_DEPTH) return false
  for (const item of v) if (hasBigBytes(item, depth + 1)) return true
  return false
}

/** A frame body's MessagePack value; throws msgpackr's error on malformed bytes. */
export function unpackBody(body: Uint8Array): unknown {
  return packr.unpack(body)
}

/**
 * Splits a byte stream into frame bodies. `push` returns the complete bodies received so far;
 * a length of 0 or above `maxFrame` is an error (the connection must be dropped).
 *
 * A big frame (BIG_FRAME_BYTES and more: a 2 MiB block's record) that comes in transient
 * chunks is not gathered from copies of them: once its length is read, a buffer of its exact
 * size, its length in front, takes its bytes as they come. Its body is returned as the view after
 * those 4 bytes of a buffer that is nothing else's, which a worker can post as a whole frame
 * without copying it (`wholeFrameOf`). Each of its 64 KiB socket reads was copied twice before
 * (the chunk kept, then the frame gathered), and the frame once more into the batch posted.
 * Chunks the caller gives for keeps are kept until the frame is whole, as always: a peer's
 * length alone then makes this reader allocate nothing (the server reads so, before a client
 * has shown its token; its clients read the server they trust this way).
 */
export class FrameReader {
  #chunks: Buffer[] = []
  #buffered = 0
  #need = -1
  /** The big frame being received: its length, then its body as far as `#bigAt`. */
  #big: Buffer | null = null
  #bigAt = 0

  /** Whether the first frame's length was read (it may have its own, smaller limit). */
  #firstRead = false

  /**
   * `firstMaxFrame`: the limit of the first frame only (a server's, for the handshake of a peer
   * that has not shown its token yet), `maxFrame` that of the others.
   */
  constructor(
    readonly maxFrame: number = DEFAULT_MAX_FRAME,
    readonly firstMaxFrame: number = maxFrame,
  ) {}

  /** The error a bad length is thrown as. */
  protected error(message: string): Error {
    return new Error(message)
  }

  get buffered(): number {
    return this.#buffered + (this.#big === null ? 0 : this.#bigAt - 4)
  }

  /** Whether part of a frame was received (its length, or some of its bytes): `rest()` is not empty. */
  get pending(): boolean {
    return this.#need >= 0 || this.#buffered > 0 || this.#big !== null
  }

  /**
   * The bodies `chunk` completes. `transient`: the caller reuses `chunk`'s memory after this
   * returns (a socket's read buffer), so what is kept of it is copied; otherwise it may be kept
   * as it is, and small bodies may be views into it.
   */
  push(chunk: Buffer, transient = false): Buffer[] {
    const out: Buffer[] = []
    let at = 0
    if (this.#big !== null) {
      at = this.#fillBig(chunk, 0, out)
      if (at === chunk.length) return out
    }
    const rest = at === 0 ? chunk : chunk.subarray(at)
    this.#chunks.push(transient ? Buffer.from(rest) : rest)
    this.#buffered += rest.length
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < 4) break
        const n = this.#take(4).readUInt32BE(0)
        const limit = this.#firstRead ? this.maxFrame : this.firstMaxFrame
        this.#firstRead = true
        if (n === 0 || n > limit) throw this.error(`frame of ${n} bytes (limit ${limit})`)
        this.#need = n
      }
      if (this.#buffered < this.#need) {
        if (transient && this.#need >= BIG_FRAME_BYTES) this.#startBig(out)
        break
      }
      out.push(this.#take(this.#need))
      this.#need = -1
    }
    return out
  }

  /** The big frame of `#need` bytes starts with what is buffered; what comes next goes into it. */
  #startBig(out: Buffer[]): void {
    const n = this.#need
    const big = Buffer.allocUnsafeSlow(4 + n) // an ArrayBuffer of its own: transferable
    big.writeUInt32BE(n, 0)
    this.#big = big
    this.#bigAt = 4
    this.#need = -1
    const kept = this.#chunks
    this.#chunks = []
    this.#buffered = 0
    for (const c of kept) this.#fillBig(c, 0, out)
  }

  /** Copies `chunk` from `from` into the big frame, up to its end: the offset where it stopped. */
  #fillBig(chunk: Buffer, from: number, out: Buffer[]): number {
    const big = this.#big!
    const k = Math.min(chunk.length - from, big.length - this.#bigAt)
    chunk.copy(big, this.#bigAt, from, from + k)
    this.#bigAt += k
    if (this.#bigAt === big.length) {
      out.push(big.subarray(4))
      this.#big = null
    }
    return from + k
  }

  /**
   * The bytes received and not returned as a body yet, as they were on the wire (a length already
   * read is put back in front), for another reader to go on from; this reader is left empty. In
   * a buffer of its own: it is transferred to the worker (a small Buffer of Node's shared pool
   * cannot be; Node 20 copied it, later versions refuse).
   */
  rest(): Buffer {
    let out: Buffer
    if (this.#big !== null) {
      out = Buffer.allocUnsafeSlow(this.#bigAt)
      this.#big.copy(out, 0, 0, this.#bigAt)
      this.#big = null
      return out
    }
    const head = this.#need < 0 ? 0 : 4
    out = Buffer.allocUnsafeSlow(head + this.#buffered)
    if (head > 0) out.writeUInt32BE(this.#need, 0)
    let off = head
    for (const c of this.#chunks) off += c.copy(out, off)
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

/**
 * The whole frame (length and body) a body of FrameReader.push sits in, when that is all its
 * buffer holds (a big frame's: to post without copying); null for a body that shares its buffer.
 */
export function wholeFrameOf(body: Uint8Array): Uint8Array | null {
  if (body.byteOffset !== 4 || body.buffer.byteLength !== body.length + 4) return null
  return new Uint8Array(body.buffer)
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

