// FileBigFile end to end through loader workers: data round trips, a file 4x the RAM limit,
// async loads, retries of transient errors, and the fatal end of a load that cannot succeed.
import { expect } from 'chai'
import fs from 'node:fs'
import path from 'node:path'

import { FileBigFile, FileH, PatternBigFile, RAM, loaderCount, virtmemStats } from '@wendelin/bigfile'

import { BrokenFile, FlakyFile, GatedFile, SlowFile, TracedFile } from './fixtures/files.js'
import { runFixture, tmpDir, until } from './helpers.js'

const MiB = 1024 * 1024

/**
 * Resident shared memory of this process, each page counted once: RAM frames are mapped twice
 * (the loaders' alias and the mapping), which RssShmem would count twice and Pss_Shmem does not.
 */
function shmemBytes(): number {
  const rollup = fs.readFileSync('/proc/self/smaps_rollup', 'utf8')
  const m = /Pss_Shmem:\s+(\d+) kB/.exec(rollup)
  if (!m) throw new Error('no Pss_Shmem in /proc/self/smaps_rollup')
  return Number(m[1]) * 1024
}

for (const mode of ['load', 'overlay'] as const) describe(`FileBigFile, ${mode} mode`, () => {
  let dir: string
  beforeEach(() => {
    dir = tmpDir(true)
  })
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('reads and writes a file 4x larger than the RAM limit, end to end, within the limit', function () {
    const blksize = 1 * MiB
    const limit = 8 * MiB
    const size = 32 * MiB
    const file = path.join(dir, 'big.bin')
    const ram = new RAM({ pageSize: blksize, limit })
    const fh = new FileH(new FileBigFile(file, { blksize }), { ram, mode })
    const m = fh.mmap(0, size / blksize)
    const u32 = new Uint32Array(m.buffer)
    const shmemBefore = shmemBytes()
    let maxShmem = 0

    // write: every word holds its index; write out every 4 pages so dirty pages become
    // evictable (a transaction's changes must fit in RAM, the rest is reclaimed)
    const wordsPerPage = blksize / 4
    for (let pg = 0; pg < size / blksize; pg++) {
      for (let i = pg * wordsPerPage; i < (pg + 1) * wordsPerPage; i++) u32[i] = i
      if (pg % 4 === 3) {
        fh.dirtyWriteout()
        maxShmem = Math.max(maxShmem, shmemBytes())
      }
    }
    expect(fs.statSync(file).size).to.equal(size)
    // read it all back through the mapping
    let bad = 0
    for (let i = 0; i < size / 4; i++) {
      if (u32[i] !== i) bad++
      if (i % wordsPerPage === 0) maxShmem = Math.max(maxShmem, shmemBytes())
    }
    expect(bad).to.equal(0)
    const st = ram.stats()
    expect(st.bytesPeak).to.be.at.most(limit)
    expect(st.bytesInUse + st.bytesWarm).to.be.at.most(limit)
    // resident shared memory of this process (mapped frames) grew by no more than the limit
    expect(maxShmem - shmemBefore).to.be.at.most(limit)
    // and the file itself holds the data
    const fd = fs.openSync(file, 'r')
    const probe = Buffer.alloc(8)
    fs.readSync(fd, probe, 0, 8, 20 * MiB)
    fs.closeSync(fd)
    expect(probe.readUInt32LE(0)).to.equal((20 * MiB) / 4)
    m.unmap()
    fh.close()
  })

  it('reads beyond the end of the file as zeros and grows the file on writeout', () => {
    const blksize = 64 * 1024
    const file = path.join(dir, 'short.bin')
    fs.writeFileSync(file, Buffer.from('hello'))
    const ram = new RAM({ pageSize: blksize, limit: 4 * blksize })
    const fh = new FileH(new FileBigFile(file, { blksize }), { ram, mode })
    const m = fh.mmap(0, 3)
    const b = m.bytes()
    expect(Buffer.from(b.subarray(0, 6)).toString('latin1')).to.equal('hello\0')
    expect(b[2 * blksize + 1]).to.equal(0)
    b[2 * blksize + 1] = 33
    fh.dirtyWriteout()
    expect(fs.statSync(file).size).to.equal(3 * blksize)
    expect(fs.readFileSync(file)[2 * blksize + 1]).to.equal(33)
    m.unmap()
    fh.close()
  })

  it('loads a range asynchronously with fileh.load, without faulting', async () => {
    const blksize = 64 * 1024
    const file = path.join(dir, 'f.bin')
    fs.writeFileSync(file, Buffer.alloc(4 * blksize, 3))
    const ram = new RAM({ pageSize: blksize, limit: 8 * blksize })
    const fh = new FileH(new FileBigFile(file, { blksize }), { ram, mode })
    await fh.load({ pgoffset: 1, pglen: 2 })
    expect([0, 1, 2, 3].map((pg) => fh.pageState(pg))).to.deep.equal(['empty', 'loaded', 'loaded', 'empty'])
    const m = fh.mmap(0, 4)
    const loads = virtmemStats().loads
    expect(m.bytes()[blksize]).to.equal(3)
    expect(virtmemStats().loads).to.equal(loads, 'already loaded: the fault only maps it')
    m.unmap()
    fh.close()
  })

  it('writes, discards, stores and invalidates blocks; the file holds what was stored', () => {
    const blksize = 64 * 1024
    const file = path.join(dir, 'f.bin')
    fs.writeFileSync(file, Buffer.alloc(4 * blksize, 1))
    const ram = new RAM({ pageSize: blksize, limit: 8 * blksize })
    const fh = new FileH(new FileBigFile(file, { blksize }), { ram, mode })
    const m = fh.mmap(0, 4)
    const b = m.bytes()
    expect(b[blksize + 3]).to.equal(1)
    b[blksize + 3] = 2
    expect(b[blksize + 4]).to.equal(1, 'the rest of the block is the file data')
    expect(fh.dirtyPages()).to.deep.equal([1])
    expect(fs.readFileSync(file)[blksize + 3]).to.equal(1, 'not stored yet')

    // a second mapping of the same block sees the change
    const m2 = fh.mmap(1, 1)
    expect(m2.bytes()[3]).to.equal(2)
    m2.unmap()

    fh.dirtyDiscard()
    expect(b[blksize + 3]).to.equal(1)
    expect(fh.dirtyPages()).to.deep.equal([])

    b[2 * blksize] = 9
    fh.dirtyWriteout()
    expect(fh.dirtyPages()).to.deep.equal([])
    expect(fs.readFileSync(file)[2 * blksize]).to.equal(9)
    expect(b[2 * blksize]).to.equal(9)

    // the file changes behind our back: an invalidated block shows the new data
    const fd = fs.openSync(file, 'r+')
    fs.writeSync(fd, Buffer.from([7]), 0, 1, 3 * blksize)
    fs.closeSync(fd)
    fh.invalidatePage(3)
    expect(b[3 * blksize]).to.equal(7)

    expect(() => fh.close()).to.throw(/still live/)
    m.unmap()
    fh.close()
    expect(ram.stats().bytesInUse).to.equal(0)
  })

  it('keeps dirty data across unmap and a new mapping', () => {
    const blksize = 64 * 1024
    const file = path.join(dir, 'f.bin')
    fs.writeFileSync(file, Buffer.alloc(2 * blksize, 1))
    const ram = new RAM({ pageSize: blksize, limit: 8 * blksize })
    const fh = new FileH(new FileBigFile(file, { blksize }), { ram, mode })
    let m = fh.mmap(0, 2)
    m.bytes()[blksize] = 5
    m.unmap()
    m = fh.mmap(0, 2)
    expect(m.bytes()[blksize]).to.equal(5)
    expect(m.bytes()[0]).to.equal(1)
    m.unmap()
    fh.dirtyDiscard()
    fh.close()
  })
})

