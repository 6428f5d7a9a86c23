// The wire framing's two ways around copies of big records: FrameReader assembles a big frame in
// a buffer of its own as its bytes come (from a read buffer reused after each push, too), and
// frameParts writes a big byte array as it is between the encodings around it. Both must give
// exactly the bytes and bodies of the plain way (encodeFrame, frames gathered from kept chunks).
import { expect } from 'chai'
import { BIG_FRAME_BYTES, FrameReader, decodeBody, encodeFrame, frameParts, wholeFrameOf } from '@wendelin/zeo'

/** A deterministic pseudo-random sequence in [0, 1) (xorshift), so failures reproduce. */
function xorshift(seed: number): () => number {
  let x = seed | 0 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 2 ** 32
  }
}

/** `n` bytes of a pattern that tells any two offsets apart (mostly). */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed + (i >> 8)) & 0xff
  return out
}

/** A stream of small and big frames, and the bodies it holds. */
function stream(): { wire: Buffer; bodies: Buffer[] } {
  const frames = [
    encodeFrame([1, 0, 'small']),
    encodeFrame([2, 0, [pattern(BIG_FRAME_BYTES + 1000, 1), 5n, null]]),
    encodeFrame([0, 'invalidate', 7n, [1n, 2n]]),
    encodeFrame([3, 0, [pattern(3 * BIG_FRAME_BYTES, 2), 6n, null]]),
    encodeFrame([4, 0, pattern(100, 3)]),
    encodeFrame([5, 0, [pattern(BIG_FRAME_BYTES - 100, 4), 8n, null]]), // just under: gathered the old way
  ]
  return { wire: Buffer.concat(frames), bodies: frames.map((f) => Buffer.from(f.subarray(4))) }
}

