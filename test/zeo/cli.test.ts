// The `wendelin serve` command, run as a process: it serves its storages, answers clients with
// the token from --token-file, keeps a --read-only storage read-only, and exits 0 on SIGTERM and
// SIGINT.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'

import { expect } from 'chai'
import { TransactionManager } from '@wendelin/transaction'
import { DB, SQLiteStorage, openStorage } from '@wendelin/zodb'
import { ClientDisconnected, ClientStorage } from '@wendelin/zeo'

import { freshDir, here, removeScratch, txn } from './helpers.js'

const bin = path.resolve(here, '..', '..', '..', 'packages', 'cli', 'bin', 'wendelin.js')

/** `wendelin ARGS` as a child process: out() is its stdout and stderr as they came, err() its stderr alone. */
function run(args: string[], env: Record<string, string> = {}): { child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString()
    err += d.toString()
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, out: () => out, err: () => err, exited }
}

/** `wendelin ARGS` run to its end (a token in the environment). */
function runToEnd(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, WENDELIN_TOKEN: 'x' }, timeout: 10_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** Whether nothing listens on 127.0.0.1:`port` any more. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => (s.destroy(), resolve(false)))
    s.once('error', () => resolve(true))
  })
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

  it('finishes a transaction that has voted when SIGTERM comes, then releases its port and storage', async () => {
    const dir = freshDir()
    const file = path.join(dir, 'main.sqlite')
    const p = run(['serve', '--listen', '127.0.0.1:0', '--storage', `main=sqlite:${file}`], { WENDELIN_TOKEN: 'flight' })
    const port = Number((await waitFor(p.out, /on zeo:\/\/127\.0\.0\.1:(\d+)/))[1])
    const c = new ClientStorage({ host: '127.0.0.1', port, storage: 'main', token: 'flight' })
    try {
      const oid = c.newOid()
      const t = txn()
      c.tpc_begin(t)
      c.store(oid, 0n, new Uint8Array([7, 7, 7]), t)
      c.tpc_vote(t)
      p.child.kill('SIGTERM')
      await waitFor(p.out, /SIGTERM: finishing/)
      const tid = c.tpc_finish(t)
      expect(tid > 0n).to.equal(true)
    } finally {
      c.close()
    }
    expect(await p.exited).to.equal(0)
    expect(await portFree(port)).to.equal(true)
    const s = new SQLiteStorage(file) // not locked by the server any more
    expect(s.lastTransaction() > 0n).to.equal(true)
    s.close()
  })

  it('exits at once on a second SIGINT while the first one waits for a voted transaction', async () => {
    const p = run(['serve', '--listen', '127.0.0.1:0', '--storage', 'main=memory:'], { WENDELIN_TOKEN: 'twice' })
    const port = Number((await waitFor(p.out, /on zeo:\/\/127\.0\.0\.1:(\d+)/))[1])
    const c = new ClientStorage({ host: '127.0.0.1', port, storage: 'main', token: 'twice' })
    try {
      const t = txn()
      c.tpc_begin(t)
      c.store(c.newOid(), 0n, new Uint8Array([1]), t)
      c.tpc_vote(t) // voted: the server's shutdown waits up to 5 s for its finish
      p.child.kill('SIGINT')
      await waitFor(p.out, /SIGINT: finishing/)
      const second = Date.now()
      p.child.kill('SIGINT')
      const code = await p.exited
      expect(Date.now() - second, 'a second SIGINT forces the exit').to.be.below(2_000)
      expect(code, 'a forced exit is not a clean one').to.not.equal(0)
    } finally {
      c.close()
    }
  })

  it('closes cleanly on SIGINT when the reader of its stdout is gone (wendelin serve | tee log, then Ctrl-C)', async () => {
    const dir = freshDir()
    const file = path.join(dir, 'main.sqlite')
    const p = run(['serve', '--listen', '127.0.0.1:0', '--storage', `main=sqlite:${file}`], { WENDELIN_TOKEN: 'tee' })
    const port = Number((await waitFor(p.out, /on zeo:\/\/127\.0\.0\.1:(\d+)/))[1])
    p.child.stdout!.destroy() // tee got the same Ctrl-C
    await new Promise((r) => setTimeout(r, 100))
    p.child.kill('SIGINT')
    const code = await p.exited
    expect(p.err()).to.not.match(/EPIPE|Unhandled 'error'/)
    expect(code).to.equal(0)
    expect(await portFree(port)).to.equal(true)
  })

  it('prints an address clients can open when it listens on IPv6', async function () {
    const probe = net.createServer()
    const ok = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false))
      probe.listen(0, '::1', () => resolve(true))
    })
    probe.close()
    if (!ok) this.skip()
    const p = run(['serve', '--listen', '[::1]:0', '--storage', 'main=memory:'], { WENDELIN_TOKEN: 'v6', WENDELIN_TOKEN_FILE: '' })
    try {
      const m = await waitFor(p.out, /serving main on (\S+)/)
      const spec = `${m[1]!}/main`
      expect(spec).to.match(/^zeo:\/\/\[::1\]:\d+\/main$/)
      process.env.WENDELIN_TOKEN = 'v6'
      try {
        const s = await openStorage(spec)
        s.close()
      } finally {
        delete process.env.WENDELIN_TOKEN
      }
    } finally {
      p.child.kill('SIGTERM')
      await p.exited
    }
  })

  it('refuses --tls-ca or --tls-request-cert without a certificate instead of serving plain TCP', () => {
    const dir = freshDir()
    const ca = path.join(dir, 'ca.pem')
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n')
    for (const extra of [['--tls-ca', ca], ['--tls-request-cert']]) {
      const r = runToEnd(['serve', '--listen', '127.0.0.1:0', '--storage', 'main=memory:', ...extra])
      expect(r.status, `${extra.join(' ')}: ${r.stdout}`).to.equal(2)
      expect(r.stdout).to.not.match(/serving/)
      expect(r.stderr).to.match(/^wendelin serve: .*--tls-cert/)
    }
  })

  it('takes a plain path given to --storage as a SQLite file, as the other commands do', async () => {
    const dir = freshDir()
    const file = path.join(dir, 'plain.sqlite')
    const p = run(['serve', '--listen', '127.0.0.1:0', '--storage', `main=${file}`], { WENDELIN_TOKEN: 'plain' })
    try {
      await waitFor(p.out, /serving main on/)
      expect(existsSync(file)).to.equal(true)
    } finally {
      p.child.kill('SIGTERM')
      await p.exited
    }
  })

  it('answers a malformed option value with one line and status 2 (as the README says), not with its help', () => {
    for (const listen of ['bogus', '127.0.0.1:99999', ':8100']) {
      const r = runToEnd(['serve', '--listen', listen, '--storage', 'main=memory:'])
      expect(r.status, listen).to.equal(2)
      expect(r.stdout, listen).to.equal('')
      expect(r.stderr.trim().split('\n'), listen).to.have.length(1)
      expect(r.stderr, listen).to.match(/^wendelin serve: .*--listen/)
    }
    const t = runToEnd(['serve', '--listen', '127.0.0.1:0', '--storage', 'main=memory:', '--transaction-timeout', 'soon'])
    expect(t.status).to.equal(2)
    expect(t.stderr).to.match(/^wendelin serve: .*--transaction-timeout/)
  })
})
