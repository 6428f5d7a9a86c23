// prefault's promise: once it returns, its whole range is mapped (when the range fits in RAM), so
// the memory can be handed to a system call. Loads served by loader workers unmap the next
// eviction's victim while they wait (virtmem.cc, unmapNextVictim); that must never take a page
// of the range being prefaulted.
import { expect } from 'chai'
import fs from 'node:fs'
import path from 'node:path'

import { FileH, RAM } from '@wendelin/bigfile'

import { PS, tmpDir } from './helpers.js'
import { SlowFile } from './fixtures/files.js'

describe('virtmem: prefault', () => {
  it('leaves a range that fills the RAM exactly mapped, in any order of loads', () => {
    const dir = tmpDir()
    const N = 4
    const ram = new RAM({ pageSize: PS, limit: N * PS })
    const file = new SlowFile({ blksize: PS, slowFrom: 0, slowTo: 0, delayMs: 0, log: path.join(dir, 'loads.log') })
    const fh = new FileH(file, { ram })
    const m = fh.mmap(0, N)
    // Out of order, so readahead does not load the pages ahead of the prefault.
    for (const pg of [3, 1, 0, 2]) m.prefault(pg * PS, PS)
    expect([0, 1, 2, 3].map((pg) => fh.pageState(pg))).to.deep.equal(['loaded', 'loaded', 'loaded', 'loaded'])
    expect(m.mappedPages()).to.deep.equal([true, true, true, true])

    // ... and a system call can read all of it (a page not mapped would make a short write)
    const out = path.join(dir, 'out.bin')
    const fd = fs.openSync(out, 'w')
    expect(fs.writeSync(fd, m.bytes())).to.equal(N * PS)
    fs.closeSync(fd)
    const back = fs.readFileSync(out)
    for (let pg = 0; pg < N; pg++) expect(back[pg * PS]).to.equal(pg + 1)

    m.unmap()
    fh.close()
    ram.close()
    fs.rmSync(dir, { recursive: true })
  })
})
