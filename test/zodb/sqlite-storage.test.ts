// SQLiteStorage: the storage conformance suite, and what a file shared by processes must survive.
import { expect } from 'chai'
import { type ChildProcess, fork } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { TransactionManager } from '@wendelin/transaction'
import {
  ConflictError,
  DB,
  POSKeyError,
  ReadOnlyError,
  SQLITE_SCHEMA_VERSION,
  SQLiteStorage,
  StorageFileError,
  UndoError,
  openStorage,
  specForAnotherThread,
  type Tid,
} from '@wendelin/zodb'
import Database from 'better-sqlite3'

import { describeStorageConformance, record } from './storage-conformance.js'
import { Thing } from './fixtures/sqlite-worker-classes.js'
import { commitRecords, damageRootPage, freshSQLiteFile, meta, removeSQLiteFiles, voteError } from './sqlite-helpers.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const workerScript = path.join(here, 'fixtures', 'sqlite-worker.js')
const scratch = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()

const freshFile = () => freshSQLiteFile()
after(removeSQLiteFiles)

describeStorageConformance('SQLiteStorage', (options = {}) => {
  const file = freshFile()
  if (options.readOnly) {
    new SQLiteStorage(file).close()
    return new SQLiteStorage(file, { readOnly: true })
  }
  return new SQLiteStorage(file)
})

/** A file with a database (and its root object) in it. */
function freshDatabase(): string {
  const file = freshFile()
  new DB(new SQLiteStorage(file)).close()
  return file
}


