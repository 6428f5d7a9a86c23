// Failure paths of loading blocks (found in review): loads asked for by several threads, loads
// failing with the project's own TransientError.
import fs from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

import { expect } from 'chai'

import { FileH, RAM } from '@wendelin/bigfile'

import { KillerFile, TransientFile } from './fixtures/review-files.js'
import { here, tmpDir } from './helpers.js'

const PS = 64 * 1024

describe('review: load failures', function () {
  this.timeout(60_000)
  let dir: string
  beforeEach(() => {
    dir = tmpDir()
  })
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

  it('fileh.load settles on the thread that called it while other threads have file handles (and loaders) too', async () => {
    const ram = new RAM({ pageSize: PS, limit: 8 * PS })
    const fh = new FileH(new KillerFile({ blksize: PS, killer: -1 }), { ram })
    await fh.load({ pgoffset: 0, pglen: 1 }) // this thread's loaders serve
    const worker = new Worker(path.join(here, 'fixtures', 'review-worker-load.js'), { workerData: { blksize: PS, pages: 8 } })
    try {
      const said = await new Promise<unknown>((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
      })
      expect(said).to.equal('loaded')
      await fh.load({ pgoffset: 1, pglen: 4 })
    } finally {
      await worker.terminate()
      fh.close()
      ram.close()
    }
  })

  it('retries a load that fails with a TransientError (as the network client\'s ClientDisconnected)', async () => {
    const marker = path.join(dir, 'attempts')
    const ram = new RAM({ pageSize: PS, limit: 4 * PS })
    const fh = new FileH(new TransientFile({ blksize: PS, failures: 2, marker }), { ram })
    try {
      await fh.load({ pgoffset: 0, pglen: 1 })
      const m = fh.mmap(0, 1)
      expect(m.bytes()[0]).to.equal(33)
      m.unmap()
      expect(fs.readFileSync(marker, 'utf8')).to.equal('xxx')
    } finally {
      fh.close()
      ram.close()
    }
  })

})