describe('zeo FrameReader: big frames and transient chunks', () => {
  it('gives the same bodies whatever the chunks, kept or reused (scribbled over after each push)', () => {
    const { wire, bodies } = stream()
    const random = xorshift(11)
    for (const transient of [false, true]) {
      for (const maxChunk of [4096, 65536, 300_000, wire.length]) {
        const reader = new FrameReader()
        const got: Buffer[] = []
        const scratch = Buffer.alloc(maxChunk)
        for (let at = 0; at < wire.length; ) {
          // Half of the chunks a few bytes long: lengths and bodies split anywhere.
          const n = Math.min(wire.length - at, 1 + Math.floor(random() * (random() < 0.5 ? 5 : maxChunk)))
          let chunk: Buffer
          if (transient) {
            wire.copy(scratch, 0, at, at + n)
            chunk = scratch.subarray(0, n)
          } else {
            chunk = Buffer.from(wire.subarray(at, at + n))
          }
          got.push(...reader.push(chunk, transient))
          if (transient) scratch.fill(0xee) // the read buffer's next use
          at += n
        }
        expect(reader.pending, `transient ${transient}, chunks up to ${maxChunk}`).to.equal(false)
        expect(got.length).to.equal(bodies.length)
        for (let i = 0; i < bodies.length; i++) expect(Buffer.compare(got[i]!, bodies[i]!), `body ${i}, transient ${transient}, chunks up to ${maxChunk}`).to.equal(0)
      }
    }
  })

  it('gives the same bodies with the stream cut in two anywhere near a frame boundary', () => {
    const { wire, bodies } = stream()
    const scratch = Buffer.alloc(wire.length)
    let boundary = 0
    for (const body of bodies) {
      for (let cut = Math.max(1, boundary - 6); cut <= Math.min(wire.length - 1, boundary + 6); cut++) {
        const reader = new FrameReader()
        const got: Buffer[] = []
        for (const [from, to] of [[0, cut], [cut, wire.length]] as const) {
          wire.copy(scratch, 0, from, to)
          got.push(...reader.push(scratch.subarray(0, to - from), true))
          scratch.fill(0xee)
        }
        expect(got.map((b) => Buffer.from(b)), `cut at ${cut}`).to.deep.equal(bodies)
      }
      boundary += 4 + body.length
    }
  })

  it('hands a big frame out in a buffer of its own (wholeFrameOf), small ones not', () => {
    const { wire } = stream()
    const reader = new FrameReader()
    const got: Buffer[] = []
    for (let at = 0; at < wire.length; at += 65536) got.push(...reader.push(wire.subarray(at, at + 65536), true))
    const whole = got.map((b) => wholeFrameOf(b))
    expect(whole.map((w) => w !== null)).to.deep.equal([false, true, false, true, false, false])
    for (const [i, w] of whole.entries()) {
      if (w === null) continue
      expect(new DataView(w.buffer).getUint32(0)).to.equal(got[i]!.length)
      expect(Buffer.compare(Buffer.from(w.subarray(4)), got[i]!)).to.equal(0)
    }
  })

  it('gives back a big frame received in part, length included, for another reader to finish', () => {
    const { wire, bodies } = stream()
    // Cuts inside the first big frame: just after its length, in its first chunk, deep inside.
    const bigStart = 4 + bodies[0]!.length
    for (const cut of [bigStart + 4, bigStart + 10, bigStart + 70_000, bigStart + 4 + bodies[1]!.length - 1]) {
      const first = new FrameReader()
      const got: Buffer[] = []
      for (let at = 0; at < cut; at += 65536) got.push(...first.push(wire.subarray(at, Math.min(cut, at + 65536)), true))
      expect(first.pending).to.equal(true)
      const second = new FrameReader()
      got.push(...second.push(first.rest()))
      expect(first.pending).to.equal(false)
      for (let at = cut; at < wire.length; at += 65536) got.push(...second.push(wire.subarray(at, Math.min(wire.length, at + 65536)), true))
      expect(got.map((b) => Buffer.from(b)), `cut at ${cut}`).to.deep.equal(bodies)
    }
  })

  it('gives what it holds back in a buffer of its own, which can be transferred (not a view into a pool)', () => {
    const { wire, bodies } = stream()
    const bigStart = 4 + bodies[0]!.length
    for (const cut of [2, 6, bigStart + 2, bigStart + 4, bigStart + 100, bigStart + 300_000]) {
      const reader = new FrameReader()
      reader.push(wire.subarray(0, cut), true)
      const rest = reader.rest()
      expect(rest.length).to.be.above(0)
      expect([rest.byteOffset, rest.buffer.byteLength], `cut at ${cut}`).to.deep.equal([0, rest.length])
    }
  })

  it('allocates nothing for a big frame announced in chunks given for keeps (a server before the token)', () => {
    const header = Buffer.alloc(4)
    header.writeUInt32BE(64 * 1024 * 1024)
    const readers = Array.from({ length: 8 }, () => new FrameReader())
    globalThis.gc?.()
    const before = process.memoryUsage().arrayBuffers
    for (const r of readers) r.push(Buffer.concat([header, Buffer.alloc(10)]))
    const grown = process.memoryUsage().arrayBuffers - before
    expect(grown, 'bytes allocated for 8 announced 64 MiB frames').to.be.below(1 << 20)
    for (const r of readers) expect(r.pending).to.equal(true)
  })

  it('still refuses a frame longer than its limit, big or not', () => {
    const reader = new FrameReader(BIG_FRAME_BYTES * 2)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(BIG_FRAME_BYTES * 2 + 1)
    expect(() => reader.push(header, true)).to.throw(/frame of \d+ bytes \(limit/)
  })
})

describe('zeo frameParts', () => {
  it('writes exactly the bytes of encodeFrame, big byte arrays as they are, not copied', () => {
    const big = pattern(BIG_FRAME_BYTES, 5)
    const bigger = pattern(2 * 1024 * 1024, 6)
    const values: unknown[] = [
      [1, 0, 'no big bytes'],
      [2, 0, [big, 12345678901234n, null]],
      [3, 0, [[bigger, 1n, null], [[7n, big, 2n, 3n]]]],
      [4, 0, [[9n, pattern(10, 1), 1n, null], [10n, bigger, 2n, null], [11n, pattern(20, 2), 3n, 4n]]],
      [5, 0, Array.from({ length: 20 }, (_, i) => (i === 17 ? big : i))], // an array16 header around it
      [6, 0, { record: bigger }], // inside a map: encoded the usual way
    ]
    for (const [i, value] of values.entries()) {
      const parts = frameParts(value)
      const joined = Buffer.concat(parts)
      expect(Buffer.compare(joined, Buffer.from(encodeFrame(value))), `value ${i}`).to.equal(0)
      expect(decodeBody(joined.subarray(4))).to.deep.equal(decodeBody(encodeFrame(value).subarray(4)))
    }
    // The big arrays are parts of their own, the very objects given.
    expect(frameParts([2, 0, [big, 1n, null]])).to.include(big)
    expect(frameParts([3, 0, [[7n, bigger, 2n, 3n]]])).to.include(bigger)
  })

  it('keeps no buffer alive many times the size of a small frame (a reply queued for a client that does not read)', () => {
    // One big encoding grows the encoder's buffer to its size, and small encodings follow in it.
    frameParts([1, 0, Array.from({ length: 40 }, () => new Uint8Array(BIG_FRAME_BYTES - 1000))])
    for (const value of [[2, 0, 123n], [3, 0, 'x'.repeat(5000)]]) {
      const parts = frameParts(value)
      const bytes = parts.reduce((n, p) => n + p.length, 0)
      for (const p of parts) expect(p.buffer.byteLength, 'bytes a small frame keeps alive').to.be.at.most(2 * bytes)
      expect(Buffer.compare(Buffer.concat(parts), Buffer.from(encodeFrame(value)))).to.equal(0)
    }
  })

  it('leaves the parts it gave alone when it encodes again (they may wait to be written)', () => {
    const first = frameParts([1, 0, 'first reply, still queued on its socket'])
    const snapshot = Buffer.concat(first.map((p) => Buffer.from(p)))
    for (let i = 0; i < 2000; i++) frameParts([i, 0, pattern(1000 + (i % 7) * 500, i)])
    expect(Buffer.compare(Buffer.concat(first), snapshot)).to.equal(0)
  })
})