describe('SQLiteStorage', () => {
  describe('opening', () => {
    it('creates a file with the versioned schema, in WAL mode, and reopens it by spec', async () => {
      const file = freshFile()
      const s = new SQLiteStorage(file)
      expect(s.spec).to.equal(`sqlite:${file}`)
      expect(s.shareable).to.equal(true)
      expect(specForAnotherThread(s)).to.equal(s.spec)
      const tid = commitRecords(s, [[s.newOid(), 0n, record({ value: 1 })]])
      s.close()
      const raw = new Database(file, { readonly: true })
      expect(raw.pragma('journal_mode', { simple: true })).to.equal('wal')
      expect(raw.prepare("SELECT value FROM wendelin_meta WHERE key = 'schema_version'").get()).to.deep.equal({ value: SQLITE_SCHEMA_VERSION })
      raw.close()
      const again = await openStorage(`sqlite:${file}`)
      expect(again.lastTransaction()).to.equal(tid)
      again.close()
    })

    it('takes durability and read-only from the spec', async () => {
      const file = freshFile()
      new SQLiteStorage(file).close()
      const normal = (await openStorage(`sqlite:${file}?durability=normal`)) as SQLiteStorage
      expect(normal.durability).to.equal('normal')
      expect(normal.spec).to.equal(`sqlite:${file}?durability=normal`)
      normal.close()
      const ro = await openStorage(`sqlite:${file}?readonly=1`)
      expect(ro.isReadOnly()).to.equal(true)
      expect(() => ro.newOid()).to.throw(ReadOnlyError)
      ro.close()
      let error: unknown
      try {
        await openStorage(`sqlite:${file}?bogus=1`)
      } catch (e) {
        error = e
      }
      expect((error as Error).message).to.match(/unknown option bogus=1/)
    })

    it('creates a file with the page size asked for, keeps an existing file\'s, and refuses a bad one', async () => {
      const file = freshFile()
      const s = (await openStorage(`sqlite:${file}?pageSize=65536`)) as SQLiteStorage
      const big = new Uint8Array(300_000).fill(7)
      const oid = s.newOid()
      const tid = commitRecords(s, [[oid, 0n, big]])
      s.close()
      const raw = new Database(file, { readonly: true })
      expect(raw.pragma('page_size', { simple: true })).to.equal(65536)
      raw.close()
      const again = new SQLiteStorage(file, { pageSize: 1024 }) // an existing file keeps its pages
      expect(again.loadBefore(oid, tid + 1n)!.data).to.deep.equal(big)
      again.close()
      const check = new Database(file, { readonly: true })
      expect(check.pragma('page_size', { simple: true })).to.equal(65536)
      check.close()
      expect(() => new SQLiteStorage(freshFile(), { pageSize: 3000 })).to.throw(RangeError, /pageSize must be a power of two/)
      expect(() => SQLiteStorage.open(`sqlite:${freshFile()}?pageSize=131072`)).to.throw(RangeError, /not 131072/)
    })

    it('creates a file with the auto_vacuum mode asked for, keeps an existing file\'s, and refuses a bad one', async () => {
      for (const [mode, other] of [['incremental', 'none'], ['none', undefined]] as const) {
        const file = freshFile()
        const s = (await openStorage(`sqlite:${file}?autoVacuum=${mode}`)) as SQLiteStorage
        expect(s.autoVacuum).to.equal(mode)
        const oid = s.newOid()
        const tid = commitRecords(s, [[oid, 0n, new Uint8Array(300_000).fill(7)]])
        s.close()
        const again = new SQLiteStorage(file, { autoVacuum: other }) // an existing file keeps its mode
        expect(again.autoVacuum).to.equal(mode)
        expect(again.loadBefore(oid, tid + 1n)!.data.length).to.equal(300_000)
        again.close()
      }
      const byDefault = new SQLiteStorage(freshFile())
      expect(byDefault.autoVacuum).to.equal('incremental')
      byDefault.close()
      expect(() => new SQLiteStorage(freshFile(), { autoVacuum: 'full' as 'none' })).to.throw(RangeError, /autoVacuum must be 'none' or 'incremental'/)
      expect(() => SQLiteStorage.open(`sqlite:${freshFile()}?autoVacuum=yes`)).to.throw(RangeError, /not "yes"/)
    })

    it('copies the WAL back into the file when it closes, even while a read-only instance stays open (it closes last)', () => {
      const file = freshFile()
      const s = new SQLiteStorage(file)
      const oid = s.newOid()
      const tid = commitRecords(s, [[oid, 0n, new Uint8Array(50_000).fill(9)]])
      const ro = new SQLiteStorage(file, { readOnly: true })
      expect(ro.loadBefore(oid, tid + 1n)!.data.length).to.equal(50_000)
      s.close()
      // the database file alone, as a copy without its WAL would be, holds the commit
      const copy = freshFile()
      writeFileSync(copy, readFileSync(file))
      ro.close()
      const alone = new SQLiteStorage(copy, { readOnly: true })
      try {
        expect(alone.lastTransaction()).to.equal(tid)
        expect(alone.loadBefore(oid, tid + 1n)!.data[49_999]).to.equal(9)
      } finally {
        alone.close()
      }
    })

    it('refuses a read-only open of a file that does not exist', () => {
      expect(() => new SQLiteStorage(path.join(scratch, 'no-such-dir-xyz', 'db.sqlite'), { readOnly: true })).to.throw(StorageFileError, /cannot open/)
    })

    it('refuses a file that is not a database, naming it', () => {
      const file = freshFile()
      writeFileSync(file, 'this is a text file, not a database\n'.repeat(200))
      expect(() => new SQLiteStorage(file)).to.throw(StorageFileError, new RegExp(`${path.basename(file)}.*(not a database|corrupt)`))
      expect(readFileSync(file, 'utf8')).to.match(/^this is a text file/, 'the file was left as it was')
    })

    it('refuses an SQLite database of another application', () => {
      const file = freshFile()
      const other = new Database(file)
      other.exec('CREATE TABLE invoices (id INTEGER PRIMARY KEY)')
      other.close()
      expect(() => new SQLiteStorage(file)).to.throw(StorageFileError, /not a wendelin database.*invoices/)
    })

    it('refuses a database in another text encoding than UTF-8 (its records could not be read as they are)', () => {
      const file = freshFile()
      const source = freshFile()
      new SQLiteStorage(source).close()
      const src = new Database(source, { readonly: true })
      const rows = src.prepare('SELECT key, value FROM wendelin_meta').all() as { key: string; value: unknown }[]
      src.close()
      const raw = new Database(file)
      raw.pragma("encoding = 'UTF-16le'")
      raw.exec('CREATE TABLE wendelin_meta (key TEXT PRIMARY KEY, value ANY) STRICT')
      for (const r of rows) raw.prepare('INSERT INTO wendelin_meta (key, value) VALUES (?, ?)').run(r.key, r.value)
      raw.close()
      expect(() => new SQLiteStorage(file)).to.throw(StorageFileError, /text encoding UTF-16le: a wendelin database is UTF-8/)
      expect(() => new SQLiteStorage(file, { readOnly: true })).to.throw(StorageFileError, /UTF-16le/)
    })

    it('refuses a file written by a newer version, saying so', () => {
      const file = freshFile()
      new SQLiteStorage(file).close()
      const raw = new Database(file)
      raw.prepare("UPDATE wendelin_meta SET value = ? WHERE key = 'schema_version'").run(SQLITE_SCHEMA_VERSION + 1)
      raw.close()
      const [newer, ours] = [SQLITE_SCHEMA_VERSION + 1, SQLITE_SCHEMA_VERSION]
      expect(() => new SQLiteStorage(file)).to.throw(StorageFileError, new RegExp(`newer version of wendelin \\(schema version ${newer}; this version reads up to ${ours}\\)`))
    })

    it('reads a version 1 file read-only as it is, and migrates it to version 2 when opened for writing', () => {
      const file = freshFile()
      const s = new SQLiteStorage(file)
      const [a, b] = [s.newOid(), s.newOid()]
      const t1 = commitRecords(s, [[a, 0n, record({ v: 1 })], [b, 0n, record({ v: 1 })]])
      const t2 = commitRecords(s, [[a, t1, record({ v: 2 })]])
      const t3 = commitRecords(s, [[a, t2, record({ v: 3 })]])
      s.close()
      // Back to version 1's layout: the oid index with the tid, unique.
      const raw = new Database(file)
      raw.exec('DROP INDEX object_revisions_by_oid; CREATE UNIQUE INDEX object_revisions_by_oid ON object_revisions (oid, tid)')
      raw.exec("UPDATE wendelin_meta SET value = 1 WHERE key = 'schema_version'")
      raw.close()
      const indexSql = () => {
        const check = new Database(file, { readonly: true })
        const sql = check.prepare("SELECT sql FROM sqlite_master WHERE name = 'object_revisions_by_oid'").pluck().get()
        const version = check.prepare("SELECT value FROM wendelin_meta WHERE key = 'schema_version'").pluck().get()
        check.close()
        return [sql, version]
      }
      const reads = (r: SQLiteStorage) => {
        expect(r.loadBefore(a, 0xffffffffffffffffn)).to.deep.include({ serial: t3, nextSerial: null })
        expect(r.loadBefore(a, t3)).to.deep.equal({ data: record({ v: 2 }), serial: t2, nextSerial: t3 })
        expect(r.loadBefore(a, t2)).to.deep.equal({ data: record({ v: 1 }), serial: t1, nextSerial: t2 })
        expect(r.loadBefore(a, t1)).to.equal(null)
        expect(r.loadSerial(a, t2)).to.deep.equal(record({ v: 2 }))
        const many = r.loadBeforeMany([a, b], t3)
        expect([many.get(a)!.serial, many.get(b)!.serial]).to.deep.equal([t2, t1])
        expect(r.history(a, 5).map((h) => h.tid)).to.deep.equal([t3, t2, t1])
        expect(r.len()).to.equal(2)
      }
      const ro = new SQLiteStorage(file, { readOnly: true })
      reads(ro)
      ro.close()
      expect(indexSql()).to.deep.equal(['CREATE UNIQUE INDEX object_revisions_by_oid ON object_revisions (oid, tid)', 1])
      const rw = new SQLiteStorage(file)
      expect(indexSql()).to.deep.equal(['CREATE INDEX object_revisions_by_oid ON object_revisions (oid)', 2])
      reads(rw)
      expect(voteError(rw, [[a, t2, record({ v: 4 })]])).to.be.instanceOf(ConflictError)
      const t4 = commitRecords(rw, [[a, t3, record({ v: 4 })]])
      expect(rw.loadBefore(a, 0xffffffffffffffffn)).to.deep.equal({ data: record({ v: 4 }), serial: t4, nextSerial: null })
      expect(rw.loadBefore(a, t4)).to.deep.equal({ data: record({ v: 3 }), serial: t3, nextSerial: t4 })
      rw.close()
    })

    it('reports a corrupted file as an error, never as data', () => {
      const file = freshFile()
      const s = new SQLiteStorage(file)
      const oids: bigint[] = []
      for (let i = 0; i < 40; i++) {
        const oid = s.newOid()
        oids.push(oid)
        commitRecords(s, [[oid, 0n, record({ value: 'x'.repeat(3000) + i })]])
      }
      s.close()
      const raw = new Database(file)
      raw.pragma('wal_checkpoint(TRUNCATE)')
      raw.close()
      const size = statSync(file).size
      const fd = openSync(file, 'r+')
      const garbage = Buffer.alloc(4096 * 4, 0xa5)
      writeSync(fd, garbage, 0, garbage.length, Math.floor(size / 2 / 4096) * 4096)
      closeSync(fd)
      let sawError = false
      try {
        const damaged = new SQLiteStorage(file)
        try {
          for (const oid of oids) damaged.loadBefore(oid, 0xffffffffffffffffn)
          expect(damaged.integrityCheck()).to.not.deep.equal([], 'integrity_check finds the damage')
          sawError = true
        } catch (error) {
          expect(error).to.be.instanceOf(StorageFileError)
          expect((error as Error).message).to.match(/corrupt|not a database/)
          sawError = true
        } finally {
          damaged.close()
        }
      } catch (error) {
        expect(error).to.be.instanceOf(StorageFileError)
        sawError = true
      }
      expect(sawError).to.equal(true)
    })

    it('a truncated file is reported, not read as an empty database', () => {
      const file = freshFile()
      const s = new SQLiteStorage(file)
      for (let i = 0; i < 30; i++) commitRecords(s, [[s.newOid(), 0n, record({ value: 'y'.repeat(5000) })]])
      s.close()
      const raw = new Database(file)
      raw.pragma('wal_checkpoint(TRUNCATE)')
      raw.close()
      const bytes = readFileSync(file)
      writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 3)))
      let error: unknown
      try {
        const t = new SQLiteStorage(file)
        try {
          for (let oid = 1n; oid <= 30n; oid++) t.loadBefore(oid, 0xffffffffffffffffn)
          const problems = t.integrityCheck()
          if (problems.length > 0) throw new StorageFileError(file, problems[0]!)
        } finally {
          t.close()
        }
      } catch (e) {
        error = e
      }
      expect(error).to.be.instanceOf(StorageFileError)
    })

    it('reports a corrupt page read while opening as a StorageFileError naming the file, not a bare SQLite error', () => {
      const file = freshFile()
      const s = new SQLiteStorage(file)
      for (let i = 0; i < 200; i++) commitRecords(s, [[s.newOid(), 0n, record({ value: i })]])
      s.close()
      damageRootPage(file, 'transactions')
      let error: unknown
      try {
        new SQLiteStorage(file).close()
      } catch (e) {
        error = e
      }
      expect(error).to.be.instanceOf(StorageFileError)
      expect((error as Error).message).to.include(file)
    })

    it('reports a corrupt page read by len() as a StorageFileError naming the file (wendelin info counts objects so)', () => {
      const file = freshFile()
      const s = new SQLiteStorage(file)
      for (let i = 0; i < 200; i++) commitRecords(s, [[s.newOid(), 0n, record({ value: i })]])
      s.close()
      damageRootPage(file, 'object_revisions_by_oid')
      const damaged = new SQLiteStorage(file, { readOnly: true })
      try {
        expect(() => damaged.len()).to.throw(StorageFileError, file)
      } finally {
        damaged.close()
      }
    })
  })

  it('its spec opens the same data from a worker thread, read at an explicit snapshot', async () => {
    const s = new SQLiteStorage(freshFile())
    const oid = s.newOid()
    const t1 = commitRecords(s, [[oid, 0n, record({ value: 'first' })]])
    const t2 = commitRecords(s, [[oid, t1, record({ value: 'second' })]])
    const read = (before: bigint) =>
      new Promise<{ serial: bigint | null; data: Uint8Array | null; last: bigint }>((resolve, reject) => {
        const w = new Worker(path.join(here, 'fixtures', 'sqlite-thread-reader.js'), { workerData: { spec: specForAnotherThread(s), oid, before } })
        w.once('message', resolve)
        w.once('error', reject)
      })
    const atT1 = await read(t1 + 1n)
    expect(atT1.serial).to.equal(t1)
    expect(Buffer.from(atT1.data!)).to.deep.equal(Buffer.from(record({ value: 'first' })))
    const latest = await read(0xffffffffffffffffn)
    expect(latest.serial).to.equal(t2)
    expect(latest.last).to.equal(t2)
    s.close()
  })

  describe('undo', () => {
    it('undoes the newest transaction: changed objects go back, created ones go away', () => {
      const s = new SQLiteStorage(freshFile())
      const a = s.newOid()
      const t1 = commitRecords(s, [[a, 0n, record({ value: 1 })]])
      const b = s.newOid()
      const t2 = commitRecords(s, [[a, t1, record({ value: 2 })], [b, 0n, record({ value: 'new' })]])
      expect(s.undoLog(5).map((e) => e.tid)).to.deep.equal([t2, t1])
      const txn = meta()
      s.tpc_begin(txn)
      expect(s.undo(t2, txn).sort()).to.deep.equal([a, b].sort())
      s.tpc_vote(txn)
      const t3 = s.tpc_finish(txn)
      const now = 0xffffffffffffffffn
      expect(s.loadBefore(a, now)!.data).to.deep.equal(record({ value: 1 }))
      expect(s.loadBefore(a, now)!.serial).to.equal(t3)
      expect(s.loadBefore(b, now)).to.equal(null, 'the object t2 created is gone')
      expect(s.loadBefore(b, t3)!.data).to.deep.equal(record({ value: 'new' }), 'history keeps it')
      expect(s.len()).to.equal(1)
      s.close()
    })

    it('refuses to undo a transaction whose objects changed later', () => {
      const s = new SQLiteStorage(freshFile())
      const a = s.newOid()
      const t1 = commitRecords(s, [[a, 0n, record({ value: 1 })]])
      commitRecords(s, [[a, t1, record({ value: 2 })]])
      const txn = meta()
      s.tpc_begin(txn)
      expect(() => s.undo(t1, txn)).to.throw(UndoError, /changed by a later transaction/)
      s.tpc_abort(txn)
      s.close()
    })
  })

  describe('pack', () => {
    it('reports progress and keeps a reader at a snapshot after the pack time working', async () => {
      const file = freshFile()
      const storage = new SQLiteStorage(file)
      const db = new DB(storage)
      const tmA = new TransactionManager({ explicit: true })
      const writer = db.open({ transactionManager: tmA })
      tmA.begin()
      const root = writer.root as Record<string, unknown>
      for (let i = 0; i < 50; i++) {
        const t = new Thing()
        t.value = i
        root[`t${i}`] = t
      }
      tmA.commit()
      for (let round = 0; round < 5; round++) {
        tmA.begin()
        for (let i = 0; i < 50; i++) (root[`t${i}`] as Thing).value += 100
        if (round === 4) root.t0 = null // t0 becomes garbage
        tmA.commit()
      }
      const tmB = new TransactionManager({ explicit: true })
      const reader = db.open({ transactionManager: tmB })
      tmB.begin()
      const readerRoot = reader.root as Record<string, unknown>
      const phases: string[] = []
      const before = storage.getSize()
      storage.pack(storage.lastTransaction(), true, { onProgress: (p) => phases.push(p.phase) })
      expect(phases).to.include.members(['reachability', 'removing revisions', 'removing unreachable objects', 'done'])
      // The reader's snapshot is the newest one: every object it can reach still loads.
      reader.cacheMinimize()
      for (let i = 1; i < 50; i++) expect((readerRoot[`t${i}`] as Thing).value).to.equal(i + 500)
      tmB.abort()
      expect(storage.history(0n, 100).length).to.equal(1, 'only the newest root revision is left')
      expect(storage.len()).to.equal(50, 'root + 49 things; t0 was collected')
      expect(storage.getSize()).to.be.at.most(before)
      writer.close()
      reader.close()
      db.close()
    })

    it('at a time between revisions: every snapshot from the pack time on reads as before', () => {
      const storage = new SQLiteStorage(freshFile())
      const oids = [storage.newOid(), storage.newOid(), storage.newOid()]
      const serials = new Map<bigint, Tid>(oids.map((o) => [o, 0n]))
      const tids: Tid[] = []
      // Objects change at different rates, so their revisions interleave in the table.
      for (let t = 0; t < 30; t++) {
        const changed = oids.filter((_, k) => t % (k + 1) === 0)
        const tid = commitRecords(storage, changed.map((o) => [o, serials.get(o)!, record({ t })]))
        for (const o of changed) serials.set(o, tid)
        tids.push(tid)
      }
      const packTid = tids[17]!
      const snapshots = tids.filter((t) => t >= packTid).map((t) => t + 1n)
      const read = () => snapshots.map((at) => oids.map((o) => storage.loadBefore(o, at)!.serial))
      const before = read()
      storage.pack(packTid, false)
      expect(read()).to.deep.equal(before)
      // Per object: its revisions after packTid and the one it had at packTid.
      for (const o of oids) {
        const kept = storage.history(o, 100).map((h) => h.tid)
        expect(kept.filter((t) => t <= packTid)).to.have.length(1)
        expect(kept[kept.length - 1]).to.equal(storage.loadBefore(o, packTid + 1n)!.serial)
      }
      storage.close()
    })

    it('keeps the newest transaction when it empties it: later tids stay above it and other instances hear of them', () => {
      const file = freshFile()
      const a = new SQLiteStorage(file)
      const t1 = commitRecords(a, [[0n, 0n, record({ value: 'root' })]])
      const realNow = Date.now
      const frozen = realNow()
      // Commits within one millisecond (or after the clock stepped back): each tid is the last one + 1.
      Date.now = () => frozen
      try {
        const garbage = a.newOid()
        const t2 = commitRecords(a, [[garbage, 0n, record({ value: 'never referenced' })]])
        a.pack(t2, true) // collects `garbage`, the only object t2 wrote
        const heard: Tid[] = []
        a.addListener({ invalidate: (tid) => heard.push(tid) })
        const b = new SQLiteStorage(file)
        try {
          expect(b.lastTransaction()).to.equal(t2, 'the newest tid is not forgotten')
          const t3 = commitRecords(b, [[0n, t1, record({ value: 'root 2' })]])
          expect(t3 > t2).to.equal(true, 'tids strictly increase')
          a.lastTransaction()
          expect(heard).to.deep.equal([t3], 'the other instance hears of the commit')
          expect(a.loadBefore(0n, t2 + 1n)!.serial).to.equal(t1, 'a snapshot at t2 does not see t3')
        } finally {
          b.close()
        }
      } finally {
        Date.now = realNow
      }
      a.close()
    })
  })

  describe('several processes on one file', function () {
    this.timeout(60_000)
    const children: ChildProcess[] = []
    afterEach(() => {
      for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
    })

    function spawnWorker(file: string) {
      const child = fork(workerScript, [file], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
      children.push(child)
      const queue: Array<(m: Record<string, unknown>) => void> = []
      child.on('message', (m: Record<string, unknown>) => queue.shift()?.(m))
      const ready = new Promise<void>((resolve) => queue.push(() => resolve()))
      const ask = (m: Record<string, unknown>) => new Promise<Record<string, unknown>>((resolve) => {
        queue.push(resolve)
        child.send(m)
      })
      const must = async (m: Record<string, unknown>) => {
        const r = await ask(m)
        if (!r.ok) throw new Error(`worker failed ${JSON.stringify(m)}: ${String(r.name)}: ${String(r.error)}`)
        return r
      }
      return { child, ready, ask, must }
    }

    it('each process sees the other’s commits at its next transaction', async () => {
      const file = freshDatabase()
      const a = spawnWorker(file)
      const b = spawnWorker(file)
      await Promise.all([a.ready, b.ready])
      await a.must({ cmd: 'begin' })
      await b.must({ cmd: 'begin' })
      await a.must({ cmd: 'set', key: 'x', value: 1 })
      await a.must({ cmd: 'commit' })
      expect((await b.must({ cmd: 'read', key: 'x' })).value).to.equal(null, 'b keeps its snapshot during its transaction')
      await b.must({ cmd: 'abort' })
      await b.must({ cmd: 'begin' })
      expect((await b.must({ cmd: 'read', key: 'x' })).value).to.equal(1)
      await b.must({ cmd: 'set', key: 'y', value: 2 })
      await b.must({ cmd: 'commit' })
      await a.must({ cmd: 'begin' })
      expect((await a.must({ cmd: 'read', key: 'y' })).value).to.equal(2)
      await a.must({ cmd: 'abort' })
    })

    it('a write conflict between processes gives exactly one ConflictError and loses nothing', async () => {
      const file = freshDatabase()
      const a = spawnWorker(file)
      const b = spawnWorker(file)
      await Promise.all([a.ready, b.ready])
      await a.must({ cmd: 'begin' })
      await a.must({ cmd: 'setThing', key: 'thing', value: 0 })
      await a.must({ cmd: 'commit' })
      await a.must({ cmd: 'begin' })
      await b.must({ cmd: 'begin' })
      await a.must({ cmd: 'setThing', key: 'thing', value: 10 })
      await b.must({ cmd: 'setThing', key: 'thing', value: 20 })
      const [ra, rb] = [await a.ask({ cmd: 'commit' }), await b.ask({ cmd: 'commit' })]
      expect(ra.ok).to.equal(true)
      expect(rb.ok).to.equal(false)
      expect(rb.name).to.equal('ConflictError')
      await b.must({ cmd: 'abort' })
      await b.must({ cmd: 'begin' })
      expect((await b.must({ cmd: 'read', key: 'thing' })).value).to.equal(10)
      await b.must({ cmd: 'abort' })
      // Concurrent increments with retries: no update is lost.
      const [ia, ib] = await Promise.all([a.must({ cmd: 'increment', key: 'n', times: 60 }), b.must({ cmd: 'increment', key: 'n', times: 60 })])
      await a.must({ cmd: 'begin' })
      expect((await a.must({ cmd: 'read', key: 'n' })).value).to.equal(120)
      await a.must({ cmd: 'abort' })
      expect(Number(ia.conflicts) + Number(ib.conflicts)).to.be.at.least(0)
    })

    it('survives SIGKILL at random moments of its commits: committed transactions whole, none partial', async function () {
      this.timeout(120_000)
      const file = freshDatabase()
      let next = 1
      let killsDuringCommits = 0
      for (let round = 0; round < 20; round++) {
        const w = spawnWorker(file)
        await w.ready
        let printed = ''
        w.child.stdout!.on('data', (d: Buffer) => (printed += d.toString()))
        void w.ask({ cmd: 'crashLoop', start: next })
        await new Promise((resolve) => setTimeout(resolve, 30 + Math.floor(Math.random() * 120)))
        w.child.kill('SIGKILL')
        await new Promise((resolve) => w.child.once('exit', resolve))
        const acknowledged = printed.trim().split('\n').filter(Boolean).map(Number)
        if (acknowledged.length > 0) killsDuringCommits++
        // The file opens; every transaction is whole; the newest is at least the last acknowledged.
        const s = new SQLiteStorage(file)
        try {
          expect(s.integrityCheck()).to.deep.equal([])
          let last = 0
          for (const t of s.iterator(1n)) {
            if (t.records.length === 1 && t.records[0]!.oid === 0n) continue // the root's creation
            expect(t.records.length).to.equal(4, `transaction ${t.tid} is whole (root + 3 things)`)
          }
          const db = new DB(s)
          const conn = db.open({ transactionManager: new TransactionManager() })
          const root = conn.root as Record<string, unknown>
          last = (root.last as number | undefined) ?? 0
          if (acknowledged.length > 0) expect(last).to.be.at.least(acknowledged.at(-1)!)
          for (let j = 0; j < 3 && last > 0; j++) expect((root[`slot${j}`] as Thing).n).to.equal(last, 'all slots from the same transaction')
          next = last + 1
          conn.close()
        } finally {
          s.close()
        }
      }
      expect(killsDuringCommits).to.be.at.least(10, 'most kills landed while the child was committing')
    })
  })
})


