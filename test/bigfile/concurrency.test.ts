// Loads run with the virtmem lock released (seed commit f49c11a3): a load may race an
// invalidation or another thread's fault on the same page. The pattern file's gate holds a
// load back so each race is staged deterministically; faults come from threadpool threads.
import { expect } from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import zlib from 'node:zlib'

import { FileBigFile, FileH, RAM, WRITEOUT_MARKSTORED, virtmemStats } from '@wendelin/bigfile'

import { PS, patternFileH, stressAddon, tmpDir, until } from './helpers.js'

const deflate = promisify(zlib.deflate)

function inflated(out: Buffer): Buffer {
  return zlib.inflateSync(out)
}

describe('virtmem: concurrent loads', () => {
  it('reloads a page invalidated while it was loading', async () => {
    const { fh } = patternFileH(4)
    const m = fh.mmap(0, 2)
    fh.patternControl('gate', false)
    const s0 = virtmemStats()
    // a threadpool thread faults on page 1; its load starts with seed 100 and waits at the gate
    const result = deflate(m.bytes().subarray(PS, 2 * PS))
    await until(() => fh.patternControl('status').waitingAtGate === 1)
    expect(fh.pageState(1)).to.equal('loading')
    fh.invalidatePage(1) // the file changed under the load
    fh.patternControl('seed', 200)
    expect(fh.pageState(1)).to.equal('empty')
    fh.patternControl('gate', true)
    const data = inflated(await result)
    expect(data[0]).to.equal(201, 'the stale load (101) must not be shown')
    expect(data[PS - 1]).to.equal(201)
    const s1 = virtmemStats()
    expect(s1.loadsInvalidated - s0.loadsInvalidated).to.equal(1)
    expect(s1.loads - s0.loads).to.equal(2)
    expect(fh.pageState(1)).to.equal('loaded')
    m.unmap()
    fh.close()
  })

  it('loads a page once when two threads fault on it', async () => {
    const { fh } = patternFileH(4)
    const m = fh.mmap(0, 1)
    fh.patternControl('gate', false)
    const s0 = virtmemStats()
    const first = deflate(m.bytes())
    await until(() => fh.patternControl('status').waitingAtGate === 1)
    const second = deflate(m.bytes().subarray(100))
    await until(() => virtmemStats().loadWaits > s0.loadWaits) // the second thread waits for the first's load
    fh.patternControl('gate', true)
    const [a, b] = await Promise.all([first, second])
    expect(inflated(a)).to.deep.equal(Buffer.alloc(PS, 100))
    expect(inflated(b)).to.deep.equal(Buffer.alloc(PS - 100, 100))
    expect(fh.patternControl('status').loads).to.equal(1)
    expect(virtmemStats().loads - s0.loads).to.equal(1)
    m.unmap()
    fh.close()
  })

  it('loads a page once when the main thread and a threadpool thread both fault on it (loader workers)', async () => {
    const dir = tmpDir()
    const file = path.join(dir, 'f.bin')
    fs.writeFileSync(file, Buffer.alloc(2 * PS, 5))
    const ram = new RAM({ pageSize: PS, limit: 4 * PS })
    const fh = new FileH(new FileBigFile(file, { blksize: PS }), { ram })
    const m = fh.mmap(0, 2)
    const s0 = virtmemStats()
    const background = deflate(m.bytes().subarray(0, PS))
    const b = m.bytes()
    expect(b[10]).to.equal(5) // races the threadpool thread for page 0
    expect(inflated(await background)).to.deep.equal(Buffer.alloc(PS, 5))
    expect(virtmemStats().loads - s0.loads).to.equal(1)
    m.unmap()
    fh.close()
    fs.rmSync(dir, { recursive: true })
  })

  it('keeps data right while threadpool readers, eviction and invalidation race (stress)', async () => {
    // RAM of 3 pages, 16 pages read by 8 concurrent zlib jobs: pages are evicted under readers
    // all the time, and the main thread invalidates pages meanwhile. The file never changes,
    // so every byte read must be its page's pattern.
    const { ram, fh } = patternFileH(3)
    const m = fh.mmap(0, 16)
    const b = m.bytes()
    const s0 = virtmemStats()
    const jobs: Array<Promise<Buffer>> = []
    const ranges: Array<[number, number]> = []
    for (let j = 0; j < 8; j++) {
      const first = (j * 5) % 16
      const len = Math.min(6, 16 - first)
      ranges.push([first, len])
      jobs.push(deflate(b.subarray(first * PS, (first + len) * PS)))
    }
    let done = false
    const all = Promise.all(jobs).finally(() => {
      done = true
    })
    let invalidations = 0
    while (!done) {
      fh.invalidatePage(invalidations % 16)
      invalidations++
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
    const outs = await all
    outs.forEach((out, j) => {
      const [first, len] = ranges[j]!
      const data = inflated(out)
      for (let k = 0; k < len; k++)
        expect(data.subarray(k * PS, (k + 1) * PS).every((v) => v === 100 + first + k)).to.equal(true, `job ${j} page ${first + k}`)
    })
    expect(virtmemStats().reclaimed - s0.reclaimed).to.be.greaterThan(0)
    expect(ram.stats().bytesPeak).to.be.at.most(3 * PS + 8 * PS, 'at most one page per reader above the limit (loads in flight)')
    m.unmap()
    fh.close()
  })

  it('keeps data right while plain threads read pages whose page tables move under them (stress)', async () => {
    // Three plain threads (no V8) read 16 mapped pages at random, each read checked, while the
    // main thread moves those pages around as fast as it can: invalidation and eviction unmap
    // a page from every mapping (its page tables go back to the RAM's read alias: the address
    // stays mapped without them until it is made inaccessible, or on kernels before 5.13 is
    // unmapped for a moment), a second mapping of the same pages takes them in and lets them
    // go, writes dirty them (read-write page tables write-protected on the way back), discard
    // and writeout drop or clean them. A reader landing in such a moment reads the page from
    // its frame, or in a hole must wait and retry (SEGV_MAPERR, see Virtmem::waitOutHole): a
    // handler that passes it on kills the process here.
    const n = 16
    const { ram, fh } = patternFileH(8) // room for 2 dirty pages and 3 readers' loads: no stretching
    const m = fh.mmap(0, n)
    const expected = Uint8Array.from({ length: n }, (_, pg) => (100 + pg) & 0xff)
    const addon = stressAddon()
    const s0 = virtmemStats()
    const readers = addon.stressReadersStart(m.buffer, PS, expected, 3)
    let result: { reads: number; mismatches: number; firstMismatch: string }
    let rounds = 0
    try {
      // 1.5 s (where holes happen, readers hit a few a second)
      const start = Date.now()
      const more = () => Date.now() - start < 1500
      while (more()) {
        const pg = (rounds * 7) % n
        fh.invalidatePage(pg)
        const m2 = fh.mmap(0, n)
        const b2 = m2.bytes()
        expect(b2[pg * PS + 1]).to.equal(expected[pg])
        b2[pg * PS] = expected[pg]! // dirties it; the same byte, so readers' checks still hold
        b2[((pg + 5) % n) * PS + 7] = expected[(pg + 5) % n]!
        m2.unmap()
        if (rounds % 3 === 0) fh.dirtyDiscard()
        else if (rounds % 3 === 1) fh.dirtyWriteout(WRITEOUT_MARKSTORED)
        else ram.reclaim(2)
        rounds++
        if (rounds % 64 === 0) await new Promise<void>((resolve) => setImmediate(resolve))
      }
    } finally {
      result = addon.stressReadersStop(readers)
    }
    expect(result.mismatches).to.equal(0, result.firstMismatch)
    expect(result.reads).to.be.greaterThan(1000)
    const s1 = virtmemStats()
    expect(s1.faults - s0.faults).to.be.greaterThan(rounds)
    expect(rounds).to.be.greaterThan(10)
    m.unmap()
    fh.dirtyDiscard()
    fh.close()
  })
})
