// A worker thread that never imported @wendelin/zeo opens a zeo:// spec (as a ZBigFile loader
// does): openStorage loads the package that provides the scheme.
import { expect } from 'chai'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { MemoryStorage } from '@wendelin/zodb'
import { StorageServer } from '@wendelin/zeo'

const here = path.dirname(fileURLToPath(import.meta.url))
const worker = path.join(here, '..', 'zodb', 'fixtures', 'open-spec-in-worker.js')

function openInWorker(spec: string, env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const w = new Worker(worker, { workerData: spec, env: { ...process.env, ...env } })
    w.once('message', (m: string) => resolve(m))
    w.once('error', reject)
  })
}

describe('zeo:// specs in a worker thread that imported only @wendelin/zodb', () => {
  it('are opened: openStorage imports the package that provides the scheme', async () => {
    const server = new StorageServer({ token: 'worker-secret', storages: { main: new MemoryStorage() } })
    const address = await server.listen(0, '127.0.0.1')
    try {
      const result = await openInWorker(`zeo://127.0.0.1:${address.port}/main`, { WENDELIN_TOKEN: 'worker-secret' })
      expect(result).to.equal('opened')
    } finally {
      await server.close()
    }
  })
})
