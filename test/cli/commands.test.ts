// The wendelin subcommands (info, dump, pack, verify, copy, bench), each run as a child process
// against a database made here: output and exit status, failure cases included.
import { expect } from 'chai'
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { TransactionManager } from '@wendelin/transaction'
import { DB, Persistent, SQLiteStorage, registerClass } from '@wendelin/zodb'
import { IOBTree, OOBTree } from '@wendelin/btrees'
import { RAM, ZBigFile } from '@wendelin/bigfile'

import { damageRootPage } from '../zodb/sqlite-helpers.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const wendelin = path.join(root, 'packages/cli/bin/wendelin.js')
const scratch = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()

class Note extends Persistent {
  text = ''
}
registerClass('test.cli.Note', Note)

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [wendelin, ...args], { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' } })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('wendelin info, dump, pack, verify, copy, bench', function () {
  this.timeout(60_000)
  let dir: string
  let file: string
  let noteOid: bigint

  before(() => {
    dir = mkdtempSync(path.join(scratch, 'wendelin-cli-'))
    file = path.join(dir, 'db.sqlite')
    const db = new DB(new SQLiteStorage(file))
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    const tree = new IOBTree<Note>()
    for (let i = 0; i < 500; i++) tree.set(i, Object.assign(new Note(), { text: `note ${i}` }))
    conn.root.notes = tree
    conn.root.names = new OOBTree<string, number>([['a', 1], ['b', 2]])
    const zf = new ZBigFile(64 * 1024)
    conn.root.zfile = zf
    tm.get().note('first')
    tm.commit()
    noteOid = tree.get(7)!._p_oid!
    tm.begin()
    const fh = zf.open({ ram: new RAM({ pageSize: 64 * 1024, limit: 1024 * 1024 }) })
    const m = fh.mmap(0, 3)
    new Uint8Array(m.buffer).fill(9, 0, 100_000)
    tm.get().note('file data')
    tm.commit()
    m.unmap()
    fh.close()
    tm.begin()
    tree.get(7)!.text = 'edited'
    tm.commit()
    conn.close()
    db.close()
  })

  after(() => rmSync(dir, { recursive: true, force: true }))

  it('every subcommand has --help', () => {
    for (const cmd of ['info', 'dump', 'pack', 'verify', 'copy', 'bench', 'serve']) {
      const r = run(cmd, '--help')
      expect(r.status, cmd).to.equal(0)
      expect(r.stdout).to.match(new RegExp(`Usage: wendelin ${cmd}`))
    }
  })

  it('info shows the kind, size, counts and last transaction', () => {
    const r = run('info', `sqlite:${file}`)
    expect(r.status).to.equal(0, r.stderr)
    expect(r.stdout).to.match(/storage: +SQLiteStorage sqlite:/)
    expect(r.stdout).to.match(/objects: +\d{3}/)
    expect(r.stdout).to.match(/transactions: +4\n/) // root creation + 3 commits
    expect(r.stdout).to.match(/last: +0x[0-9a-f]{16} \(\d{4}-\d\d-\d\dT/)
    const j = JSON.parse(run('info', file, '--json').stdout) as { objects: number; transactions: number; kind: string }
    expect(j.kind).to.equal('SQLiteStorage')
    expect(j.transactions).to.equal(4)
  })

  it('dump prints transactions with decoded records, filtered by oid or tid, or as JSON lines', () => {
    const all = run('dump', file)
    expect(all.status).to.equal(0, all.stderr)
    expect(all.stdout).to.match(/transaction 0x[0-9a-f]{16} .*"first"/)
    expect(all.stdout).to.match(/oid 0x[0-9a-f]{16} \(\d+ bytes\) test\.cli\.Note \{"text":"note 3"\}/)
    expect(all.stdout).to.match(/btrees\.IOBTree/)
    const one = run('dump', file, '--oid', `0x${noteOid.toString(16)}`)
    expect(one.status).to.equal(0, one.stderr)
    expect(one.stdout.match(/^transaction/gm)).to.have.length(2, 'created, then edited')
    expect(one.stdout).to.include('{"text":"edited"}')
    const json = run('dump', file, '--json').stdout.trim().split('\n').map((l) => JSON.parse(l) as { tid: string; description: string; records: unknown[] })
    expect(json).to.have.length(4)
    expect(json[1]!.description).to.equal('first')
    const byTid = run('dump', file, '--tid', json[2]!.tid)
    expect(byTid.stdout.match(/^transaction/gm)).to.have.length(1)
    expect(byTid.stdout).to.include('"file data"')
  })

  it('verify passes a healthy database', () => {
    const r = run('verify', file)
    expect(r.status).to.equal(0, r.stdout + r.stderr)
    // notes, names, and the ZBigFile's block table
    expect(r.stdout).to.match(/^ok: \d+ objects, \d+ revisions, 3 B-trees, 1 ZBigFiles \(2 blocks\)/m)
  })

  it('pack removes old revisions and reports what it did', () => {
    const copy = path.join(dir, 'pack.sqlite')
    const src = new Database(file)
    src.exec(`VACUUM INTO '${copy}'`)
    src.close()
    const r = run('pack', copy)
    expect(r.status).to.equal(0, r.stderr)
    expect(r.stdout).to.match(/packed sqlite:.* unreachable objects removed/)
    expect(r.stdout).to.match(/objects: \d+ → \d+/)
    const one = run('dump', copy, '--oid', `0x${noteOid.toString(16)}`)
    expect(one.stdout.match(/^transaction/gm)).to.have.length(1, 'only the current revision is left')
    expect(run('verify', copy).status).to.equal(0)
  })

  it('copy makes a new SQLite file with the same transactions; again, it copies only what is new; an unrelated destination is refused', () => {
    const copy = path.join(dir, 'copy.sqlite')
    const r = run('copy', file, copy)
    expect(r.status).to.equal(0, r.stderr)
    expect(r.stdout).to.match(/^copied 4 transactions \(\d+ records, [\d.]+ KiB\) from sqlite:.* to sqlite:.*copy\.sqlite in [\d.]+ s$/m)
    expect(run('dump', copy, '--json').stdout).to.equal(run('dump', file, '--json').stdout)
    expect(run('verify', copy).status).to.equal(0)
    expect(run('copy', file, `sqlite:${copy}`).stdout).to.match(/^copied 0 transactions/)
    const other = path.join(dir, 'other.sqlite')
    new DB(new SQLiteStorage(other)).close() // a database of its own: its root's transaction
    const refused = run('copy', file, other)
    expect(refused.status).to.equal(1)
    expect(refused.stderr).to.match(/^wendelin copy: .* is not an earlier copy of .*\n$/)
    expect(run('copy', file, 'zeo://127.0.0.1:1/x?timeout=100').status).to.equal(2)
  })

  it('verify finds a damaged B-tree and a dangling reference, and exits 1', () => {
    const copy = path.join(dir, 'damaged.sqlite')
    const src = new Database(file)
    src.exec(`VACUUM INTO '${copy}'`)
    src.close()
    // Reorder the keys of the OOBTree's inline bucket, and point the root at a missing object.
    const db = new DB(new SQLiteStorage(copy))
    const tm = new TransactionManager({ explicit: true })
    const conn = db.open({ transactionManager: tm })
    tm.begin()
    const names = conn.root.names as unknown as { _keys: string[]; _p_changed: boolean }
    names._keys.reverse()
    names._p_changed = true
    tm.commit()
    conn.close()
    db.close()
    const r = run('verify', copy)
    expect(r.status).to.equal(1)
    expect(r.stdout).to.match(/problem: B-tree oid 0x[0-9a-f]+: .*keys out of order/)
    expect(r.stdout).to.match(/^1 problem in /m)
  })

  it('bad arguments and unusable storages give one clear line and a non-zero exit', () => {
    const missing = run('info', path.join(dir, 'nope.sqlite'))
    expect(missing.status).to.equal(2)
    expect(missing.stderr).to.match(/^wendelin info: .*nope\.sqlite: no such database file\n$/)
    const junk = path.join(dir, 'junk.sqlite')
    writeFileSync(junk, 'not a database at all\n'.repeat(100))
    const corrupt = run('verify', junk)
    expect(corrupt.status).to.equal(2)
    expect(corrupt.stderr).to.match(/^wendelin verify: cannot open sqlite:.*junk\.sqlite: .*(not a database|corrupt)/)
    expect(corrupt.stderr.trim().split('\n')).to.have.length(1)
    const badOid = run('dump', file, '--oid', 'seven')
    expect(badOid.status).to.equal(2)
    expect(badOid.stderr).to.match(/--oid must be a decimal number or 0x-prefixed hex/)
    const noSuchOid = run('dump', file, '--oid', '0xfffffff')
    expect(noSuchOid.status).to.equal(1)
    expect(noSuchOid.stderr).to.match(/no records of oid 0x000000000fffffff/)
    const badDays = run('pack', file, '--days', '-3')
    expect(badDays.status).to.equal(2)
    expect(badDays.stderr).to.match(/--days must be a number of days/)
    const unknown = run('frobnicate')
    expect(unknown.status).to.not.equal(0)
    expect(unknown.stderr).to.match(/unknown command 'frobnicate'/)
    const unreachable = run('info', 'zeo://127.0.0.1:1/main')
    expect(unreachable.status).to.equal(2)
    expect(unreachable.stderr).to.match(/^wendelin info: cannot open zeo:\/\/127\.0\.0\.1:1\/main/)
  })

  it('a storage found corrupt after it opened (a bad page is seen only when read) is one line naming the file and status 2, as the README says', () => {
    const damaged = path.join(dir, 'damaged.sqlite')
    copyFileSync(file, damaged)
    damageRootPage(damaged, 'object_revisions')
    for (const cmd of ['info', 'dump', 'verify', 'pack']) {
      const r = run(cmd, damaged)
      expect(r.status, cmd).to.equal(2)
      expect(r.stderr.trim().split('\n'), cmd).to.have.length(1)
      expect(r.stderr, cmd).to.match(new RegExp(`^wendelin ${cmd}: .*damaged\\.sqlite.*corrupt`))
    }
  })

  it("bad usage (a missing argument, an unknown option or command, a malformed value) is one line 'wendelin CMD: ...' and status 2, not the help", () => {
    const cases: [string[], RegExp][] = [
      [['info'], /^wendelin info: .*missing required argument 'spec'/],
      [['dump', file, '--bogus'], /^wendelin dump: .*unknown option '--bogus'/],
      [['demo', '--size', 'abc'], /^wendelin demo: .*--size/],
      [['verify', file, '--max-problems', 'abc'], /^wendelin verify: .*--max-problems/],
      [['verify', file, '--max-problems', '0'], /^wendelin verify: .*--max-problems/],
      [['frobnicate'], /^wendelin: .*unknown command 'frobnicate'/],
    ]
    for (const [args, re] of cases) {
      const r = run(...args)
      expect(r.status, args.join(' ')).to.equal(2)
      expect(r.stdout, args.join(' ')).to.equal('')
      expect(r.stderr.trim().split('\n'), args.join(' ')).to.have.length(1)
      expect(r.stderr, args.join(' ')).to.match(re)
    }
    for (const cmd of ['info', 'demo', 'serve']) expect(run(cmd, '--help').status, `${cmd} --help`).to.equal(0)
  })

  it('dump | head: the reader going away is no crash and no stack trace', async () => {
    const child = spawn(process.execPath, [wendelin, 'dump', file], { stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()))
    child.stdout.destroy() // `head -1` has what it wants
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
    expect(err).to.not.match(/EPIPE|Unhandled 'error'|at /)
    expect(code).to.equal(0)
  })

  it('bench runs the suite runner (here: a name that matches nothing)', () => {
    const r = run('bench', 'no-such-benchmark-name')
    expect(r.status).to.equal(0, r.stderr)
    expect(r.stdout).to.match(/no benchmarks/)
  })
})