describe('SQLiteStorage stores of new objects', () => {
  it('an oid it handed out is stored as new once; storing it as new again, or a foreign one, conflicts', () => {
    const file = freshFile()
    const s = new SQLiteStorage(file)
    const commitOrAbort = (oid: bigint, value: string) => {
      const txn = meta()
      s.tpc_begin(txn)
      try {
        s.store(oid, 0n, record({ value }), txn)
        s.tpc_vote(txn)
        return s.tpc_finish(txn)
      } catch (error) {
        s.tpc_abort(txn)
        throw error
      }
    }
    const a = s.newOid()
    commitRecords(s, [[a, 0n, record({ value: 1 })]])
    expect(() => commitOrAbort(a, 'second')).to.throw(ConflictError)
    // A new oid of an aborted transaction is still new; an oid another instance wrote is not.
    const b = s.newOid()
    const txn = meta()
    s.tpc_begin(txn)
    s.store(b, 0n, record({ value: 'aborted' }), txn)
    s.tpc_vote(txn)
    s.tpc_abort(txn)
    const other = new SQLiteStorage(file)
    const c = other.newOid()
    commitRecords(other, [[c, 0n, record({ value: 'theirs' })]])
    other.close()
    commitOrAbort(b, 'again')
    expect(() => commitOrAbort(c, 'mine')).to.throw(ConflictError)
    expect(s.loadBefore(c, 0xffffffffffffffffn)!.data).to.deep.equal(record({ value: 'theirs' }))
    expect(s.loadBefore(b, 0xffffffffffffffffn)!.data).to.deep.equal(record({ value: 'again' }))
    s.close()
  })
})

