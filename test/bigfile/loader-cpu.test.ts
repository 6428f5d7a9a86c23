// Where loader workers run: the loader woken for a fault is pinned to the faulting thread's
// CPU (a hand-off between two vCPUs costs 15-30 µs per hop on small VMs), and gets its whole
// CPU mask back before other work and when it goes back to sleep, so readahead and fileh.load
// still run beside the thread that reads.
import { expect } from 'chai'
import fs from 'node:fs'

import { FileH, type Mapping, RAM } from '@wendelin/bigfile'

import { CpuFile, allowedCpus, currentCpu, loaderPlace } from './fixtures/cpu-file.js'
import { until } from './helpers.js'

const PS = 64 * 1024

/** Threads of this process whose CPU mask is not `mask`. */
function threadsNotOn(mask: string): string[] {
  return fs.readdirSync('/proc/self/task').filter((tid) => {
    try {
      const status = fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8')
      return /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1] !== mask
    } catch {
      return false // ended meanwhile
    }
  })
}

describe('loader workers: CPU placement', () => {
  let ram: RAM
  let fh: FileH
  let m: Mapping | undefined
  beforeEach(function () {
    // On one allowed CPU every thread is "pinned": nothing to tell apart.
    if (!/[-,]/.test(allowedCpus())) this.skip()
    ram = new RAM({ pageSize: PS, limit: 64 * PS })
    fh = new FileH(new CpuFile(PS), { ram })
  })
  afterEach(() => {
    m?.unmap()
    fh?.close()
    ram?.close()
  })

  it("serves a fault on the faulting thread's CPU; the loader gets its CPU mask back after", async () => {
    const home = allowedCpus()
    expect(threadsNotOn(home), 'threads pinned before').to.deep.equal([])
    const mapping = (m = fh.mmap(0, 40))
    const page = (pg: number) => mapping.bytes().subarray(pg * PS, (pg + 1) * PS)
    let conclusive = 0
    for (let i = 0; i < 20; i++) {
      const pg = (i * 7) % 40 // scattered: no readahead
      const before = currentCpu()
      const place = loaderPlace(page(pg)) // the fault
      if (currentCpu() !== before) continue // this thread moved meanwhile: where it faulted is unknown
      expect(place, `fault on page ${pg}`).to.deep.equal({ allowed: String(before), cpu: before })
      conclusive++
    }
    expect(conclusive, 'faults without a migration of this thread').to.be.greaterThan(0)
    // back to sleep: no loader stays pinned
    await until(() => threadsNotOn(home).length === 0)
  })

  it('loads for fileh.load (and readahead) with the whole CPU mask, even right after a fault', async () => {
    const home = allowedCpus()
    const mapping = (m = fh.mmap(0, 40))
    const page = (pg: number) => mapping.bytes().subarray(pg * PS, (pg + 1) * PS)
    for (let i = 0; i < 10; i++) {
      expect(page(2 * i)[0], 'the fault loads it').to.not.equal(0)
      await fh.load({ pgoffset: 2 * i + 21, pglen: 1 })
      expect(loaderPlace(page(2 * i + 21)).allowed, `fileh.load of page ${2 * i + 21}`).to.equal(home)
    }
  })
})
