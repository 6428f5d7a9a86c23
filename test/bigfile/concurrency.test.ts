// Loads run with the virtmem lock released (seed commit f49c11a3): a load may race an
// invalidation or another thread's fault on the same page. The pattern file's gate holds a
// load back so each race is staged deterministically; faults come from threadpool threads.
import { expect } from 'chai'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import zlib from 'node:zlib'

import { FileBigFile, FileH, RAM, virtmemStats } from '@wendelin/bigfile'

import { PS, patternFileH, tmpDir, until } from './helpers.js'

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
})
