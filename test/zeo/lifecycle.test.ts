// Resource lifecycle of the network storage: what a closed client and a closed server answer,
// and that a process using them exits by itself once they are closed.
import { spawn } from 'node:child_process'
import path from 'node:path'

import { expect } from 'chai'

import { here, serverForSuite } from './helpers.js'

/** Runs a fixture; resolves to its stdout once it exits by itself, or rejects after `ms`. */
function runFixture(name: string, args: string[], ms = 5000): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [path.join(here, 'fixtures', name), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (err += d.toString()))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${name} ${args.join(' ')} did not exit within ${ms} ms (output: ${out}${err})`))
    }, ms)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, out, err })
    })
  })
}

describe('zeo lifecycle', function () {
  this.timeout(30_000)
  const suite = serverForSuite()
  let name = ''
  before(async () => {
    name = await suite.server.addStorage()
  })

  it('a closed client storage does not say it is connected', () => {
    const cs = suite.client(name)
    expect(cs.connected).to.equal(true)
    cs.close()
    expect(cs.closed).to.equal(true)
    expect(cs.connected).to.equal(false)
  })

  for (const when of ['never listened', 'listened']) {
    it(`a closed server (${when}) refuses to listen or serve again, and its process exits by itself`, async () => {
      const { code, out, err } = await runFixture('server-closed.js', when === 'listened' ? ['listened'] : [])
      expect(code).to.equal(0, err)
      const outcome = JSON.parse(out) as { listen: string; addStorage: string }
      expect(outcome.listen).to.match(/^refused: .*closed/)
      expect(outcome.addStorage).to.match(/^refused: .*closed/)
    })
  }
})
