// The behaviours of wendelin.core's bigfile/tests/test_virtmem.c (file access, synthetic),
// through the binding: a native pattern file (block blk reads as bytes 100+blk) on a RAM of
// 3 pages. Pages are touched from JS; the SIGSEGV handler serves the faults.
import { expect } from 'chai'
import v8 from 'node:v8'
import vm from 'node:vm'

import { FileH, MAX_MAPPING_BYTES, PatternBigFile, RAM, WRITEOUT_MARKSTORED, WRITEOUT_STORE, virtmemStats } from '@wendelin/bigfile'

import { patternFileH as patternFileHOf } from './helpers.js'

// 64 KiB pages move page tables entry by entry; 2 MiB pages (aligned) move whole tables.
for (const PS of [64 * 1024, 2 * 1024 * 1024]) {
const patternFileH = (pages = 3) => patternFileHOf(pages, { pageSize: PS })

describe(`virtmem: file access through mappings (test_virtmem), ${PS / 1024} KiB pages`, () => {
  it('write-protects a frame again after it held a dirty page (page tables reused through the read alias)', () => {
    // One frame: every page goes through it, and its page tables go back and forth between
    // the mapping and the RAM's read alias. Read-write entries of a dirty page must not come
    // back read-write: the next page in the frame would take writes without being dirtied.
    const { fh } = patternFileH(1)
    const m = fh.mmap(0, 4)
    const b = m.bytes()
    b[0] = 1 // page 0 dirty
    fh.dirtyDiscard() // its page tables go back to the alias, the frame is free again
    expect(b[PS]).to.equal(101) // page 1 in the same frame, mapped read-only
    expect(fh.pageState(1)).to.equal('loaded')
    b[PS + 1] = 2
    expect(fh.pageState(1)).to.equal('dirty', 'a write to a clean page must fault and dirty it')
    fh.dirtyWriteout(WRITEOUT_MARKSTORED) // clean again, read-only again
    m.unmap() // page tables back to the alias from a clean page written before
    const m2 = fh.mmap(0, 4)
    const b2 = m2.bytes()
    expect(b2[PS + 1]).to.equal(2)
    b2[PS + 3] = 3
    expect(fh.dirtyPages()).to.deep.equal([1])
    fh.invalidatePage(1) // drops the dirty page: read-write entries go back to the alias
    expect(b2[2 * PS]).to.equal(102)
    b2[2 * PS] = 4
    expect(fh.dirtyPages()).to.deep.equal([2])
    m2.unmap()
    fh.dirtyDiscard()
    fh.close()
  })

  it('below the limit, takes the frames of pages written back (committed) before new memory, until one of them is asked for again', () => {
    const { ram, fh } = patternFileH(4)
    // two mappings no larger than the RAM (a larger one would also leave behind the pages a
    // sequential read passes: the next test)
    const views = [fh.mmap(0, 4), fh.mmap(4, 4)]
    const bytes = views.map((v) => v.bytes())
    const page = (pg: number) => bytes[pg >> 2]!.subarray((pg & 3) * PS, ((pg & 3) + 1) * PS)
    const s0 = virtmemStats()
    // written through a mapping gone by the commit: left behind (a page still mapped stays so)
    const w = fh.mmap(0, 2)
    w.bytes()[0] = 1
    w.bytes()[PS] = 2
    w.unmap()
    fh.dirtyWriteout() // pages 0 and 1 stored and clean: written back
    const inUse = () => ram.stats().bytesInUse / PS
    expect(inUse()).to.equal(2)
    // new pages below the limit take the written-back pages' frames, least recently used first
    expect(page(2)[0]).to.equal(102)
    expect([fh.pageState(0), fh.pageState(1), inUse()]).to.deep.equal(['empty', 'loaded', 2])
    expect(page(3)[0]).to.equal(103)
    expect([fh.pageState(1), inUse(), ram.stats().bytesPeak / PS]).to.deep.equal(['empty', 2, 2])
    expect(virtmemStats().recycledLeftBehind - s0.recycledLeftBehind).to.equal(2)
    // a page loaded (not written) is cached as ever: it is not taken for the next one
    const w4 = fh.mmap(4, 1)
    w4.bytes()[0] = 4
    w4.unmap()
    fh.dirtyWriteout()
    // ... and a written-back page faulted on again (another mapping) is in use: not taken either
    const m2 = fh.mmap(4, 1)
    expect(m2.bytes()[0]).to.equal(4)
    expect(page(5)[0]).to.equal(105)
    expect([fh.pageState(2), fh.pageState(3), fh.pageState(4), inUse()]).to.deep.equal(['loaded', 'loaded', 'loaded', 4])
    m2.unmap()
    fh.invalidatePage(5)
    fh.invalidatePage(4)
    const w6 = fh.mmap(6, 1)
    w6.bytes()[0] = 6
    w6.unmap()
    fh.dirtyWriteout()
    // a recycled page asked for again: the writer does come back to what it wrote, so the RAM
    // grows as any cache would from now on
    expect(page(0)[0]).to.equal(100) // the pattern file's storeblk keeps nothing: its block reads again
    expect(page(7)[0]).to.equal(107)
    expect([fh.pageState(0), fh.pageState(6), fh.pageState(7), inUse()]).to.deep.equal(['loaded', 'loaded', 'loaded', 4])
    expect(virtmemStats().recycledLeftBehind - s0.recycledLeftBehind).to.equal(2)
    for (const v of views) v.unmap()
    fh.close()
  })

  it('a sequential read through a mapping larger than the RAM reuses the frames of the pages it passed, until one is asked for again', () => {
    const { ram, fh } = patternFileH(4)
    const s0 = virtmemStats()
    // 16 pages mapped with 4 of RAM, read in order (each read crossing into the next page):
    // each page two behind the read is left behind and its frame taken for a later one: three
    // frames in all, and no page left behind is touched again
    const m = fh.mmap(0, 16)
    const b = m.bytes()
    for (let pg = 0; pg < 16; pg++) {
      expect(b[pg * PS + 7]).to.equal(100 + pg)
      if (pg > 0) expect(b[pg * PS - 1]).to.equal(99 + pg) // the end of the page before
    }
    expect(ram.stats().bytesPeak / PS).to.equal(3)
    expect(virtmemStats().recycledLeftBehind - s0.recycledLeftBehind).to.equal(13)
    // back to the start: a recycled page asked for again, and the RAM caches as usual from now on
    for (let pg = 0; pg < 16; pg++) expect(b[pg * PS]).to.equal(100 + pg)
    expect(virtmemStats().recycledLeftBehind - s0.recycledLeftBehind).to.equal(13)
    expect(ram.stats().bytesInUse / PS).to.equal(4)
    m.unmap()
    fh.close()
    // a mapping no larger than the RAM: an ordinary cache from the start
    const other = patternFileH(4)
    const small = other.fh.mmap(0, 4)
    for (let pg = 0; pg < 4; pg++) expect(small.bytes()[pg * PS]).to.equal(100 + pg)
    expect(other.ram.stats().bytesInUse / PS).to.equal(4)
    expect(virtmemStats().recycledLeftBehind - s0.recycledLeftBehind).to.equal(13)
    small.unmap()
    other.fh.close()
  })

  it('never takes a written-back page that is in use: read again through the same view, prefaulted, or loaded by fh.load', async () => {
    const { ram, fh } = patternFileH(16)
    const m = fh.mmap(0, 16)
    const b = m.bytes()
    for (let pg = 0; pg < 4; pg++) b[pg * PS] = 1
    fh.dirtyWriteout()
    // still mapped (read-only): the view shows them, system calls on it keep working
    expect(m.mappedPages().slice(0, 4)).to.deep.equal([true, true, true, true])
    expect(fh.pageState(0)).to.equal('loaded')
    const s0 = virtmemStats()
    // read back through the same view: no load, and the pages are kept
    for (let pg = 0; pg < 4; pg++) expect(b[pg * PS]).to.equal(1)
    for (let pg = 4; pg < 8; pg++) expect(b[pg * PS]).to.equal(100 + pg)
    expect(virtmemStats().loads - s0.loads).to.equal(4) // pages 4-7 only
    expect(virtmemStats().recycledLeftBehind - s0.recycledLeftBehind).to.equal(0)
    // prefault keeps the range it maps, written-back pages of it included
    for (let pg = 8; pg < 10; pg++) b[pg * PS] = 2
    fh.dirtyWriteout()
    m.prefault(8 * PS, 4 * PS)
    expect(m.mappedPages().slice(8, 12)).to.deep.equal([true, true, true, true])
    // fh.load keeps the written-back pages of its range, wherever they lie in it
    m.unmap()
    const w = fh.mmap(12, 2)
    w.bytes()[0] = 3
    w.bytes()[PS] = 3
    w.unmap()
    fh.dirtyWriteout() // pages 12 and 13 left behind
    await fh.load({ pgoffset: 10, pglen: 6 })
    expect([10, 11, 12, 13, 14, 15].map((pg) => fh.pageState(pg))).to.deep.equal(['loaded', 'loaded', 'loaded', 'loaded', 'loaded', 'loaded'])
    expect(virtmemStats().recycledLeftBehind - s0.recycledLeftBehind).to.equal(0)
    expect(ram.stats().bytesInUse / PS).to.equal(16)
    fh.close()
  })

  it('takes no written-back page where its freed frame would be handed back to the OS (high water below the limit)', () => {
    const ram = new RAM({ pageSize: PS, limit: 8 * PS, highWater: 2 * PS })
    const fh = new FileH(new PatternBigFile({ blksize: PS }), { ram })
    const m = fh.mmap(0, 8)
    const b = m.bytes()
    const s0 = virtmemStats()
    for (let pg = 0; pg < 4; pg++) b[pg * PS] = 1
    fh.dirtyWriteout()
    for (let pg = 4; pg < 8; pg++) expect(b[pg * PS]).to.equal(100 + pg)
    expect(virtmemStats().recycledLeftBehind - s0.recycledLeftBehind).to.equal(0)
    expect(ram.stats().framesPunched).to.equal(0)
    expect([0, 1, 2, 3].map((pg) => fh.pageState(pg))).to.deep.equal(['loaded', 'loaded', 'loaded', 'loaded'])
    m.unmap()
    fh.close()
    ram.close()
  })

  it('loads on read, dirties on write, keeps LRU order and reclaims the least recently used clean page', () => {
    const { ram, fh } = patternFileH(3)
    const m = fh.mmap(0, 8)
    const b = m.bytes()
    const id = fh.id
    const s0 = virtmemStats()

    expect(m.mappedPages()).to.deep.equal([false, false, false, false, false, false, false, false])
    expect(fh.pageState(0)).to.equal('empty')

    // read page[0]
    expect(b[0]).to.equal(100)
    expect(b[PS - 1]).to.equal(100)
    expect(fh.pageState(0)).to.equal('loaded')
    expect(m.mappedPages().slice(0, 4)).to.deep.equal([true, false, false, false])
    expect(ram.lru()).to.deep.equal([[id, 0]])
    expect(fh.dirtyPages()).to.deep.equal([])

    // write page[2]: loaded, then dirtied
    b[2 * PS] = 12
    expect(fh.pageState(2)).to.equal('dirty')
    expect(b[2 * PS]).to.equal(12)
    expect(b[2 * PS + 1]).to.equal(102)
    expect(ram.lru()).to.deep.equal([[id, 0], [id, 2]])
    expect(fh.dirtyPages()).to.deep.equal([2])

    // read page[3]
    expect(b[3 * PS + 7]).to.equal(103)
    expect(ram.lru()).to.deep.equal([[id, 0], [id, 2], [id, 3]])

    // write page[0]: no load, it becomes dirty and most recently used
    const loadsBefore = virtmemStats().loads
    b[0] = 10
    expect(virtmemStats().loads).to.equal(loadsBefore)
    expect(fh.dirtyPages()).to.deep.equal([0, 2])
    expect(ram.lru()).to.deep.equal([[id, 2], [id, 3], [id, 0]])

    // read page[1]: RAM is full (0, 2 dirty; 3 loaded) → page 3 is evicted
    expect(b[PS + 5]).to.equal(101)
    expect(fh.pageState(3)).to.equal('empty')
    expect(m.mappedPages().slice(0, 4)).to.deep.equal([true, true, true, false])
    expect(ram.lru()).to.deep.equal([[id, 2], [id, 0], [id, 1]])
    expect(ram.stats().bytesInUse).to.equal(3 * PS)

    // page[3] again: reloaded, evicting page 1
    expect(b[3 * PS]).to.equal(103)
    expect(fh.pageState(1)).to.equal('empty')
    const s1 = virtmemStats()
    expect(s1.loads - s0.loads).to.equal(5)
    expect(s1.reclaimed - s0.reclaimed).to.equal(2)
    expect(s1.writeFaults - s0.writeFaults).to.equal(2)

    m.unmap()
    fh.dirtyDiscard()
    fh.close()
    expect(ram.stats().bytesInUse).to.equal(0)
  })

  it('keeps pages across unmap and remap: no reload, dirty data intact', () => {
    const { fh } = patternFileH(3)
    let m = fh.mmap(0, 4)
    let b = m.bytes()
    b[PS] = 42 // page 1 dirty
    expect(b[2 * PS]).to.equal(102) // page 2 loaded
    m.unmap()
    expect(b.length).to.equal(0, 'views over an unmapped buffer are detached')
    expect(fh.pageState(1)).to.equal('dirty')
    expect(fh.pageState(2)).to.equal('loaded')

    const loads = virtmemStats().loads
    m = fh.mmap(0, 4)
    b = m.bytes()
    expect(m.mappedPages()).to.deep.equal([false, false, false, false])
    expect(b[PS]).to.equal(42)
    expect(b[2 * PS]).to.equal(102)
    expect(virtmemStats().loads).to.equal(loads)
    expect(m.mappedPages()).to.deep.equal([false, true, true, false])
    // the same page mapped twice: both see one frame
    const m2 = fh.mmap(1, 1)
    const b2 = m2.bytes()
    expect(b2[0]).to.equal(42)
    b2[1] = 43
    expect(b[PS + 1]).to.equal(43)
    m2.unmap()
    m.unmap()
    fh.dirtyDiscard()
    fh.close()
  })

  it('serves one page mapped twice: writes show in both; unmapping or eviction leaves no stale view', () => {
    const { fh } = patternFileH(3)
    const m1 = fh.mmap(0, 2)
    const b1 = m1.bytes()
    expect(b1[PS]).to.equal(101) // page 1 mapped in m1 (page tables moved from the RAM alias)
    const m2 = fh.mmap(1, 1)
    const b2 = m2.bytes()
    expect(b2[0]).to.equal(101) // and in m2 (populated afresh)
    b2[1] = 7
    expect(b1[PS + 1]).to.equal(7, 'one frame behind both')
    m1.unmap()
    expect(b2[1]).to.equal(7)
    fh.dirtyWriteout()
    const m3 = fh.mmap(4, 3)
    const b3 = m3.bytes()
    for (let i = 0; i < 3; i++) expect(b3[i * PS + 9]).to.equal(104 + i) // page 1 is evicted
    expect(fh.pageState(1)).to.equal('empty')
    expect(m2.mappedPages()).to.deep.equal([false])
    expect(b2[1]).to.equal(101, 'loaded afresh (the pattern file does not keep stores)')
    expect(b3[2 * PS]).to.equal(106, 'the recycled frames hold the right pages')
    m2.unmap()
    m3.unmap()
    fh.close()
  })

  it('discards dirty pages: the next access loads the file data again', () => {
    const { fh } = patternFileH(3)
    const m = fh.mmap(0, 3)
    const b = m.bytes()
    b[0] = 1
    b[PS] = 2
    expect(b[2 * PS]).to.equal(102)
    fh.dirtyDiscard()
    expect(fh.dirtyPages()).to.deep.equal([])
    expect(fh.pageState(0)).to.equal('empty')
    expect(fh.pageState(2)).to.equal('loaded', 'clean pages stay')
    expect(m.mappedPages()).to.deep.equal([false, false, true])
    expect(b[0]).to.equal(100)
    expect(b[PS]).to.equal(101)
    m.unmap()
    fh.close()
  })

  it('writes out STORE then MARKSTORED: stores in page order, then pages are clean and write-protected again', () => {
    const { file, fh } = patternFileH(3)
    const m = fh.mmap(0, 3)
    const b = m.bytes()
    b[2 * PS] = 22
    b[0] = 20
    expect(fh.dirtyPages()).to.deep.equal([0, 2])

    fh.dirtyWriteout(WRITEOUT_STORE)
    expect(file.stored.map(([blk, data]) => [blk, data[0], data[1], data.length])).to.deep.equal([
      [0, 20, 100, PS],
      [2, 22, 102, PS],
    ])
    expect(fh.dirtyPages()).to.deep.equal([0, 2], 'STORE alone leaves pages dirty')

    fh.dirtyWriteout(WRITEOUT_MARKSTORED)
    expect(file.stored.length).to.equal(2, 'MARKSTORED alone stores nothing')
    expect(fh.dirtyPages()).to.deep.equal([])
    expect(fh.pageState(0)).to.equal('loaded')
    expect(b[0]).to.equal(20, 'stored data stays in memory')

    // the next write faults again and re-dirties the page
    const wf = virtmemStats().writeFaults
    b[1] = 5
    expect(virtmemStats().writeFaults).to.equal(wf + 1)
    expect(fh.dirtyPages()).to.deep.equal([0])

    fh.dirtyWriteout() // both flags
    expect(file.stored.map(([blk, data]) => [blk, data[1]])).to.deep.equal([[0, 100], [2, 102], [0, 5]])
    expect(fh.dirtyPages()).to.deep.equal([])
    expect(() => fh.dirtyWriteout(0)).to.throw(/flags/)
    m.unmap()
    fh.close()
  })

  it('keeps pages dirty when storeblk fails, and allows the writeout again', () => {
    const ram = new RAM({ pageSize: PS, limit: 3 * PS })
    class Failing extends PatternBigFile {
      fail = true
      override storeblk(blk: number, src: Uint8Array): void {
        if (this.fail) throw new Error('disk full')
        super.storeblk(blk, src)
      }
    }
    const file = new Failing({ blksize: PS })
    const fh = new FileH(file, { ram })
    const m = fh.mmap(0, 2)
    m.bytes()[0] = 1
    expect(() => fh.dirtyWriteout()).to.throw('disk full')
    expect(fh.dirtyPages()).to.deep.equal([0])
    file.fail = false
    fh.dirtyWriteout()
    expect(fh.dirtyPages()).to.deep.equal([])
    expect(file.stored.length).to.equal(1)
    m.unmap()
    fh.close()
  })

  it('invalidates loaded and dirty pages: the next access loads the new data', () => {
    const { fh } = patternFileH(3)
    const m = fh.mmap(0, 3)
    const b = m.bytes()
    expect(b[0]).to.equal(100)
    b[PS] = 7
    fh.patternControl('seed', 200) // "the file changed": block blk now reads 200+blk
    expect(b[0]).to.equal(100, 'not invalidated yet')
    fh.invalidatePage(0)
    fh.invalidatePage(1)
    fh.invalidatePage(2) // absent: nothing to do
    expect(fh.pageState(0)).to.equal('empty')
    expect(fh.dirtyPages()).to.deep.equal([])
    expect(m.mappedPages()).to.deep.equal([false, false, false])
    expect(b[0]).to.equal(200)
    expect(b[PS]).to.equal(201)
    m.unmap()
    fh.close()
  })

  it('refuses a second writeout, discard, invalidation and close during a writeout', () => {
    const ram = new RAM({ pageSize: PS, limit: 3 * PS })
    const errors: string[] = []
    let fh: FileH
    class Reentrant extends PatternBigFile {
      override storeblk(blk: number, src: Uint8Array): void {
        for (const f of [() => fh.dirtyWriteout(), () => fh.dirtyDiscard(), () => fh.invalidatePage(0), () => fh.close()]) {
          try {
            f()
            errors.push('no error')
          } catch (e) {
            errors.push((e as Error).message)
          }
        }
        super.storeblk(blk, src)
      }
    }
    fh = new FileH(new Reentrant({ blksize: PS }), { ram })
    const m = fh.mmap(0, 1)
    m.bytes()[0] = 1
    m.unmap() // dirty pages outlive their mappings; close is then refused for the writeout alone
    fh.dirtyWriteout()
    expect(errors).to.have.length(4)
    expect(errors[0]).to.match(/writeout of this file handle is already in progress/)
    expect(errors[1]).to.match(/dirtyDiscard: refused while a writeout/)
    expect(errors[2]).to.match(/invalidatePage: refused while a writeout/)
    expect(errors[3]).to.match(/cannot close file handle: writeout in progress/)
    expect(fh.dirtyPages()).to.deep.equal([])
    fh.close()
  })

  it('unmaps a mapping whose ArrayBuffer was garbage collected', async () => {
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc') as () => void
    const { ram, fh } = patternFileH(3)
    ;(() => {
      const m = fh.mmap(0, 2)
      expect(m.bytes()[PS]).to.equal(101)
    })()
    expect(() => fh.close()).to.throw(/1 mapping\(s\) still live/)
    let closed = false
    for (let round = 0; round < 100 && !closed; round++) {
      gc()
      await new Promise<void>((resolve) => setImmediate(resolve)) // finalizers run on the JS thread
      try {
        fh.close()
        closed = true
      } catch {
        // not collected yet
      }
    }
    expect(closed).to.equal(true, 'the collected mapping was unmapped and the handle could close')
    expect(ram.stats().bytesInUse).to.equal(0)
  })

  it('refuses to close with live mappings; unmap and `using` release them', () => {
    const { fh } = patternFileH(3)
    const m = fh.mmap(0, 2)
    expect(m.bytes()[0]).to.equal(100)
    expect(() => fh.close()).to.throw(/1 mapping\(s\) still live/)
    m.unmap()
    m.unmap() // idempotent
    expect(m.isLive).to.equal(false)
    {
      using m2 = fh.mmap(0, 2)
      expect(m2.bytes()[PS]).to.equal(101)
      expect(() => fh.close()).to.throw(/still live/)
    }
    fh.close()
    expect(fh.isClosed).to.equal(true)
    expect(() => fh.mmap(0, 1)).to.throw(/closed/)
  })

  it('stretches the limit when only dirty pages are left, and shrinks back once they are stored', () => {
    const { ram, fh } = patternFileH(3)
    const s0 = virtmemStats()
    const m = fh.mmap(0, 5)
    const b = m.bytes()
    for (let pg = 0; pg < 5; pg++) b[pg * PS] = pg
    expect(fh.dirtyPages()).to.deep.equal([0, 1, 2, 3, 4])
    expect(virtmemStats().stretches - s0.stretches).to.equal(2)
    expect(ram.stats().bytesInUse).to.equal(5 * PS)
    fh.dirtyWriteout()
    expect(ram.reclaim()).to.equal(5)
    expect(ram.stats().bytesInUse).to.equal(0)
    for (let pg = 0; pg < 5; pg++) expect(b[pg * PS]).to.equal(100 + pg, 'evicted, so loaded again from the pattern file')
    m.unmap()
    fh.close()
  })

  it('recycles frames and punches out memory above the high-water mark', () => {
    const ram = new RAM({ pageSize: PS, limit: 2 * PS, highWater: 2 * PS })
    const fh = new FileH(new PatternBigFile({ blksize: PS }), { ram })
    const m = fh.mmap(0, 6)
    const b = m.bytes()
    for (let pg = 0; pg < 6; pg++) expect(b[pg * PS]).to.equal(100 + pg)
    const st = ram.stats()
    expect(st.bytesPeak).to.equal(2 * PS, 'evicted frames were reused, not new ones taken')
    expect(st.framesPunched).to.equal(0)
    // dirtying beyond the limit, then storing and reclaiming: frames above high water go back
    for (let pg = 0; pg < 4; pg++) b[pg * PS] = 1
    fh.dirtyWriteout()
    ram.reclaim()
    const after = ram.stats()
    expect(after.bytesInUse).to.equal(0)
    expect(after.bytesWarm).to.equal(2 * PS)
    expect(after.framesPunched).to.equal(2)
    m.unmap()
    fh.close()
  })

  it('closes a RAM only when no file handle is open on it', () => {
    const { ram, fh } = patternFileH(3)
    const m = fh.mmap(0, 1)
    expect(m.bytes()[0]).to.equal(100)
    expect(() => ram.close()).to.throw(/1 file handle\(s\) still open/)
    m.unmap()
    fh.close()
    ram.close()
    expect(ram.isClosed).to.equal(true)
    expect(() => ram.stats()).to.throw(/RAM is closed/)
    expect(() => new FileH(new PatternBigFile({ blksize: PS }), { ram })).to.throw(/RAM is closed/)
    expect(() => fh.mmap(0, 1)).to.throw(/closed/)
    ram.close() // idempotent
  })

  it('refuses a mapping larger than the biggest ArrayBuffer, naming the limit', () => {
    const ram = new RAM({ pageSize: 2 * 1024 * 1024, limit: 4 * 1024 * 1024 })
    const fh = new FileH(new PatternBigFile({ blksize: 2 * 1024 * 1024 }), { ram })
    const pages = MAX_MAPPING_BYTES / (2 * 1024 * 1024) + 1
    expect(() => fh.mmap(0, pages)).to.throw(RangeError, new RegExp(`largest ArrayBuffer.*${MAX_MAPPING_BYTES} bytes`))
    expect(() => fh.mmap(0, 0)).to.throw(RangeError)
    fh.close()
  })

  it('rejects a RAM page size that is not a multiple of the OS page size, and a mismatched block size', () => {
    expect(() => new RAM({ pageSize: 1000 })).to.throw(/multiple of the OS page size/)
    const ram = new RAM({ pageSize: PS, limit: PS })
    expect(() => new FileH(new PatternBigFile({ blksize: 2 * PS }), { ram })).to.throw(/block size/)
  })
})

describe(`virtmem: pagemap (test_pagemap), ${PS / 1024} KiB pages`, () => {
  it('tracks far-apart pages exactly once each, in order (the non-leaf iteration bug)', () => {
    const ram = new RAM({ pageSize: PS, limit: 16 * PS })
    const fh = new FileH(new PatternBigFile({ blksize: PS }), { ram })
    const offsets = [0, 1, 511, 512, 4096, 2 ** 20, 2 ** 30, 2 ** 36 - 1]
    const maps = offsets.map((pg) => fh.mmap(pg, 1))
    // dirty them in scrambled order
    for (const i of [5, 0, 7, 2, 6, 1, 4, 3]) maps[i]!.bytes()[0] = i
    expect(fh.dirtyPages()).to.deep.equal(offsets)
    for (const [i, pg] of offsets.entries()) expect(fh.pageState(pg)).to.equal('dirty', `page ${pg} (#${i})`)
    expect(fh.pageState(2)).to.equal('empty')
    for (const m of maps) m.unmap()
    fh.dirtyDiscard()
    fh.close()
    expect(ram.stats().bytesInUse).to.equal(0)
  })
})
}
