// `wendelin demo`, the main job, as a user runs it: a child process in an empty folder.
import { expect } from 'chai'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

import { cleanup, here, tmpDir } from './helpers.js'

const bin = path.resolve(here, '../../../packages/cli/bin/wendelin.js')

function run(cwd: string, args: string[]) {
  const r = spawnSync(process.execPath, [bin, 'demo', ...args], { cwd, encoding: 'utf8', timeout: 120_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('wendelin demo', function () {
  this.timeout(120_000)
  afterEach(() => cleanup())

  it('creates the database here, fills an array larger than RAM, reads it back in chunks and shows isolation', () => {
    const dir = tmpDir()
    const r = run(dir, ['--size', '24', '--ram', '8'])
    expect(r.stderr).not.to.match(/error|mismatch|not what/i)
    expect(r.status, r.stdout + r.stderr).to.equal(0)
    const n = (24 * 1024 * 1024) / 8
    expect(r.stdout).to.contain(`a float64 ZBigArray of ${n.toLocaleString('en-US')} elements (24.0 MiB) with a RAM limit of 8.0 MiB`)
    expect(r.stdout).to.match(/1\. filled a\[i\] = i \* 0\.5 .* in 6 transactions: [\d.]+ s, [\d.]+ [MG]B\/s/)
    expect(r.stdout).to.contain(`count ${n.toLocaleString('en-US')}`)
    expect(r.stdout).to.contain(`max ${(n - 1) * 0.5}`)
    expect(r.stdout).to.match(/check against the formula .*: ok/)
    expect(r.stdout).to.match(/cold read: [\d.]+ s, [\d.]+ [MG]B\/s/)
    const k = Math.floor(n / 3)
    expect(r.stdout).to.contain(`still in its transaction, sees a[${k}] = ${k * 0.5} and length ${n.toLocaleString('en-US')}`)
    expect(r.stdout).to.contain(`after its next transaction boundary it sees a[${k}] = -1 and length ${(n + 1).toLocaleString('en-US')}`)
    const db = path.join(dir, 'wendelin-demo.sqlite')
    const onDisk = fs.statSync(db).size + (fs.existsSync(`${db}-wal`) ? fs.statSync(`${db}-wal`).size : 0)
    expect(onDisk).to.be.greaterThan(24 * 1024 * 1024)
    expect(r.stdout).to.match(/database file: 2[4-9]\.\d MiB \(kept: wendelin-demo.sqlite\)/)
    // a second run replaces the database
    const again = run(dir, ['--size', '24', '--ram', '8', '--no-keep'])
    expect(again.status, again.stderr).to.equal(0)
    expect(again.stdout).to.contain('removed the previous wendelin-demo.sqlite')
    expect(fs.existsSync(db)).to.equal(false)
  })

  it('refuses an array that fits in its RAM, with one line and status 2', () => {
    const r = run(tmpDir(), ['--size', '8', '--ram', '16'])
    expect(r.status).to.equal(2)
    expect(r.stderr).to.match(/^wendelin demo: --size \(8 MiB\) must be larger than --ram \(16 MiB\)/)
  })

  it('where its database cannot be created: one line and status 2 (1 means a wrong result)', () => {
    const dir = tmpDir()
    const plain = path.join(dir, 'plain-file')
    fs.writeFileSync(plain, 'not a folder')
    const r = run(dir, ['--size', '16', '--ram', '8', '--file', path.join(plain, 'demo.sqlite')])
    expect(r.status).to.equal(2)
    expect(r.stderr).to.match(/^wendelin demo: .*demo\.sqlite/)
    expect(r.stderr.trim().split('\n')).to.have.length(1)
  })
})
