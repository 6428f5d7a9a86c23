// Resource lifecycle of file handles: closing a ZBigFile handle, or its connection, with pages
// written and not committed yet is refused as closing a connection with changed objects is —
// never a silent loss of the writes.
import { expect } from 'chai'

import { FileBigFile, FileH, PatternBigFile, RAM, ZBigFile, type ZBigFileH } from '@wendelin/bigfile'
import { TransactionManager } from '@wendelin/transaction'
import { ConnectionStateError, DB, SQLiteStorage, type Connection } from '@wendelin/zodb'

import { PS, ScratchFiles, tmpDir } from './helpers.js'
import fs from 'node:fs'
import path from 'node:path'

const scratch = new ScratchFiles()
after(() => scratch.removeAll())

describe('ZBigFile handle lifecycle', () => {
  let db: DB
  let tm: TransactionManager
  let conn: Connection
  let ram: RAM
  let zf: ZBigFile
  beforeEach(() => {
    db = new DB(new SQLiteStorage(scratch.sqlite()))
    tm = new TransactionManager()
    conn = db.open({ transactionManager: tm }) as unknown as Connection
    ram = new RAM({ pageSize: PS, limit: 16 * PS })
    zf = new ZBigFile(PS)
    ;(conn.root as Record<string, unknown>).f = zf
    tm.commit()
  })
  afterEach(() => {
    db.close()
    ram.close()
  })

  /** Byte 0 of the file as a new connection reads it. */
  function committedByte(): number {
    const c = db.open({ transactionManager: new TransactionManager() }) as unknown as Connection
    const h = ((c.root as Record<string, unknown>).f as ZBigFile).open({ ram })
    const m = h.mmap(0, 1)
    const b = m.bytes()[0]!
    m.unmap()
    h.close()
    c.close()
    return b
  }

  /** `h` after writing `value` at byte 0 through a mapping, unmapped again. */
  function written(h: ZBigFileH, value: number): ZBigFileH {
    const m = h.mmap(0, 1)
    m.bytes()[0] = value
    m.unmap()
    return h
  }

  it('refuses to close a handle with written pages not committed; after commit it closes', () => {
    const h = written(zf.open({ ram }), 42)
    expect(() => h.close()).to.throw(ConnectionStateError, /uncommitted changes.*commit or abort/)
    expect(h.closed).to.equal(false)
    tm.commit()
    h.close()
    expect(committedByte()).to.equal(42)
  })

  it('closes a handle whose written pages were aborted', () => {
    const h = written(zf.open({ ram }), 42)
    tm.abort()
    h.close()
    expect(committedByte()).to.equal(0)
  })

  for (const mapped of [false, true]) {
    it(`refuses to close the connection of a handle with written pages not committed (${mapped ? 'mapping live' : 'unmapped'})`, () => {
      const h = zf.open({ ram })
      const m = h.mmap(0, 1)
      m.bytes()[0] = 7
      if (!mapped) m.unmap()
      expect(() => conn.close()).to.throw(ConnectionStateError, /uncommitted changes.*commit or abort/)
      expect(conn.opened).to.equal(true)
      tm.commit()
      expect(committedByte()).to.equal(7)
      if (mapped) m.unmap()
      conn.close()
      expect(h.closed).to.equal(true)
    })
  }

  it('refuses to open a handle over a closed connection (which the pool may hand to another user)', () => {
    conn.close()
    expect(() => zf.open({ ram })).to.throw(ConnectionStateError, /ZBigFile.open: .*connection.* is closed/)
    // Had it opened, its writes would have gone into the commit of whoever reopens the connection.
    const again = db.open({ transactionManager: tm }) as unknown as Connection
    expect(again).to.equal(conn)
    ;(again.root as Record<string, unknown>).other = 1
    tm.commit()
    expect(committedByte()).to.equal(0)
  })

  it('a handle closed before its connection does not hold the connection back', () => {
    const h = written(zf.open({ ram }), 1)
    tm.commit()
    h.close()
    conn.close()
    expect(conn.opened).to.equal(false)
  })
})

describe('RAM, FileH, BigFile and Mapping lifecycle', () => {
  it('RAM, FileH and a FileBigFile are closed by `using`, in reverse order, and a second close is harmless', () => {
    const dir = tmpDir()
    try {
      let kept: { ram: RAM; fh: FileH; file: FileBigFile }
      {
        using ram = new RAM({ pageSize: PS, limit: 4 * PS })
        using file = new FileBigFile(path.join(dir, 'f'), { blksize: PS })
        using fh = new FileH(file, { ram })
        kept = { ram, fh, file }
        using m = fh.mmap(0, 1)
        m.bytes()[0] = 5
        fh.dirtyWriteout()
        expect(file.size()).to.equal(PS) // opened its descriptor
      }
      expect(kept.fh.isClosed).to.equal(true)
      expect(kept.ram.isClosed).to.equal(true)
      kept.fh.close()
      kept.ram.close()
      kept.file.close()
      expect(fs.readFileSync(path.join(dir, 'f'))[0]).to.equal(5)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a closed FileH says so when asked about its pages, instead of answering "empty"', () => {
    const ram = new RAM({ pageSize: PS, limit: 4 * PS })
    const fh = new FileH(new PatternBigFile({ blksize: PS }), { ram })
    const m = fh.mmap(0, 1)
    m.bytes()[0] = 1
    m.unmap()
    fh.close()
    expect(() => fh.pageState(0)).to.throw(/file handle is closed/)
    expect(() => fh.isDirty(0)).to.throw(/file handle is closed/)
    expect(() => fh.dirtyPages()).to.throw(/file handle is closed/)
    ram.close()
  })

  it('an unmapped Mapping says so when asked for its bytes', () => {
    const ram = new RAM({ pageSize: PS, limit: 4 * PS })
    const fh = new FileH(new PatternBigFile({ blksize: PS }), { ram })
    const m = fh.mmap(0, 1)
    m.unmap()
    expect(() => m.bytes()).to.throw(/mapping is unmapped/)
    fh.close()
    ram.close()
  })
})
