// The `wendelin serve` command, run as a process: it serves its storages, answers clients with
// the token from --token-file, keeps a --read-only storage read-only, and exits 0 on SIGTERM and
// SIGINT.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'

import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage } from '@wendelin/zodb'
import { ClientDisconnected, ClientStorage } from '@wendelin/zeo'

import { freshDir, here, removeScratch } from './helpers.js'

const bin = path.resolve(here, '..', '..', '..', 'packages', 'cli', 'bin', 'wendelin.js')

function run(args: string[], env: Record<string, string> = {}): { child: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, out: () => out, exited }
}

async function waitFor(out: () => string, re: RegExp, ms = 10_000): Promise<RegExpExecArray> {
  const until = Date.now() + ms
  for (;;) {
    const m = re.exec(out())
    if (m) return m
    if (Date.now() > until) throw new Error(`timed out waiting for ${re} in: ${out()}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('wendelin serve', function () {
  this.timeout(30_000)
  after(removeScratch)

  it('lists the serve command in --help, with its options', async () => {
    const p = run(['--help'])
    expect(await p.exited).to.equal(0)
    expect(p.out()).to.match(/serve/)
    const s = run(['serve', '--help'])
    expect(await s.exited).to.equal(0)
    for (const opt of ['--listen', '--storage', '--read-only', '--token-file', '--tls-cert', '--tls-key']) expect(s.out()).to.include(opt)
  })

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`serves named storages with a token file, one read-only, and exits 0 on ${signal}`, async () => {
      const dir = freshDir()
      const tokenFile = path.join(dir, 'token')
      writeFileSync(tokenFile, 'cli-secret\n')
      const main = path.join(dir, 'main.sqlite')
      const archive = path.join(dir, 'archive.sqlite')
      new DB(new SQLiteStorage(archive)).close()
      const p = run(['serve', '--listen', '127.0.0.1:0', '--storage', `main=sqlite:${main}`, '--storage', `archive=sqlite:${archive}`, '--read-only', 'archive', '--token-file', tokenFile])
      const m = await waitFor(p.out, /on zeo:\/\/127\.0\.0\.1:(\d+)/)
      const port = Number(m[1])
      expect(p.out()).to.not.include('cli-secret')
      const storage = new ClientStorage({ host: '127.0.0.1', port, storage: 'main', token: 'cli-secret' })
      const db = new DB(storage)
      const tm = new TransactionManager()
      const conn = db.open({ transactionManager: tm })
      ;(conn.root as Record<string, unknown>).x = 42
      tm.commit()
      db.close()
      const ro = new ClientStorage({ host: '127.0.0.1', port, storage: 'archive', token: 'cli-secret' })
      expect(ro.isReadOnly()).to.equal(true)
      ro.close()
      p.child.kill(signal)
      expect(await p.exited).to.equal(0)
      const check = new DB(new SQLiteStorage(main))
      const c = check.open({ transactionManager: new TransactionManager() })
      expect((c.root as Record<string, unknown>).x).to.equal(42)
      check.close()
    })
  }

  it('serves TLS: a client that trusts the certificate commits, others get nothing', async () => {
    const dir = freshDir()
    const key = path.join(dir, 'key.pem')
    const cert = path.join(dir, 'cert.pem')
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' })
    expect(made.status, 'openssl could make a test certificate').to.equal(0)
    const p = run(['serve', '--listen', '127.0.0.1:0', '--storage', 'main=memory:', '--tls-cert', cert, '--tls-key', key], { WENDELIN_TOKEN: 'tls-secret' })
    try {
      const m = await waitFor(p.out, /on zeos:\/\/127\.0\.0\.1:(\d+)/)
      const port = Number(m[1])
      const ca = readFileSync(cert, 'utf8')
      const storage = new ClientStorage({ host: '127.0.0.1', port, storage: 'main', token: 'tls-secret', tls: { ca } })
      expect(storage.spec).to.match(/^zeos:/)
      const db = new DB(storage)
      const tm = new TransactionManager()
      const conn = db.open({ transactionManager: tm })
      ;(conn.root as Record<string, unknown>).secure = true
      tm.commit()
      db.close()
      // Without the CA the server's certificate is not trusted; without TLS there is no handshake.
      expect(() => new ClientStorage({ host: '127.0.0.1', port, storage: 'main', token: 'tls-secret', tls: true, connectTimeout: 500 })).to.throw(ClientDisconnected)
      expect(() => new ClientStorage({ host: '127.0.0.1', port, storage: 'main', token: 'tls-secret', connectTimeout: 500 })).to.throw(ClientDisconnected)
    } finally {
      p.child.kill('SIGTERM')
      expect(await p.exited).to.equal(0)
    }
  })

  it('refuses to start without a token or without storages', async () => {
    const env = { WENDELIN_TOKEN: '' }
    const p = run(['serve', '--listen', '127.0.0.1:0', '--storage', 'main=memory:'], env)
    expect(await p.exited).to.equal(2)
    expect(p.out()).to.match(/no token/)
    const q = run(['serve', '--listen', '127.0.0.1:0'], { WENDELIN_TOKEN: 'x' })
    expect(await q.exited).to.equal(2)
    expect(q.out()).to.match(/nothing to serve/)
  })
})
