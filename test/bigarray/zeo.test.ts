// ZBigArray shared through the storage server: two client processes see each other's data and
// shape changes at their next transaction, and concurrent resizes conflict.
import { expect } from 'chai'
import { type ChildProcess, fork } from 'node:child_process'
import path from 'node:path'

import { ServerProcess, TOKEN, removeScratch } from '../zeo/helpers.js'
import { PS, here } from './helpers.js'

describe('ZBigArray: two clients of the storage server (data, shape, resize conflicts)', function () {
  this.timeout(60_000)
  let server: ServerProcess | undefined
  const children: ChildProcess[] = []
  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
    await server?.stop()
    removeScratch()
  })

  function spawnClient(where: string) {
    const child = fork(path.join(here, 'fixtures', 'zbigarray-child.js'), [where, String(PS)], {
      env: { ...process.env, WENDELIN_TOKEN: TOKEN },
      // loader workers reopen the storage from its spec: they must know the zeo: scheme too
      execArgv: [...process.execArgv, '--import', '@wendelin/zeo'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    children.push(child)
    const queue: Array<(m: Record<string, unknown>) => void> = []
    child.on('message', (m: Record<string, unknown>) => queue.shift()?.(m))
    child.on('exit', (code) => {
      for (const waiter of queue.splice(0)) waiter({ ok: false, error: `the client exited with status ${code}` })
    })
    const ready = new Promise<void>((resolve, reject) => queue.push((r) => (r.ok ? resolve() : reject(new Error(String(r.error))))))
    return async (m: Record<string, unknown>) => {
      await ready
      return await new Promise<Record<string, unknown>>((resolve, reject) => {
        queue.push((r) => (r.ok ? resolve(r) : reject(new Error(`client failed ${JSON.stringify(m)}: ${String(r.error)}`))))
        child.send(m)
      })
    }
  }

  it('shows another client’s data and shape changes after its next transaction; concurrent resizes conflict', async () => {
    server = await ServerProcess.start()
    const name = await server.addStorage()
    const where = `zeo:${server.port}:${name}`
    const n = (4 * PS) / 8
    const a = spawnClient(where)
    await a({ cmd: 'create', n })
    await a({ cmd: 'set', i: PS / 8, value: 2 })
    await a({ cmd: 'commit' })
    const b = spawnClient(where)
    expect(await b({ cmd: 'get', i: PS / 8 })).to.deep.include({ value: 2, shape: [n] })

    await a({ cmd: 'set', i: PS / 8, value: 20 })
    await a({ cmd: 'append', values: [5, 6] })
    await a({ cmd: 'commit' })
    expect(await b({ cmd: 'get', i: PS / 8 })).to.deep.include({ value: 2, shape: [n] }) // its snapshot
    await b({ cmd: 'begin' })
    expect(await b({ cmd: 'get', i: PS / 8 })).to.deep.include({ value: 20, shape: [n + 2] })
    expect((await b({ cmd: 'get', i: n + 1 })).value).to.equal(6)
    expect((await b({ cmd: 'sum' })).sum).to.equal(20 + 5 + 6)

    await a({ cmd: 'append', values: [1] })
    await b({ cmd: 'append', values: [2] })
    expect((await a({ cmd: 'commit' })).conflict).to.equal(undefined)
    expect((await b({ cmd: 'commit' })).conflict).to.equal(true)
    await b({ cmd: 'begin' })
    expect(await b({ cmd: 'get', i: n + 2 })).to.deep.include({ value: 1, shape: [n + 3] })
  })
})