describe('FileBigFile: loads through loader workers', () => {
  let dir: string
  beforeEach(() => {
    dir = tmpDir()
  })
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('reads ahead of sequential faults, loading each block once; close waits for loads under way', () => {
    const blksize = 64 * 1024
    const file = path.join(dir, 'seq.bin')
    const data = Buffer.alloc(16 * blksize)
    for (let b = 0; b < 16; b++) data.fill(b + 1, b * blksize, (b + 1) * blksize)
    fs.writeFileSync(file, data)
    const ram = new RAM({ pageSize: blksize, limit: 8 * blksize })
    const fh = new FileH(new FileBigFile(file, { blksize }), { ram })
    const s0 = virtmemStats()
    let m = fh.mmap(0, 16)
    let b = m.bytes()
    for (let pg = 0; pg < 16; pg++) expect(b[pg * blksize + 5]).to.equal(pg + 1)
    const s1 = virtmemStats()
    expect(s1.readaheads - s0.readaheads).to.be.greaterThan(0)
    expect(s1.loads - s0.loads).to.equal(16, 'read ahead pages are not loaded again')
    expect(ram.stats().bytesPeak).to.be.at.most(8 * blksize)
    m.unmap()
    // stop in the middle of a sequential read: the pages read ahead may still be loading
    fh.invalidatePage(0)
    fh.invalidatePage(1)
    fh.invalidatePage(2)
    ram.reclaim()
    m = fh.mmap(0, 16)
    b = m.bytes()
    expect(b[0] + b[blksize] + b[2 * blksize]).to.equal(1 + 2 + 3)
    m.unmap()
    fh.close()
    expect(ram.stats().bytesInUse).to.equal(0)
  })

  /** Pages 0 and 1 read in sequence, so pages 2 and 3 are read ahead and held at `gate`. */
  function readAheadHeldAtGate(gateName: string) {
    const blksize = 64 * 1024
    const gate = path.join(dir, gateName)
    const ram = new RAM({ pageSize: blksize, limit: 8 * blksize })
    const fh = new FileH(new GatedFile({ blksize, gate, firstGated: 2 }), { ram })
    const m = fh.mmap(0, 8)
    const b = m.bytes()
    expect(b[0]).to.equal(1)
    expect(b[blksize]).to.equal(2)
    expect(fh.pageState(2)).to.equal('loading')
    return { gate, ram, fh, m }
  }

  it('waits in close for pages still being read ahead', () => {
    const { gate, ram, fh, m } = readAheadHeldAtGate('gate')
    m.unmap()
    fs.writeFileSync(gate, '') // a loader worker polls for it: close must wait, not fail
    fh.close()
    expect(ram.stats().bytesInUse).to.equal(0)
  })

  it('waits in close for read-ahead loads of pages invalidated meanwhile, so the RAM closes right after', () => {
    const { gate, ram, fh, m } = readAheadHeldAtGate('gate-invalidated')
    expect(fh.pageState(3)).to.equal('loading')
    fh.invalidatePage(2) // out of the handle's pages, but their loads still hold RAM frames
    fh.invalidatePage(3)
    m.unmap()
    fs.writeFileSync(gate, '') // a loader polls for it every 2 ms
    fh.close()
    ram.close() // no frame left: close did wait for both loads
    expect(ram.isClosed).to.equal(true)
  })

  it('serves a fault before the readahead loads queued ahead of it', () => {
    // Pages 0, 1 read in sequence queue up to 8 pages of readahead (slow loads: 40 ms each);
    // a fault far away then waits for a loader, but only until one is free: its load goes
    // ahead of the queued readahead, not behind all of it.
    const blksize = 64 * 1024
    const log = path.join(dir, 'slow.log')
    fs.writeFileSync(log, '')
    const ram = new RAM({ pageSize: blksize, limit: 64 * blksize })
    const fh = new FileH(new SlowFile({ blksize, slowFrom: 2, slowTo: 40, delayMs: 40, log }), { ram })
    const m = fh.mmap(0, 64)
    const b = m.bytes()
    expect(b[0]).to.equal(1)
    expect(b[blksize]).to.equal(2) // sequential: pages 2.. are read ahead
    let queued = 0
    for (let pg = 2; pg < 12; pg++) if (fh.pageState(pg) === 'loading') queued++
    expect(queued).to.be.at.least(4)
    expect(b[50 * blksize]).to.equal(51)
    const order = fs.readFileSync(log, 'utf8').trim().split('\n').map(Number)
    const at = order.indexOf(50)
    // 0, 1, then at most one slow load per loader worker before it
    expect(at).to.be.within(2, 2 + loaderCount(), `completion order ${order.join(' ')}`)
    m.unmap()
    fh.close()
  })

  it('rejects fileh.load with the backend error; the page stays unloaded', async () => {
    const ram = new RAM({ pageSize: 64 * 1024, limit: 4 * 64 * 1024 })
    const fh = new FileH(new BrokenFile({ blksize: 64 * 1024, message: 'backend is down' }), { ram })
    let error: unknown
    try {
      await fh.load({ pgoffset: 3, pglen: 1 })
    } catch (e) {
      error = e
    }
    expect(error).to.be.instanceOf(Error)
    expect((error as Error).message).to.match(/backend is down/)
    expect(fh.pageState(3)).to.equal('empty')
    fh.close()
  })

  it('retries a load that fails with a transient error', async () => {
    const marker = path.join(dir, 'attempts')
    const ram = new RAM({ pageSize: 64 * 1024, limit: 4 * 64 * 1024 })
    const fh = new FileH(new FlakyFile({ blksize: 64 * 1024, failures: 2, marker }), { ram })
    const m = fh.mmap(0, 1)
    expect(m.bytes()[0]).to.equal(77) // a fault: served after two transient failures
    expect(fs.readFileSync(marker, 'utf8')).to.equal('xxx')
    m.unmap()
    fh.close()
  })

  it('closes the loaders\' instance of a file when its handle closes', async () => {
    const marker = path.join(dir, 'trace')
    fs.writeFileSync(marker, '')
    const ram = new RAM({ pageSize: 64 * 1024, limit: 4 * 64 * 1024 })
    const fh = new FileH(new TracedFile({ blksize: 64 * 1024, marker }), { ram })
    const m = fh.mmap(0, 2)
    expect(m.bytes()[0]).to.equal(55)
    expect(m.bytes()[64 * 1024]).to.equal(55)
    expect(fs.readFileSync(marker, 'utf8')).to.match(/^[owW]+$/, 'opened (and warmed) by the loaders, not closed yet')
    m.unmap()
    fh.close()
    const count = (c: string) => fs.readFileSync(marker, 'utf8').split(c).length - 1
    await until(() => count('c') >= count('o')) // each loader gets the close message
    expect(count('c')).to.equal(count('o'), `every instance opened was closed once: ${fs.readFileSync(marker, 'utf8')}`)
  })

  it('opens and warms the file in every loader when the handle opens, before any load', async () => {
    const marker = path.join(dir, 'trace')
    fs.writeFileSync(marker, '')
    const ram = new RAM({ pageSize: 64 * 1024, limit: 4 * 64 * 1024 })
    const fh = new FileH(new TracedFile({ blksize: 64 * 1024, marker }), { ram })
    const count = (c: string) => fs.readFileSync(marker, 'utf8').split(c).length - 1
    await until(() => count('W') === loaderCount())
    expect(fs.readFileSync(marker, 'utf8')).to.match(/^(o|w|W)+$/, 'no load, no close')
    expect(count('o')).to.equal(loaderCount(), 'one instance per loader')
    fh.close()
    await until(() => count('c') >= count('o'))
    expect(count('c')).to.equal(count('o'))
  })

  it('closes a loader\'s instance whose warm-up is still under way when the handle closes', async () => {
    const marker = path.join(dir, 'trace')
    fs.writeFileSync(marker, '')
    const ram = new RAM({ pageSize: 64 * 1024, limit: 4 * 64 * 1024 })
    const fh = new FileH(new TracedFile({ blksize: 64 * 1024, marker, warmMs: 300 }), { ram })
    const count = (c: string) => fs.readFileSync(marker, 'utf8').split(c).length - 1
    await until(() => count('w') === loaderCount())
    fh.close()
    await until(() => count('c') === count('o'))
    expect(count('W'), 'closed before the warm-ups ended').to.equal(0)
    await until(() => count('W') === loaderCount()) // the warm-ups end on closed instances, harmlessly
    expect(count('c')).to.equal(count('o'), `every instance opened was closed once: ${fs.readFileSync(marker, 'utf8')}`)
  })

  it('ends the process with a message naming file, block and cause when a load cannot succeed', () => {
    const r = runFixture('fatal-load')
    expect(r.status).to.equal(70, r.stderr)
    expect(r.stderr).to.match(/FATAL: cannot load block 5 of BrokenFile .*: Error: disk on fire/)
    expect(r.stdout).to.not.include('wrong data')
  })

  it('ends the process when a loadblk faults on mapped memory itself (it would wait for itself)', () => {
    const r = runFixture('loader-fault', [path.join(dir, 'inner.bin')])
    expect(r.status).to.equal(70, r.stderr)
    expect(r.stderr).to.match(/FATAL: cannot load block 0 of FileBigFile .*inner\.bin.*: page fault inside a loader worker/)
    expect(r.stdout).to.equal('')
  })

  it('ends the process naming the RAM hard cap when dirty pages exceed it', () => {
    const r = runFixture('hard-cap')
    expect(r.status).to.equal(70, r.stderr)
    expect(r.stderr).to.match(/warning: RAM limit of 196608 bytes reached with only dirty pages left/)
    expect(r.stderr).to.match(/FATAL: RAM hard cap of 327680 bytes reached/)
    expect(r.stdout).to.equal('dirtied 5\n')
  })

  it('exits cleanly with live mappings and running loader workers', () => {
    const r = runFixture('exit-with-mappings', [path.join(dir, 'x.bin')])
    expect(r.stderr).to.not.match(/uv_loop_close|Assertion|abort/i)
    expect(r.status).to.equal(0, r.stderr)
    expect(r.stdout).to.equal('read 9 with 1 live mapping\n')
  })
})