describe('SQLiteStorage commits of many objects (rows and serial checks go in batches)', () => {
  it('writes every row of a big commit and finds a conflict anywhere in it', () => {
    const s = new SQLiteStorage(freshFile())
    const oids = Array.from({ length: 150 }, () => s.newOid())
    const t1 = commitRecords(s, oids.map((oid, i) => [oid, 0n, record({ i })]))
    const t2 = commitRecords(s, oids.slice(0, 131).map((oid, i) => [oid, t1, record({ i, v: 2 })]))
    for (const [i, oid] of oids.entries()) {
      const r = s.loadBefore(oid, 0xffffffffffffffffn)!
      expect(r.serial).to.equal(i < 131 ? t2 : t1)
      expect(r.data).to.deep.equal(record(i < 131 ? { i, v: 2 } : { i }))
    }
    for (const bad of [0, 70, 129, 140]) {
      // Every object based on its current serial but one, based on t1 (stale for the first 131).
      const error = voteError(
        s,
        oids.map((oid, i): [bigint, Tid, Uint8Array] => [oid, i === bad ? (bad < 131 ? t1 : t2) : i < 131 ? t2 : t1, record({ i, v: 3 })]),
      )
      expect(error, `object ${bad}`).to.be.instanceOf(ConflictError)
      expect((error as ConflictError).oid).to.equal(oids[bad])
    }
    expect(s.loadBefore(oids[0]!, 0xffffffffffffffffn)!.serial).to.equal(t2)
    s.close()
  })

  it('a row that fails to insert in the middle of a vote leaves the file as it was, and the instance usable', () => {
    const file = freshFile()
    const s = new SQLiteStorage(file)
    const oids = Array.from({ length: 150 }, () => s.newOid())
    const t1 = commitRecords(s, oids.map((oid, i) => [oid, 0n, record({ i })]))
    const raw = new Database(file)
    raw.defaultSafeIntegers(true)
    const count = () => raw.prepare('SELECT count(*) FROM object_revisions').pluck().get()
    // A trigger makes the insert of object 100 fail: in the second batch of rows, after a first
    // batch (and the rows of this statement before it) were written. Each way a statement can
    // fail: alone (FAIL), undoing itself (ABORT), ending the transaction (ROLLBACK).
    for (const how of ['FAIL', 'ABORT', 'ROLLBACK']) {
      raw.exec(`CREATE TRIGGER fail_one BEFORE INSERT ON object_revisions WHEN NEW.oid = ${oids[100]} BEGIN SELECT RAISE(${how}, 'no'); END`)
      const error = voteError(s, oids.map((oid, i): [bigint, Tid, Uint8Array] => [oid, t1, record({ i, v: 2 })]))
      expect((error as { code?: string }).code, how).to.equal('SQLITE_CONSTRAINT_TRIGGER')
      raw.exec('DROP TRIGGER fail_one')
      expect(count(), how).to.equal(150n)
      expect(raw.prepare('SELECT count(*) FROM transactions').pluck().get(), how).to.equal(1n)
      expect(s.lastTransaction(), how).to.equal(t1)
    }
    raw.close()
    for (const [i, oid] of oids.entries()) expect(s.loadBefore(oid, 0xffffffffffffffffn)!.data).to.deep.equal(record({ i }))
    const t2 = commitRecords(s, oids.map((oid, i) => [oid, t1, record({ i, v: 3 })]))
    for (const [i, oid] of oids.entries()) {
      const r = s.loadBefore(oid, 0xffffffffffffffffn)!
      expect([r.serial, r.data]).to.deep.equal([t2, record({ i, v: 3 })])
    }
    s.close()
  })
})

