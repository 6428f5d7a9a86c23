// Edges of the virtmem core, each staged deterministically: a stale load dropped after its page
// was loaded afresh, block and page offsets near the 64-bit limit, a loadHere fill that uses the
// page it fills.
import { expect } from 'chai'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { FileBigFile, FileH, RAM, virtmemStats } from '@wendelin/bigfile'

import { PS, here, patternFileH, tmpDir } from './helpers.js'

/** `body` with an overlay handle over a base file of 2 blocks of ones (its RAM: 4 pages), then all closed. */
function withOverlayOfOnes(body: (fh: FileH, file: string) => void): void {
  const dir = tmpDir(true)
  try {
    const file = path.join(dir, 'f.bin')
    fs.writeFileSync(file, Buffer.alloc(2 * PS, 1))
    const ram = new RAM({ pageSize: PS, limit: 4 * PS })
    const fh = new FileH(new FileBigFile(file, { blksize: PS }), { ram, mode: 'overlay' })
    body(fh, file)
    fh.close()
    ram.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

describe('virtmem: a load dropped because its page was invalidated meanwhile', () => {
  // A page invalidated while it loads (LOADING_INVALIDATED) left the pagemap; an access in the
  // meantime loads the page afresh and maps the new Page at the same offset. When the stale
  // load finishes its Page is dropped — it was never mapped anywhere, so dropping it must not
  // touch the mappings, which now show the page that replaced it.
  it('leaves the page that replaced it mapped (load mode)', () => {
    const { fh } = patternFileH(4)
    const m = fh.mmap(0, 2)
    const b = m.bytes()
    const s0 = virtmemStats()
    const r = fh.loadHere(0, (dest) => {
      fh.invalidatePage(0) // this load is stale now: dropped when it finishes
      expect(b[5]).to.equal(100) // page 0 loaded afresh and mapped while the stale load is under way
      expect(m.mappedPages()).to.deep.equal([true, false])
      dest.fill(7)
    })
    expect(r).to.equal('invalidated')
    expect(virtmemStats().loadsInvalidated - s0.loadsInvalidated).to.equal(1)
    expect(fh.pageState(0)).to.equal('loaded')
    expect(m.mappedPages()).to.deep.equal([true, false], 'dropping the stale page unmapped the live one')
    m.unmap()
    // mapped nowhere now: the caller leaving it behind lets its frame be taken first
    fh.leaveBehind({ pgoffset: 0, pglen: 1 })
    const m2 = fh.mmap(1, 3)
    const s1 = virtmemStats()
    expect(m2.bytes()[0]).to.equal(101) // takes the stale load's freed (warm) frame
    expect(m2.bytes()[PS]).to.equal(102) // below the limit, no warm frame: takes page 0's
    expect(virtmemStats().recycledLeftBehind - s1.recycledLeftBehind).to.equal(1, 'page 0 kept a mapping count of a mapping it is not in')
    m2.unmap()
    fh.close()
  })

  it('does not bring the base back over a dirty page (overlay mode: reads would show stale data)', () => {
    withOverlayOfOnes((fh, file) => {
      const m = fh.mmap(0, 2)
      const b = m.bytes()
      const r = fh.loadHere(0, (dest) => {
        fh.invalidatePage(0) // the file changed: this load is stale
        b[5] = 9 // a write: block 0 copied afresh into a frame, dirtied and mapped over the base
        dest.fill(1)
      })
      expect(r).to.equal('invalidated')
      expect(fh.dirtyPages()).to.deep.equal([0])
      expect(b[5]).to.equal(9, 'the write is hidden: the base file is mapped over the dirty page again')
      fh.dirtyWriteout()
      expect(fs.readFileSync(file)[5]).to.equal(9)
      m.unmap()
    })
  })
})

describe('virtmem: block offsets near the 64-bit limit', () => {
  it('reads a block past the end of the base file as zeros however far it is (overlay mode: blk*blksize must not wrap)', () => {
    withOverlayOfOnes((fh) => {
      // 2^48 blocks of 64 KiB: byte offset 2^64, which wraps to 0 in 64 bits (block 0's data)
      const far = 2 ** 48
      const m = fh.mmap(far, 1)
      expect(m.basePages()).to.equal(0)
      expect(m.bytes()[3]).to.equal(0, 'block 2^48 showed the bytes of block 0')
      m.unmap()
    })
  })
})

describe('virtmem: page ranges near the limit', () => {
  it('leaveBehind over a range of 2^53 pages returns at once (it walks the pages present, lock held)', () => {
    const r = spawnSync(process.execPath, [path.join(here, 'fixtures', 'leave-behind-range.js')], { encoding: 'utf8', timeout: 10_000 })
    expect(r.signal).to.equal(null, 'still running after 10 s: the virtmem lock held meanwhile')
    expect(r.stdout).to.equal('100 101\nleft behind\n')
    expect(r.status).to.equal(0, r.stderr)
  })
})

describe('virtmem: loadHere whose fill uses the page it loads', () => {
  const run = (arg: string) =>
    spawnSync(process.execPath, [path.join(here, 'fixtures', 'load-here-self-fault.js'), arg], { encoding: 'utf8', timeout: 10_000 })

  it('a fault on that page ends the process with a message instead of waiting for itself for good', () => {
    const r = run('fault')
    expect(r.signal).to.equal(null, 'hung: the fault waits for a load only the faulting thread can finish')
    expect(r.stderr).to.match(/FATAL: .*page 0 .*loading on this very thread/)
  })

  it('closing the handle from fill is refused instead of waiting for that load for good', () => {
    const r = run('close')
    expect(r.signal).to.equal(null, 'hung: close waits for a load only the closing thread can finish')
    expect(r.stdout).to.match(/refused: cannot close file handle: .*loading on this thread/)
    expect(r.status).to.equal(0, r.stderr)
  })
})
