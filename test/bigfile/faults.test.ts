// Where faults come from: JIT code, C++ builtins, libuv threadpool threads, system calls —
// and faults that are not ours (WebAssembly traps) still reach their handler.
import { expect } from 'chai'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { Worker } from 'node:worker_threads'
import zlib from 'node:zlib'

import { FileBigFile, FileH, RAM, virtmemStats } from '@wendelin/bigfile'

import { PS, here, patternFileH, tmpDir } from './helpers.js'

const deflate = promisify(zlib.deflate)

// The WebAssembly global, typed just enough (the DOM lib that declares it is not in use).
interface WasmApi {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object) => { exports: Record<string, unknown> }
  RuntimeError: new (message?: string) => Error
}
const WebAssembly = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

describe('virtmem: faults from everywhere', () => {
  it('serves faults from optimized JIT code', () => {
    const { fh } = patternFileH(4)
    const m = fh.mmap(0, 64)
    const f64 = new Float64Array(m.buffer)
    const perPage = PS / 8
    // Sum one element per page: warm the function up on loaded pages so it is optimized, then
    // let it run into pages that fault.
    function sumPages(a: Float64Array, from: number, to: number): number {
      let s = 0
      for (let pg = from; pg < to; pg++) s += a[pg * perPage]!
      return s
    }
    const first = sumPages(f64, 0, 2)
    for (let i = 0; i < 20000; i++) sumPages(f64, 0, 2)
    const faults = virtmemStats().faults
    const sum = sumPages(f64, 2, 64)
    expect(virtmemStats().faults - faults).to.equal(62)
    // a page of bytes v reads as the double with all bytes v
    const dbl = (v: number) => new Float64Array(new Uint8Array(8).fill(v).buffer)[0]!
    let expected = 0
    for (let pg = 2; pg < 64; pg++) expected += dbl(100 + pg)
    expect(sum).to.equal(expected)
    expect(first).to.equal(dbl(100) + dbl(101))
    m.unmap()
    fh.close()
  })

  it('serves faults from C++ builtins: crypto hashing and TypedArray.slice', () => {
    const { fh } = patternFileH(4)
    const m = fh.mmap(0, 4)
    const b = m.bytes()
    const digest = crypto.createHash('sha256').update(b.subarray(PS, 2 * PS)).digest('hex')
    expect(digest).to.equal(crypto.createHash('sha256').update(Buffer.alloc(PS, 101)).digest('hex'))
    const copy = b.slice(2 * PS + 10, 3 * PS + 10) // spans pages 2 and 3, both unloaded
    expect(copy[0]).to.equal(102)
    expect(copy[PS - 1]).to.equal(103)
    expect(fh.pageState(3)).to.equal('loaded')
    m.unmap()
    fh.close()
  })

  it('serves faults from libuv threadpool threads (zlib)', async () => {
    const { fh } = patternFileH(4)
    const m = fh.mmap(0, 4)
    const out = await deflate(m.bytes().subarray(PS, 3 * PS))
    const expected = Buffer.concat([Buffer.alloc(PS, 101), Buffer.alloc(PS, 102)])
    expect(Buffer.compare(zlib.inflateSync(out), expected)).to.equal(0)
    m.unmap()
    fh.close()
  })

  it('serves faults in a worker thread that maps a file of its own', async () => {
    const dir = tmpDir()
    const file = path.join(dir, 'w.bin')
    fs.writeFileSync(file, Buffer.alloc(6 * PS, 3))
    const worker = new Worker(path.join(here, 'fixtures', 'worker-reader.js'), {
      workerData: { path: file, blksize: PS, pages: 6 },
    })
    const sum = await new Promise<number>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    })
    await worker.terminate()
    expect(sum).to.equal((3 * (6 * PS)) / 4096)
    fs.rmSync(dir, { recursive: true })
  })

  it('still lets a WebAssembly out-of-bounds access trap', () => {
    // (module (memory 1) (func (export "load") (param i32) (result i32) local.get 0 i32.load))
    const wasm = new Uint8Array([
      0, 97, 115, 109, 1, 0, 0, 0, 1, 6, 1, 96, 1, 127, 1, 127, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 8, 1, 4, 108, 111, 97,
      100, 0, 0, 10, 9, 1, 7, 0, 32, 0, 40, 2, 0, 11,
    ])
    const { fh } = patternFileH(2)
    const m = fh.mmap(0, 1) // our handler is installed and has mappings to look at
    expect(m.bytes()[0]).to.equal(100)
    const load = new WebAssembly.Instance(new WebAssembly.Module(wasm)).exports.load as (addr: number) => number
    expect(load(0)).to.equal(0)
    expect(() => load(1 << 20)).to.throw(WebAssembly.RuntimeError, /out of bounds/)
    m.unmap()
    fh.close()
  })

  it('needs prefault before handing mapped memory to system calls (EFAULT otherwise)', () => {
    const dir = tmpDir()
    const ram = new RAM({ pageSize: PS, limit: 8 * PS })
    const src = path.join(dir, 'src.bin')
    fs.writeFileSync(src, Buffer.alloc(4 * PS, 9))
    const fh = new FileH(new FileBigFile(src, { blksize: PS }), { ram })
    const m = fh.mmap(0, 4)
    const b = m.bytes()
    const fd = fs.openSync(path.join(dir, 'out.bin'), 'w')
    const zero = fs.openSync('/dev/zero', 'r')

    expect(() => fs.writeSync(fd, b.subarray(0, 100))).to.throw(/EFAULT/)
    m.prefault(0, 100)
    expect(fs.writeSync(fd, b.subarray(0, 100))).to.equal(100)

    // the kernel writing into a loaded but clean (read-only) page fails too
    m.prefault(PS, PS)
    expect(() => fs.readSync(zero, b.subarray(PS, PS + 50))).to.throw(/EFAULT/)
    m.prefault(PS, PS, { write: true })
    expect(fh.isDirty(1)).to.equal(true)
    expect(fs.readSync(zero, b.subarray(PS, PS + 50))).to.equal(50)
    expect(b[PS]).to.equal(0)
    expect(b[PS + 50]).to.equal(9)
    expect(fh.isDirty(2)).to.equal(false)

    fs.closeSync(fd)
    fs.closeSync(zero)
    expect(fs.readFileSync(path.join(dir, 'out.bin'))).to.deep.equal(Buffer.alloc(100, 9))
    m.unmap()
    fh.dirtyDiscard()
    fh.close()
    fs.rmSync(dir, { recursive: true })
  })
})
