// Several client processes sharing one database through a server in another process, after ZEO's
// InvalidationTests (concurrent updates of one B-tree, checked against the serial model) and
// ConnectionTests (the server restarted under load; a client killed during vote).
import { type ChildProcess, fork } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'

import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { DB } from '@wendelin/zodb'

import { ServerProcess, TOKEN, freshDir, here, removeScratch } from './helpers.js'

class ClientProcess {
  child: ChildProcess
  #queue: ((m: Record<string, unknown>) => void)[] = []
  ready: Promise<void>

  constructor(port: number, name: string) {
    this.child = fork(path.join(here, 'fixtures', 'client-process.js'), [String(port), name], {
      env: { ...process.env, WENDELIN_TOKEN: TOKEN },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.ready = new Promise((resolve) => this.#queue.push(() => resolve()))
    this.child.on('message', (m: Record<string, unknown>) => this.#queue.shift()?.(m))
  }

  async command(m: Record<string, unknown>): Promise<Record<string, unknown>> {
    await this.ready
    const p = new Promise<Record<string, unknown>>((resolve) => this.#queue.push(resolve))
    this.child.send(m)
    const r = await p
    if (!r.ok) throw new Error(`client process: ${String(r.error)}`)
    return r
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve()
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    this.child.kill(signal)
    return exited
  }
}

describe('zeo with several client processes', function () {
  this.timeout(60_000)
  let server: ServerProcess
  const children: ClientProcess[] = []

  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => c.kill()))
    await server?.stop()
  })
  after(removeScratch)

  it('4 processes doing bank transfers on one B-tree: the total never changes and the balances equal the serial model', async () => {
    server = await ServerProcess.start()
    const name = await server.addStorage()
    const accounts = 40
    const clients = Array.from({ length: 4 }, () => new ClientProcess(server.port, name))
    children.push(...clients)
    await clients[0]!.command({ cmd: 'setupBank', accounts, balance: 100 })
    const results = await Promise.all(clients.map((c, i) => c.command({ cmd: 'transfers', n: 60, seed: i + 1 })))
    const model = new Array<number>(accounts).fill(100)
    let retries = 0
    for (const r of results) {
      for (const [from, to, amount] of r.transfers as [number, number, number][]) {
        model[from]! -= amount
        model[to]! += amount
      }
      retries += r.retries as number
    }
    for (const c of clients) {
      const { balances } = await c.command({ cmd: 'balances' })
      expect(balances).to.deep.equal(model)
      expect((balances as number[]).reduce((a, b) => a + b, 0)).to.equal(accounts * 100)
    }
    expect(results.map((r) => (r.transfers as unknown[]).length)).to.deep.equal([60, 60, 60, 60])
    // (retries: conflicts on the same accounts that bucket merging could not resolve)
    expect(retries).to.be.a('number')
  })

  it('survives a server restart under load: clients reconnect and continue, and no confirmed commit is lost', async () => {
    // Each process increments a counter object of its own (no conflicts between them, so every
    // failure counted is the restart's) and reads the others' all along (its cache follows them
    // through invalidations, and the restart) and at the end: a reader must see every
    // commit confirmed to the writer, no more (the clean shutdown let voted transactions finish).
    const dir = freshDir()
    const file = path.join(dir, 'db.sqlite')
    const marker = path.join(dir, 'restarted')
    server = await ServerProcess.start()
    const port = server.port
    await server.command({ cmd: 'add', name: 'main', spec: `sqlite:${file}` })
    const clients = Array.from({ length: 3 }, () => new ClientProcess(port, 'main'))
    children.push(...clients)
    await Promise.all(clients.map((c) => c.ready))
    await clients[0]!.command({ cmd: 'setupCounters', keys: clients.map((_, i) => `n${i}`) })
    const work = Promise.all(clients.map((c, i) => c.command({ cmd: 'incrementFor', key: `n${i}`, ms: 2500, marker, keys: clients.map((_, k) => `n${k}`) })))
    await new Promise((r) => setTimeout(r, 800))
    expect(await server.stop()).to.equal(0)
    server = await ServerProcess.start(port)
    await server.command({ cmd: 'add', name: 'main', spec: `sqlite:${file}` })
    writeFileSync(marker, '') // each client now makes 10 more commits, through the new server
    const results = await work
    let noticed = 0
    for (let i = 0; i < clients.length; i++) {
      const { value } = await clients[(i + 1) % clients.length]!.command({ cmd: 'read', key: `n${i}` })
      const { committed, transient, afterMarker } = results[i] as { committed: number; transient: number; afterMarker: number }
      noticed += transient
      expect(afterMarker, 'commits after the restart').to.be.at.least(10)
      // Every commit the client saw succeed is there; none beyond those whose reply was lost.
      expect(value as number).to.be.within(committed, committed + transient)
      expect(value, 'the clean shutdown let every voted transaction finish').to.equal(committed)
    }
    // (how many transactions failed with ClientDisconnected depends on where each client was)
    expect(noticed).to.be.a('number')
  })

  it('releases the commit lock at once when a client is killed during its vote', async () => {
    server = await ServerProcess.start() // transaction timeout: the default 30 s
    const name = await server.addStorage()
    const hanging = new ClientProcess(server.port, name)
    children.push(hanging)
    await hanging.command({ cmd: 'voteAndHang' })
    const storage = server.client(name)
    const db = new DB(storage)
    try {
      await hanging.kill('SIGKILL')
      const started = Date.now()
      const tm = new TransactionManager()
      const conn = db.open({ transactionManager: tm })
      ;(conn.root as Record<string, unknown>).after = 1
      tm.commit()
      expect(Date.now() - started).to.be.below(5000)
    } finally {
      db.close()
    }
  })
})