describe('SQLiteStorage.loadBeforeMany', () => {
  it('gives at every snapshot what loadBefore gives for each object (objects created, changed, deleted later)', () => {
    const s = new SQLiteStorage(freshFile())
    const oids = Array.from({ length: 150 }, () => s.newOid())
    const serials = new Map<bigint, Tid>()
    const tids: Tid[] = []
    // Object i is created in transaction i % 3 and changed in every later one k where
    // i % (k + 2) === 0; 20 more are created in transaction 4, and that creation is undone.
    for (let k = 0; k < 4; k++) {
      const records: Array<[bigint, Tid, Uint8Array]> = []
      for (const [i, oid] of oids.entries()) {
        const created = serials.has(oid)
        if ((!created && i % 3 === k) || (created && i % (k + 2) === 0)) records.push([oid, serials.get(oid) ?? 0n, record({ i, k })])
      }
      const tid = commitRecords(s, records)
      for (const [oid] of records) serials.set(oid, tid)
      tids.push(tid)
    }
    const undone = Array.from({ length: 20 }, () => s.newOid())
    tids.push(commitRecords(s, undone.map((oid, i) => [oid, 0n, record({ i, k: 4 })])))
    oids.push(...undone)
    const txn = meta()
    s.tpc_begin(txn)
    expect(s.undo(tids[4]!, txn)).to.have.length(20)
    s.tpc_vote(txn)
    tids.push(s.tpc_finish(txn))
    const befores = [tids[0]!, ...tids.slice(1).flatMap((t) => [t, t + 1n]), 0xffffffffffffffffn]
    for (const before of befores) {
      const many = s.loadBeforeMany([...oids, 10_000n], before)
      for (const oid of oids) {
        const one = s.loadBefore(oid, before)
        const got = many.get(oid)
        if (one === null) expect(got, `oid ${oid} before ${before}`).to.equal(undefined)
        else expect([got?.serial, got?.data], `oid ${oid} before ${before}`).to.deep.equal([one.serial, one.data])
      }
      expect(many.has(10_000n)).to.equal(false)
    }
    expect(s.len()).to.equal(150) // the 20 undone creations are deletions
    s.close()
  })

  it('gives records of any bytes and size exactly: empty, NUL and invalid UTF-8 bytes, over 64 KiB (read on their own)', () => {
    const s = new SQLiteStorage(freshFile())
    let seed = 1
    const bytes = (n: number) => Uint8Array.from({ length: n }, () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) & 0xff)
    const sizes = [0, 1, 2, 3, 100, 65_535, 65_536, 65_537, 200_000, 7]
    const oids = sizes.map(() => s.newOid())
    const first = sizes.map((n) => bytes(n))
    first[2] = Uint8Array.of(0, 0) // NULs
    first[3] = Uint8Array.of(0xc3, 0x28, 0xff) // not UTF-8
    const t1 = commitRecords(s, oids.map((oid, i) => [oid, 0n, first[i]!]))
    // Every other object changes: a snapshot before t2 reads those on their own, the others packed.
    const second = sizes.map((n) => bytes(n + 1))
    const changed = oids.flatMap((oid, i): Array<[bigint, Tid, Uint8Array]> => (i % 2 === 0 ? [[oid, t1, second[i]!]] : []))
    const t2 = commitRecords(s, changed)
    for (const [before, want] of [
      [t2, first],
      [t2 + 1n, first.map((d, i) => (i % 2 === 0 ? second[i]! : d))],
    ] as const) {
      const many = s.loadBeforeMany(oids, before)
      oids.forEach((oid, i) => {
        const got = many.get(oid)
        expect(got?.serial, `size ${sizes[i]} before ${before}`).to.equal(before === t2 || i % 2 === 1 ? t1 : t2)
        expect(Buffer.from(got!.data).equals(want[i]!), `size ${sizes[i]} before ${before}`).to.equal(true)
      })
    }
    s.close()
  })
})

