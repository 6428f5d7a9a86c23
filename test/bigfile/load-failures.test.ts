// Failure paths of loading blocks: loads asked for by several threads, a
// loader worker that dies under a load, loads failing with the project's own TransientError,
// what a failed load leaves open in a loader.
import fs from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'

import { expect } from 'chai'

import { FileH, RAM } from '@wendelin/bigfile'

import { FailingTracedFile, KillerFile, TransientFile } from './fixtures/files.js'
import { here, runFixture, tmpDir, until } from './helpers.js'

const PS = 64 * 1024

describe('load failures', function () {
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
    const worker = new Worker(path.join(here, 'fixtures', 'worker-load.js'), { workerData: { blksize: PS, pages: 8 } })
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

  for (const how of ['throw', 'exit']) {
    const dies = how === 'throw' ? 'dies (an uncaught exception)' : 'ends (process.exit() in loadblk)'
    it(`a loader worker that ${dies} under a fault ends the process with a message instead of hanging`, () => {
      const r = runFixture('loader-dies', ['fault', how])
      expect(r.signal, `hung (killed by spawnSync's timeout); stderr: ${r.stderr}`).to.equal(null)
      expect(r.status).to.equal(70, r.stderr)
      expect(r.stderr).to.match(/FATAL: cannot load block 1 of KillerFile .*: (the loader worker serving it stopped|loader handler threw: .*stopping)/)
      expect(r.stdout).to.equal('')
    })

    it(`a loader worker that ${dies} under fileh.load rejects it, and a new loader serves the next faults`, () => {
      const r = runFixture('loader-dies', ['load', how])
      expect(r.signal, `hung (killed by spawnSync's timeout); stderr: ${r.stderr}`).to.equal(null)
      expect(r.status).to.equal(0, r.stderr)
      expect(r.stdout).to.match(/^rejected: .*the loader worker serving it stopped.*\npage 0 reads 7\nclosed\n$/)
    })
  }

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


  it('closes the loader\'s instance of a file whose load failed (it is reopened, not left open)', async () => {
    const marker = path.join(dir, 'trace')
    fs.writeFileSync(marker, '')
    const ram = new RAM({ pageSize: PS, limit: 4 * PS })
    const fh = new FileH(new FailingTracedFile({ blksize: PS, marker }), { ram })
    for (let i = 0; i < 3; i++) {
      let error: unknown = null
      await fh.load({ pgoffset: i, pglen: 1 }).catch((e: unknown) => (error = e))
      expect((error as Error).message).to.match(/block unreadable/)
    }
    fh.close()
    ram.close()
    const count = (c: string) => fs.readFileSync(marker, 'utf8').split(c).length - 1
    const deadline = Date.now() + 2000
    await until(() => count('c') >= count('o') || Date.now() > deadline)
    expect(count('c')).to.equal(count('o'), `every instance opened was closed once: ${fs.readFileSync(marker, 'utf8')}`)
  })
})