describe('FileBigFile: overlay mode specifics', () => {
  let dir: string
  beforeEach(() => {
    dir = tmpDir(true)
  })
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('reads through the base: no faults, no loads, no RAM', () => {
    const blksize = 64 * 1024
    const file = path.join(dir, 'f.bin')
    fs.writeFileSync(file, Buffer.alloc(8 * blksize + 100, 4)) // 8 whole blocks and a partial one
    const ram = new RAM({ pageSize: blksize, limit: 4 * blksize })
    const fh = new FileH(new FileBigFile(file, { blksize }), { ram, mode: 'overlay' })
    const m = fh.mmap(0, 10)
    expect(m.basePages()).to.equal(8)
    const s0 = virtmemStats()
    const b = m.bytes()
    let total = 0
    for (let i = 0; i < 8 * blksize; i += 4096) total += b[i]!
    expect(total).to.equal(4 * (8 * blksize) / 4096)
    expect(virtmemStats().faults).to.equal(s0.faults)
    expect(ram.stats().bytesInUse).to.equal(0)
    // the partial last block and the one past the end are loaded as usual (zeros past the end)
    expect(b[8 * blksize + 99]).to.equal(4)
    expect(b[8 * blksize + 100]).to.equal(0)
    expect(b[9 * blksize]).to.equal(0)
    expect(virtmemStats().loads - s0.loads).to.equal(2)
    // system calls can read base pages without prefault
    const out = path.join(dir, 'out.bin')
    fs.writeFileSync(out, b.subarray(0, 1000))
    expect(fs.readFileSync(out)).to.deep.equal(Buffer.alloc(1000, 4))
    m.unmap()
    fh.close()
  })

  it('takes RAM only for written blocks, and gives it back once they are stored', () => {
    const blksize = 64 * 1024
    const file = path.join(dir, 'f.bin')
    fs.writeFileSync(file, Buffer.alloc(4 * blksize, 1))
    const ram = new RAM({ pageSize: blksize, limit: 4 * blksize })
    const fh = new FileH(new FileBigFile(file, { blksize }), { ram, mode: 'overlay' })
    const m = fh.mmap(0, 4)
    const b = m.bytes()
    b[2 * blksize + 1] = 8
    expect(ram.stats().bytesInUse).to.equal(blksize)
    expect(m.mappedPages()).to.deep.equal([false, false, true, false])
    fh.dirtyWriteout()
    expect(ram.stats().bytesInUse).to.equal(0, 'the stored block is read from the base again')
    expect(fh.pageState(2)).to.equal('empty')
    expect(m.mappedPages()).to.deep.equal([false, false, false, false])
    expect(b[2 * blksize + 1]).to.equal(8)
    expect(() => new FileH(new PatternBigFile({ blksize: 64 * 1024 }), { ram, mode: 'overlay' })).to.throw(/no mmapBase/)
    m.unmap()
    fh.close()
  })
})