describe('SQLiteStorage serial checks from what an instance knows (no query for objects it loaded or wrote)', () => {
  const MAX = 0xffffffffffffffffn
  /** Vote a store of `oid` based on `oldSerial`: the error, or undefined after a commit. */
  function tryStore(s: SQLiteStorage, oid: bigint, oldSerial: bigint, state: Record<string, unknown>): unknown {
    const txn = meta()
    s.tpc_begin(txn)
    try {
      s.store(oid, oldSerial, record(state), txn)
      s.tpc_vote(txn)
      s.tpc_finish(txn)
      return undefined
    } catch (error) {
      s.tpc_abort(txn)
      return error
    }
  }

  it('a commit by another instance after our load still conflicts, whether we loaded one object or a batch', () => {
    const file = freshFile()
    const a = new SQLiteStorage(file)
    const b = new SQLiteStorage(file)
    const oids = [a.newOid(), a.newOid()]
    const t1 = commitRecords(a, oids.map((oid) => [oid, 0n, record({ v: 1 })]))
    expect(a.loadBefore(oids[0]!, MAX)!.serial).to.equal(t1)
    expect(a.loadBeforeMany([oids[1]!], a.lastTransaction() + 1n).get(oids[1]!)!.serial).to.equal(t1)
    // b changes both; a has not polled since its loads.
    commitRecords(b, oids.map((oid) => [oid, t1, record({ v: 2 })]))
    for (const oid of oids) expect(tryStore(a, oid, t1, { v: 3 }), `oid ${oid}`).to.be.instanceOf(ConflictError)
    a.close()
    b.close()
  })

  it('a load at an old snapshot does not make an older serial look current', () => {
    const file = freshFile()
    const a = new SQLiteStorage(file)
    const b = new SQLiteStorage(file)
    const oid = a.newOid()
    const t1 = commitRecords(a, [[oid, 0n, record({ v: 1 })]])
    const t2 = commitRecords(b, [[oid, t1, record({ v: 2 })]])
    expect(a.lastTransaction()).to.equal(t2) // a polled b's commit
    expect(a.loadBeforeMany([oid], t2).get(oid)!.serial).to.equal(t1)
    expect(a.loadBefore(oid, t2)!.serial).to.equal(t1)
    expect(tryStore(a, oid, t1, { v: 3 })).to.be.instanceOf(ConflictError)
    expect(tryStore(a, oid, t2, { v: 3 })).to.equal(undefined)
    a.close()
    b.close()
  })

  it('a listener that throws during a poll leaves every polled commit known: a stale store still conflicts', () => {
    const file = freshFile()
    const a = new SQLiteStorage(file)
    const b = new SQLiteStorage(file)
    const [x, y] = [a.newOid(), a.newOid()]
    const tx = commitRecords(a, [[x, 0n, record({ v: 1 })]])
    const ty = commitRecords(a, [[y, 0n, record({ v: 1 })]])
    expect(a.loadBefore(x, MAX)!.serial).to.equal(tx)
    const ty2 = commitRecords(b, [[y, ty, record({ v: 2 })]])
    const tx2 = commitRecords(b, [[x, tx, record({ v: 2 })]])
    const heard: bigint[] = []
    let failOnce = true
    a.addListener({
      invalidate(tid) {
        if (failOnce) {
          failOnce = false
          throw new Error('listener failed')
        }
        heard.push(tid)
      },
      invalidateCache() {},
    })
    const other: bigint[] = []
    a.addListener({ invalidate: (tid) => void other.push(tid), invalidateCache() {} })
    // the first commit's delivery fails; the second is recorded and delivered all the same
    expect(() => a.lastTransaction()).to.throw(/listener failed/)
    expect(a.lastTransaction()).to.equal(tx2)
    expect(heard).to.deep.equal([tx2])
    expect(other).to.deep.equal([ty2, tx2])
    expect(tryStore(a, x, tx, { v: 3 })).to.be.instanceOf(ConflictError)
    expect(tryStore(a, x, tx2, { v: 3 })).to.equal(undefined)
    a.close()
    b.close()
  })

  it('an oid the instance handed out has no revision until it commits one: only a creation of it commits, once', () => {
    const s = new SQLiteStorage(freshFile())
    const [a, b, c] = [s.newOid(), s.newOid(), s.newOid()]
    const t0 = commitRecords(s, [[c, 0n, record({ v: 0 })]])
    expect(tryStore(s, a, t0, { v: 1 })).to.be.instanceOf(ConflictError) // based on a revision it never had
    expect(tryStore(s, a, 0n, { v: 1 })).to.equal(undefined)
    const t1 = s.lastTransaction()
    const again = tryStore(s, a, 0n, { v: 2 }) // a second creation
    expect(again).to.be.instanceOf(ConflictError)
    expect((again as ConflictError).committedSerial).to.equal(t1)
    expect(tryStore(s, a, t1, { v: 2 })).to.equal(undefined)
    // An aborted creation leaves the oid new; so does a pack, which makes the instance forget.
    const txn = meta()
    s.tpc_begin(txn)
    s.store(b, 0n, record({ v: 1 }), txn)
    s.tpc_vote(txn)
    s.tpc_abort(txn)
    s.pack(new Date(Date.now() + 60_000), false)
    const d = s.newOid()
    expect(tryStore(s, b, 0n, { v: 1 })).to.equal(undefined)
    expect(tryStore(s, d, 0n, { v: 1 })).to.equal(undefined)
    expect(tryStore(s, b, 0n, { v: 2 })).to.be.instanceOf(ConflictError)
    expect(tryStore(s, d, 0n, { v: 2 })).to.be.instanceOf(ConflictError)
    s.close()
  })

  it('a pack by another instance that removed an object makes a store of it conflict', () => {
    const file = freshFile()
    const a = new SQLiteStorage(file)
    const root = 0n
    commitRecords(a, [[root, 0n, record({ v: 0 })]])
    const oid = a.newOid()
    const t1 = commitRecords(a, [[oid, 0n, record({ v: 1 })]]) // never reachable from the root
    expect(a.loadBefore(oid, MAX)!.serial).to.equal(t1)
    const b = new SQLiteStorage(file)
    b.pack(b.lastTransaction(), true)
    expect(() => b.loadBefore(oid, MAX)).to.throw(POSKeyError)
    b.close()
    expect(tryStore(a, oid, t1, { v: 2 })).to.be.instanceOf(ConflictError)
    a.close()
  })
})

