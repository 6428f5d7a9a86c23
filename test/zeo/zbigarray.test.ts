// A ZBigArray shared through the server (issue 9): written by one process, seen by another only
// after its next transaction, element-exact, with exactly the changed blocks invalidated.
import { type ChildProcess, fork } from 'node:child_process'
import path from 'node:path'

import { expect } from 'chai'

import { ServerProcess, TOKEN, here, removeScratch } from './helpers.js'

const BLK = 64 * 1024
const PER_BLOCK = BLK / 8
const N = 4 * PER_BLOCK

describe('ZBigArray through the server', function () {
  this.timeout(60_000)
  let server: ServerProcess
  const children: ChildProcess[] = []

  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
    await server?.stop()
    removeScratch()
  })

  function spawnClient(name: string) {
    const child = fork(path.join(here, 'fixtures', 'zbigarray-client.js'), [String(server.port), name], {
      env: { ...process.env, WENDELIN_TOKEN: TOKEN },
      execArgv: [...process.execArgv, '--import', '@wendelin/zeo'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    children.push(child)
    const queue: ((m: Record<string, unknown>) => void)[] = []
    child.on('message', (m: Record<string, unknown>) => queue.shift()?.(m))
    const ready = new Promise<void>((resolve) => queue.push(() => resolve()))
    return async (m: Record<string, unknown>) => {
      await ready
      return await new Promise<Record<string, unknown>>((resolve, reject) => {
        queue.push((r) => (r.ok ? resolve(r) : reject(new Error(`client failed ${JSON.stringify(m)}: ${String(r.error)}`))))
        child.send(m)
      })
    }
  }

  it('is seen by another process only after its next transaction, element-exact', async () => {
    server = await ServerProcess.start()
    const name = await server.addStorage()
    const writer = spawnClient(name)
    await writer({ cmd: 'create', n: N, blksize: BLK })
    const first = await writer({ cmd: 'digest' })
    expect(first.samples).to.deep.equal([0, 0.5, 4096, 4100, 8192])

    const reader = spawnClient(name)
    await reader({ cmd: 'open' })
    expect(await reader({ cmd: 'digest' })).to.deep.include({ digest: first.digest })

    // The writer changes elements in block 1 only; the reader keeps its snapshot until it begins.
    await writer({ cmd: 'set', at: PER_BLOCK + 8, values: [-1, -2, -3] })
    await writer({ cmd: 'commit' })
    const second = await writer({ cmd: 'digest' })
    expect(second.digest).to.not.equal(first.digest)
    expect(second.samples).to.deep.equal([0, 0.5, 4096, -1, 8192])
    expect((await reader({ cmd: 'digest' })).digest).to.equal(first.digest)
    await reader({ cmd: 'begin' })
    expect((await reader({ cmd: 'stats' })).lastInvalidated).to.deep.equal([1])
    const seen = await reader({ cmd: 'digest' })
    expect(seen.digest).to.equal(second.digest)
    expect(seen.samples).to.deep.equal(second.samples)
  })
})