describe('SQLiteStorage isolation of a commit in progress', () => {
  it('readers of the same instance do not see a voted transaction before it finishes, nor after it aborts', () => {
    const s = new SQLiteStorage(freshFile())
    const a = s.newOid()
    const t1 = commitRecords(s, [[a, 0n, record({ value: 1 })]])
    const b = s.newOid()
    const txn = meta()
    s.tpc_begin(txn)
    s.store(a, t1, record({ value: 2 }), txn)
    s.store(b, 0n, record({ value: 'new' }), txn)
    s.tpc_vote(txn)
    const now = 0xffffffffffffffffn
    const seen = s.loadBefore(a, now)!
    expect(seen.serial).to.equal(t1)
    expect(seen.nextSerial).to.equal(null)
    expect(seen.data).to.deep.equal(record({ value: 1 }))
    expect(() => s.loadBefore(b, now)).to.throw(POSKeyError)
    expect(s.history(a, 10).map((h) => h.tid)).to.deep.equal([t1])
    expect([...s.iterator()].map((t) => t.tid)).to.not.include(s.lastTransaction() + 1n)
    expect(s.len()).to.equal(1)
    s.tpc_abort(txn)
    expect(s.loadBefore(a, now)!.serial).to.equal(t1)
    s.close()
  })

  it('a process that finds a new file empty, then waits for the write lock, uses the schema another created meanwhile', async function () {
    this.timeout(60_000)
    const file = freshFile()
    const holder = new Database(file)
    holder.pragma('journal_mode = WAL')
    holder.exec('BEGIN IMMEDIATE') // the child will find no tables, then queue for this lock
    const child = fork(path.join(here, 'fixtures', 'sqlite-opener.js'), [file, '0'], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] })
    let err = ''
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    await new Promise((resolve) => setTimeout(resolve, 1500)) // let the child reach the lock
    holder.exec('ROLLBACK')
    holder.close()
    new DB(new SQLiteStorage(file)).close() // we create the schema and the root first
    expect(await exited).to.equal(0, err)
    const s = new SQLiteStorage(file)
    expect(s.history(0n, 10)).to.have.length(1, 'one root')
    s.close()
  })

  it('a database opened by two clients at once gets one root: the client that loses the race uses the winner’s', () => {
    const file = freshFile()
    const winner = new SQLiteStorage(file)
    const loser = new SQLiteStorage(file)
    // The loser checked for the root just before the winner created it.
    const realLoadBefore = loser.loadBefore.bind(loser)
    let first = true
    loser.loadBefore = (oid, tid) => {
      if (oid === 0n && first) {
        first = false
        throw new POSKeyError(0n)
      }
      return realLoadBefore(oid, tid)
    }
    const a = new DB(winner)
    const b = new DB(loser)
    expect(first).to.equal(false, 'the loser did check first')
    expect(winner.history(0n, 10)).to.have.length(1, 'the root was created once')
    b.close()
    a.close()
  })
})
