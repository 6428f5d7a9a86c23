// ZBigFileH: an open ZBigFile — a file handle whose pages are the file's blocks, and the
// transaction data manager that commits them (after wendelin.core's ZBigFileH).
//
// Snapshot. Loads run in loader workers, each reading from its own storage instance at the
// handle's snapshot: a 64-bit word in the native handle, set by this thread. While the ZBigFile
// was never committed the snapshot is 0 and every block reads as zeros without the storage.
//
// Transaction boundaries (afterCompletion, newTransaction; after the connection's own sync):
//   1. the new snapshot is published (loads starting from now read it);
//   2. the loaders' reports are drained: for each page, the oids its block depended on (the
//      zfile, the blktab path to the block, the block object) at the snapshot it was read at;
//      a report read at a snapshot older than the previous one belongs to a load that was
//      thrown away and is ignored;
//   3. pages in memory: being loaded → invalidated (they may be reading the old snapshot);
//      stored by our commit → their dependencies are looked up again here; loaded without a
//      known report (a load that finished during the boundary) → invalidated;
//   4. for every loaded page read before the new snapshot, with the oids changed by
//      transactions committed since (the storage's invalidations, our own commit included):
//      its block object changed → invalidated; only the path changed (a bucket split, merged,
//      a block added or removed next to it, the file truncated) → the block is looked up again
//      in the connection: another block object or a hole/no-hole change → invalidated, else
//      the page stays and its dependencies are refreshed.
//
// Commit: the handle joins the transaction in beforeCompletion when it has dirty pages (and
// joins its connection with readCurrent(zfile), so that storeblk may change objects during
// the commit); it sorts before the connection; commit() stores dirty pages as block objects
// of the connection (storeblk, virtmem lock released); tpc_finish marks them stored; abort
// discards them. A failed commit leaves the pages dirty (memory as before the commit); an
// abort of the transaction afterwards discards them, as any abort does. One that fails after
// our tpc_finish (in the storage's) drops the pages it marked stored (tpc_abort).
import { pathTo } from '@wendelin/btrees'
import type { DataManager, Synchronizer, Transaction, TransactionManagerLike } from '@wendelin/transaction'
import { Connection, ConnectionStateError, DB, GHOST, ReadOnlyHistoryError, idToHex, specForAnotherThread, type InvalidationListener, type Oid, type Storage, type Tid } from '@wendelin/zodb'

import { FileH, WRITEOUT_MARKSTORED, WRITEOUT_STORE, releaseFrameRecord, type Mapping, type PageRange } from './fileh.js'
import { log } from './log.js'
import { addon, type PageState } from './native.js'
import type { RAM } from './ram.js'
import { type BlockDeps, type LoadReport, type ZBigFile, decodeReport, lookupBlock, openHandleCount } from './zbigfile.js'
import { ZBigFileBlocks, readBlockAt } from './zbigfile-loader.js'
import { CHUNK_SIZE, ZBlk0, ZBlk1, isPageRecord, sameBytes, trimmedLength } from './zblk.js'

export interface ZBigFileHOptions {
  /** RAM to hold pages in (its page size must be the file's blksize); default: the shared one. */
  ram?: RAM
  /**
   * Milliseconds of range reads peek may spend on one page of a ZBlk0 block before it declines
   * and the page is loaded instead (at most 32 reads either way); default 4.
   */
  rangeReadBudgetMs?: number
}

/** Counters of what the handle's transaction boundaries did. */
export interface ZBigFileHStats {
  /** Pages invalidated at boundaries because their block changed, in all. */
  invalidated: number
  /** Pages the last boundary invalidated because their block changed, ascending. */
  lastInvalidated: number[]
  /**
   * Pages dropped at boundaries because they may have been read at the previous snapshot
   * without a report yet: being loaded (a fault, fileh.load, readahead) or loaded during the
   * boundary. They load again at the new snapshot; how many there are depends on timing.
   */
  restarted: number
  /** Blocks looked up again because only their path changed, in all. */
  rechecked: number
}

interface Deps extends BlockDeps {
  /** The snapshot these dependencies are known to hold at. */
  snapshot: Tid
}

// Handles are held by their users, not by the module: a handle nobody references any more
// (nor its mappings or their buffers) is closed by the garbage collector, as wendelin.core's
// file handles are. Its transaction manager holds it weakly, its storage listener and its
// connection's close callback reach it through a WeakRef; a mapping and the mapping's buffer
// keep it alive (keepAlive); a transaction it joined holds it until the transaction ends.

/** What closing a collected handle needs (nothing that refers to the handle). */
interface Remains {
  fileh: FileH
  storage: Storage
  listener: InvalidationListener
  zfile: ZBigFile
  dropCloseCheck: () => void
}

/** Handles opened and neither closed nor collected. */
let liveHandles = 0
/** Collected handles whose file handle could not close yet (a mapping's buffer not yet freed). */
let unclosed: Remains[] = []
const keepAlive = new WeakMap<object, ZBigFileH>()

function handleGone(): void {
  liveHandles--
}

function closeRemains(r: Remains): boolean {
  try {
    r.fileh.close()
  } catch {
    return false
  }
  r.storage.removeListener(r.listener)
  r.dropCloseCheck()
  openHandleCount.set(r.zfile, (openHandleCount.get(r.zfile) ?? 1) - 1)
  handleGone()
  log('zbigfile handle %d closed by the garbage collector', r.fileh.id)
  return true
}

function retryUnclosed(): void {
  if (unclosed.length > 0) unclosed = unclosed.filter((r) => !closeRemains(r))
}

/**
 * Per committing transaction and file: which handle stored each block last. Two handles of one
 * file (one connection) may both have a block dirty: the commit stores the last one's page, and
 * the other's page no longer shows what the database has (see #boundary).
 */
const lastStorers = new WeakMap<Transaction, WeakMap<ZBigFile, Map<number, ZBigFileH>>>()

const collected = new FinalizationRegistry<Remains>((r) => {
  if (!closeRemains(r)) unclosed.push(r)
})

/**
 * How much peek spends on range reads of one page's ZBlk0 record before it declines (and the
 * page is loaded): at most ZBLK0_RANGE_READS reads, and by default at most
 * ZBLK0_RANGE_READ_MS of their time. With SQLite's incremental blob I/O a range read costs
 * ~40 us in a file with the pointer map (SQLiteStorage's default), 4-440 us in one without
 * (where in the record it lies: the pages before it are visited for their links); a load of
 * the 2 MiB block 0.6-2 ms. So
 * scattered reads stay range reads, and reads that keep coming back to a page load it after
 * about three loads' worth of range reads at most. (With substr, 260-400 us a range, the
 * count alone was 3.)
 */
const ZBLK0_RANGE_READS = 32
const ZBLK0_RANGE_READ_MS = 4
/** Pages whose range reads are counted (the counts start again beyond). */
const RANGE_READ_COUNTS_MAX = 1 << 16

export class ZBigFileH implements DataManager, Synchronizer, Disposable {
  readonly zfile: ZBigFile
  readonly conn: Connection
  readonly fileh: FileH
  readonly stats: ZBigFileHStats = { invalidated: 0, lastInvalidated: [], restarted: 0, rechecked: 0 }
  readonly #storage: Storage
  readonly #tm: TransactionManagerLike
  readonly #listener: InvalidationListener
  /** Transactions committed after our snapshot: their tids and the oids they changed. */
  #pending: Array<{ tid: Tid; oids: readonly Oid[] }> = []
  #deps = new Map<number, Deps>()
  #snapshot: Tid = 0n
  #uncommitted: boolean
  #joined: Transaction | null = null
  #committing: Transaction | null = null
  #stored: number[] | null = null
  /** The transaction whose commit stored #stored. */
  #storedIn: Transaction | null = null
  /** What each page of #stored depended on as committed (taken at tpc_finish, see #boundary). */
  #storedDeps = new Map<number, BlockDeps>()
  #closed = false
  /** Whether the handle follows its connection's transactions (until the connection closes). */
  #following = true
  /** Range reads peek made per page of ZBlk0 blocks, and their time in ms (see #peekZBlk0). */
  #rangeReads = new Map<number, { reads: number; ms: number }>()
  readonly #rangeReadBudgetMs: number
  /** Records over pages the commit under way (or the last one) made, and the blocks that took them. */
  #pageRecords: Array<{ zblk: ZBlk0 | null; record: Uint8Array }> = []
  /** Pages written by poke() in the current transaction: their block and the chunks written. */
  #poked = new Map<number, { zblk: ZBlk1; chunks: Set<number> }>()
  /** Removes the check that keeps the connection from closing over this handle's changes. */
  readonly #dropCloseCheck: () => void

  constructor(zfile: ZBigFile, options: ZBigFileHOptions = {}) {
    const conn = zfile._p_jar
    if (!(conn instanceof Connection)) {
      throw new TypeError('ZBigFile.open: the file must belong to a connection first (conn.add(zfile), or store it in an object of the connection)')
    }
    // It would never hear of the close, and would follow whoever the pool hands the connection to next.
    if (!conn.opened) throw new ConnectionStateError('ZBigFile.open: the connection of the file is closed')
    const storageSpec = specForAnotherThread(conn.db.storage) // StorageNotShareableError for memory:
    if (zfile._p_oid === null) conn.add(zfile)
    this.zfile = zfile
    this.conn = conn
    this.#storage = conn.db.storage
    const budget = options.rangeReadBudgetMs ?? ZBLK0_RANGE_READ_MS
    if (!(budget >= 0)) throw new RangeError(`ZBigFile.open: rangeReadBudgetMs must be a number of ms >= 0, not ${budget}`)
    this.#rangeReadBudgetMs = budget
    this.#tm = conn.transactionManager
    this.#uncommitted = zfile._p_serial === 0n
    const blocks = new ZBigFileBlocks({ storage: storageSpec, oid: idToHex(zfile._p_oid!), blksize: zfile.blksize }, zfile)
    this.fileh = new FileH(blocks, options.ram ? { ram: options.ram } : {})
    this.#snapshot = this.#currentSnapshot()
    addon.filehSetSnapshot(this.fileh._native, this.#snapshot)
    const self = new WeakRef<ZBigFileH>(this)
    // A historical connection's snapshot never moves: nothing committed later concerns its
    // pages, and a list of it would only grow for as long as the handle stays open.
    const fixed = conn.historical
    this.#listener = {
      invalidate: (tid, oids) => {
        const h = self.deref()
        if (h !== undefined && !fixed && tid > h.#snapshot) h.#pending.push({ tid, oids: [...oids] })
      },
      invalidateCache: () => {
        // Everything may have changed: every page is reloaded at the next boundary.
        const h = self.deref()
        if (h !== undefined && !fixed) h.#pending.push({ tid: -1n, oids: [] })
      },
    }
    this.#storage.addListener(this.#listener)
    // Dirty pages join the transaction only at its commit: until then the connection must not
    // close over them (as over changed objects), or they would be dropped without a word.
    this.#dropCloseCheck = conn._addCloseCheck(() => {
      const h = self.deref()
      if (h !== undefined) h.#refuseToDropChanges('cannot close its connection')
    })
    retryUnclosed()
    liveHandles++
    openHandleCount.set(zfile, (openHandleCount.get(zfile) ?? 0) + 1)
    collected.register(this, { fileh: this.fileh, storage: this.#storage, listener: this.#listener, zfile, dropCloseCheck: this.#dropCloseCheck }, this)
    // Registered after the connection (which registered when it was opened): at a boundary
    // the connection has moved to its new snapshot before the handle looks at it.
    this.#tm.registerSynch(this)
    conn.onCloseCallback(() => {
      const h = self.deref()
      if (h !== undefined) h.#connectionClosed()
    })
    log('zbigfile handle %d over %s at snapshot %s', this.fileh.id, blocks.describe(), idToHex(this.#snapshot))
  }

  get blksize(): number {
    return this.fileh.blksize
  }

  /** The snapshot (a tid) the handle's pages show. */
  get snapshot(): Tid {
    return this.#snapshot
  }

  /** Maps pages [pgoffset, pgoffset+pglen); the mapping and its buffer keep the handle alive. */
  mmap(pgoffset: number, pglen: number): Mapping {
    const m = this.fileh.mmap(pgoffset, pglen)
    keepAlive.set(m, this)
    keepAlive.set(m.buffer, this)
    this.#loadWhileLoadersStart(pgoffset, pglen)
    if (this.#poked.size > 0) this.#materialize(m)
    return m
  }

  /**
   * While no loader worker serves yet, this thread loads the first pages of a new mapping
   * itself, in order, until one does: the loaders start with the first file handle and take
   * ~100 ms (a worker, the imports, the storage), which the first access of a fresh process
   * would otherwise spend waiting (a write of a new 1 GiB array: ~90 ms of its fill). Blocks are
   * read as a loader reads them (readBlockAt), through a historical connection at the handle's
   * snapshot — never through the handle's connection, whose objects may hold the current
   * transaction's changes (savepoints included) or, after conn.sync(), a newer state — and
   * their dependencies are recorded as a loader's report would be. Only into free RAM (a
   * speculative load never evicts a page nor stretches the limit), at most a quarter of it.
   */
  #loadWhileLoadersStart(pgoffset: number, pglen: number): void {
    if (addon.loaderCount() > 0 || this.#closed || !this.#following || this.#committing !== null) return
    const db = this.conn.db
    if (!(db instanceof DB)) return
    const snapshot = this.#snapshot
    const oid = this.zfile._p_oid!
    const ram = this.fileh.ram
    const describe = this.fileh.file.describe()
    const end = pgoffset + Math.min(pglen, Math.max(1, Math.floor(this.fileh.ramPages / 4)))
    let hist = null as Connection | null // opened at the first block read
    try {
      for (let pg = pgoffset; pg < end && addon.loaderCount() === 0; pg++) {
        if (addon.filehPageState(this.fileh._native, pg) !== 'empty') continue
        const used = ram.stats().bytesInUse
        if (used + ram.pageSize > ram.limit) return
        let deps: BlockDeps = { path: [oid], zblk: null } // never committed: holes, as a loader reports them
        const status = this.fileh.loadHere(pg, (dest) => {
          if (snapshot === 0n) dest.fill(0) // a reused frame holds an earlier page
          else deps = readBlockAt((hist ??= db.open({ before: snapshot + 1n })), oid, pg, dest, describe)
        })
        if (status === 'invalidated') return
        if (status === 'loaded') this.#deps.set(pg, { ...deps, snapshot })
      }
    } catch (e) {
      log('zbigfile handle %d: pages not loaded here (loaders will): %O', this.fileh.id, e)
    } finally {
      hist?.close()
    }
  }

  /**
   * Writes `src` at `offset` (within one 4 KiB chunk) into the block's chunk in the handle's
   * connection, without bringing the page into memory, when the page is not dirty, nor being
   * loaded, nor under a live mapping, and its block is stored in chunks (ZBlk1) holding that
   * chunk (the page may be loaded: it is then at the snapshot, which mmap corrects): the change is one
   * chunk record (and the block object) of the connection, committed and aborted with it, as
   * storeblk would have stored it. Returns false, changing nothing, otherwise (write through a
   * mapping then). A mapping made later over the page shows the write: mmap copies the
   * connection's chunks written this way into the page (which dirties it).
   */
  poke(offset: number, src: Uint8Array): boolean {
    const bs = this.fileh.blksize
    const pg = Math.floor(offset / bs)
    const at = offset - pg * bs
    if (!Number.isSafeInteger(offset) || offset < 0 || at + src.length > bs) throw new RangeError(`ZBigFileH.poke: [${offset}, ${offset + src.length}) is not within one page`)
    if (this.#closed || !this.#following || this.#committing !== null || this.#snapshot === 0n) return false
    const ci = Math.floor(at / CHUNK_SIZE)
    const inChunk = at - ci * CHUNK_SIZE
    if (inChunk + src.length > CHUNK_SIZE) return false
    const state = addon.filehPageState(this.fileh._native, pg)
    if (state !== 'empty' && state !== 'loaded') return false
    // ZBlk0 files rewrite a ZBlk1 block whole as ZBlk0 at storeblk: only storeblk does that.
    if (this.zfile.format === 'ZBlk0') return false
    const zblk = this.zfile.blktab.get(pg)
    if (!(zblk instanceof ZBlk1)) return false
    for (const m of this.fileh.liveMappings()) if (pg >= m.pgoffset && pg < m.pgoffset + m.pglen) return false
    const chunk = zblk.chunktab.get(ci)
    if (chunk === undefined) return false // a zero chunk (not stored): its chunk tree changes too
    const old = chunk.data
    const data = new Uint8Array(Math.max(old.length, inChunk + src.length))
    data.set(old)
    data.set(src, inChunk)
    const n = trimmedLength(data)
    if (n === 0) return false // the chunk becomes zeros: it leaves the chunk tree
    if (sameBytes(old, data.subarray(0, n))) return true
    chunk.data = n === data.length ? data : data.slice(0, n) // stored trimmed, as storeFrom does
    if (zblk._p_changed !== true) zblk.version = zblk.version + 1 // "this block changed" (see ZBlk1)
    let p = this.#poked.get(pg)
    if (p === undefined) this.#poked.set(pg, (p = { zblk, chunks: new Set() }))
    p.chunks.add(ci)
    return true
  }

  /** Copies the chunks poke() wrote into pages of mapping `m` (dirtying them). */
  #materialize(m: Mapping): void {
    const bs = this.fileh.blksize
    let bytes: Uint8Array | null = null
    for (const [pg, p] of this.#poked) {
      if (pg < m.pgoffset || pg >= m.pgoffset + m.pglen) continue
      this.#poked.delete(pg)
      if (this.zfile.blktab.get(pg) !== p.zblk) continue // truncated or replaced since: shown as such
      bytes ??= m.bytes()
      for (const ci of p.chunks) {
        const at = (pg - m.pgoffset) * bs + ci * CHUNK_SIZE
        const data = p.zblk.chunktab.get(ci)?.data ?? new Uint8Array(0)
        bytes.set(data.subarray(0, CHUNK_SIZE), at)
        if (data.length < CHUNK_SIZE) bytes.fill(0, at + data.length, at + CHUNK_SIZE)
      }
    }
  }

  dirtyPages(): number[] {
    return this.fileh.dirtyPages()
  }

  pageState(pgoffset: number): PageState {
    return this.fileh.pageState(pgoffset)
  }

  /** The caller is done with pages `range`: see FileH.leaveBehind. */
  leaveBehind(range: PageRange): void {
    this.fileh.leaveBehind(range)
  }

  /** Pages the handle's RAM holds at its limit. */
  get ramPages(): number {
    return this.fileh.ramPages
  }

  /**
   * Reads bytes [offset, offset + dest.length) of the file as the handle shows them without
   * bringing their page into memory, when that is cheaper than loading the whole block: the
   * page is neither in memory (loaded or dirty) nor being loaded, and its block is a hole, or is
   * stored in chunks (ZBlk1), of which only the chunks covering the range are read — through
   * the handle's connection, whose snapshot is the handle's — or is one record (ZBlk0), of
   * which the storage reads the range (at the handle's snapshot; a few times per page, then the
   * page is better loaded). Returns false, with `dest` left as it was, otherwise: a page in
   * memory, a ZBlk0 block read a few times already or in a storage without range reads, a
   * block table or block changed in the current transaction (other than by poke), a commit
   * under way, a closed connection — read through a mapping then. The range must lie within
   * one page.
   */
  peek(offset: number, dest: Uint8Array): boolean {
    const bs = this.fileh.blksize
    const pg = Math.floor(offset / bs)
    const at = offset - pg * bs
    if (!Number.isSafeInteger(offset) || offset < 0 || at + dest.length > bs) throw new RangeError(`ZBigFileH.peek: [${offset}, ${offset + dest.length}) is not within one page`)
    if (this.#closed || !this.#following || this.#committing !== null) return false
    if (addon.filehPageState(this.fileh._native, pg) !== 'empty') return false
    if (this.#snapshot === 0n) {
      dest.fill(0) // never committed: holes, as a loader reads them
      return true
    }
    // The connection's objects show the snapshot unless the transaction changed them (then
    // _p_changed, or their state is in a savepoint) or conn.sync() moved it past the snapshot.
    if (this.conn.hasSavepointState || this.conn.before !== this.#snapshot + 1n) return false
    const zfile = this.zfile
    if (zfile._p_changed === true) return false
    const blktab = zfile.blktab
    for (const node of pathTo(blktab, pg)) if (node._p_changed === true) return false
    const zblk = blktab.get(pg)
    if (zblk === undefined) {
      dest.fill(0)
      return true
    }
    if (zblk instanceof ZBlk0) return this.#peekZBlk0(pg, zblk, at, dest)
    // A block changed by poke() only: its chunks in the connection are what the page would show.
    if (!(zblk instanceof ZBlk1) || (zblk._p_changed === true && this.#poked.get(pg)?.zblk !== zblk)) return false
    const chunktab = zblk.chunktab
    for (let pos = 0; pos < dest.length; ) {
      const o = at + pos
      const ci = Math.floor(o / CHUNK_SIZE)
      const inChunk = o - ci * CHUNK_SIZE
      const n = Math.min(dest.length - pos, CHUNK_SIZE - inChunk)
      const chunk = chunktab.get(ci)
      let got = 0
      if (chunk !== undefined) {
        const ghost = chunk._p_state === GHOST
        const data = chunk.data // stored trimmed: zeros past its end
        got = Math.max(0, Math.min(data.length, inChunk + n) - inChunk)
        if (got > 0) dest.set(data.subarray(inChunk, inChunk + got), pos)
        if (ghost) chunk._p_deactivate() // one element read: keep no 4 KiB chunk in the cache for it
      }
      if (got < n) dest.fill(0, pos + got, pos + n)
      pos += n
    }
    return true
  }

  /**
   * peek of a ZBlk0 block: its bytes in the connection when it is loaded there, else a range
   * read of its record at the snapshot (the record's header and the range) — up to the reads
   * and time per page ZBLK0_RANGE_READS and the budget allow, then it declines once (the page
   * is better loaded: reads that keep coming back to a page load it).
   */
  #peekZBlk0(pg: number, zblk: ZBlk0, at: number, dest: Uint8Array): boolean {
    if (zblk._p_changed === true || zblk._p_oid === null) return false
    if (zblk._p_state !== GHOST) {
      const data = zblk.data // trimmed: zeros past its end
      const got = Math.max(0, Math.min(data.length - at, dest.length))
      dest.set(data.subarray(at, at + got))
      dest.fill(0, got)
      return true
    }
    const spent = this.#rangeReads.get(pg)
    if (spent !== undefined && (spent.reads >= ZBLK0_RANGE_READS || spent.ms >= this.#rangeReadBudgetMs)) {
      // Declined once: the caller loads the page. Counted again from 0 once it is out of memory
      // (evicted): with RAM far smaller than the file, a page loaded once is rarely read again
      // before it is evicted, and every later read would cost a load.
      this.#rangeReads.delete(pg)
      return false
    }
    const start = performance.now()
    if (!ZBlk0.readRange(this.#storage, zblk._p_oid, this.#snapshot + 1n, at, dest)) return false
    const ms = performance.now() - start
    if (spent !== undefined) {
      spent.reads++
      spent.ms += ms
    } else {
      if (this.#rangeReads.size >= RANGE_READ_COUNTS_MAX) this.#rangeReads.clear()
      this.#rangeReads.set(pg, { reads: 1, ms })
    }
    return true
  }

  /** Closes the file handle (refused while mappings live or the handle has uncommitted changes). */
  close(): void {
    if (this.#closed) return
    if (this.#joined !== null) throw new Error('ZBigFileH.close: the handle has changes in the current transaction; commit or abort first')
    this.#refuseToDropChanges('ZBigFileH.close')
    if (this.#committing === null) this.#releasePageRecords()
    this.fileh.close()
    this.#closed = true
    if (this.#following) {
      this.#tm.unregisterSynch(this)
      this.#storage.removeListener(this.#listener)
    }
    collected.unregister(this)
    this.#dropCloseCheck()
    handleGone()
    openHandleCount.set(this.zfile, (openHandleCount.get(this.zfile) ?? 1) - 1)
    this.#deps.clear()
    this.#pending = []
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /**
   * Throws while the handle follows its connection and has dirty pages: changes of the current
   * transaction not joined to it yet (a handle joins at commit), which closing would drop.
   */
  #refuseToDropChanges(what: string): void {
    if (this.#closed || !this.#following) return
    const dirty = this.fileh.dirtyPages().length
    if (dirty === 0) return
    throw new ConnectionStateError(`${what}: ZBigFile handle ${this.fileh.id} has uncommitted changes (${dirty} dirty pages); commit or abort the transaction first`)
  }

  /**
   * The connection closed: the handle stops following it and closes too, unless mappings still
   * live. (Changes left, only after db.close(), which closes connections whatever they hold, are dropped.)
   */
  #connectionClosed(): void {
    if (this.#closed) return
    this.#tm.unregisterSynch(this)
    this.#storage.removeListener(this.#listener)
    this.#following = false
    if (this.fileh.liveMappings().length === 0) {
      this.#joined = null
      this.close()
      return
    }
    log('zbigfile handle %d: its connection closed; pages stay at snapshot %s', this.fileh.id, idToHex(this.#snapshot))
  }

  get closed(): boolean {
    return this.#closed
  }

  // --- Synchronizer -----------------------------------------------------------------------------

  beforeCompletion(txn: Transaction): void {
    if (this.#closed || this.#joined === txn) return
    if (this.fileh.dirtyPages().length === 0) return
    if (txn.status !== 'Active' && txn.status !== 'Doomed') {
      // A failed transaction can only be aborted (its commit() throws before synchronizers
      // run) and takes no new managers: drop the pages here.
      this.fileh.dirtyDiscard()
      return
    }
    txn.join(this)
    this.#joined = txn
    // storeblk changes objects of the connection during the commit: it must be in the
    // transaction already (a data manager cannot join a transaction that is committing).
    this.conn.readCurrent(this.zfile)
  }

  afterCompletion(): void {
    this.#boundary()
  }

  newTransaction(): void {
    this.#boundary()
  }

  // --- DataManager ------------------------------------------------------------------------------

  sortKey(): string {
    // Before the connection (whose key is its storage's): blocks are stored through it.
    return `\u0000zbigfile:${this.conn.sortKey()}:${String(this.fileh.id).padStart(12, '0')}`
  }

  abort(txn: Transaction): void {
    if (this.#committing === txn) return // cleanup of our failed commit: memory stays as it was
    this.fileh.dirtyDiscard()
    this.#joined = null
  }

  tpc_begin(txn: Transaction): void {
    this.#committing = txn
    this.#stored = null
  }

  commit(txn: Transaction): void {
    if (this.conn.historical) {
      // Written through a mapping (nothing else writes its pages): they cannot be stored, and
      // the connection's own refusal would name a node of the block table.
      throw new ReadOnlyHistoryError(
        `cannot commit the written pages of ZBigFile(oid 0x${idToHex(this.zfile._p_oid!)}): its handle reads a historical connection ` +
          `(before 0x${idToHex(this.conn.before)}), which cannot change anything; abort the transaction to drop them`,
      )
    }
    this.#stored = this.fileh.dirtyPages()
    this.#storedIn = txn
    let byFile = lastStorers.get(txn)
    if (byFile === undefined) lastStorers.set(txn, (byFile = new WeakMap()))
    let storers = byFile.get(this.zfile)
    if (storers === undefined) byFile.set(this.zfile, (storers = new Map()))
    const lastStorer = storers
    // Where the storage copies records by the end of its vote (SQLite), a ZBlk0 record is the
    // page itself behind its header (FileH.frameRecord): the page stays dirty, and its frame
    // its own, until our tpc_finish; the records are released at the next boundary.
    const overPages = this.#storage.copiesRecords === true
    this.fileh.dirtyWriteout(WRITEOUT_STORE, (blk, src) => {
      const before = this.#pageRecords.length
      const overPage = overPages
        ? (prefix: Uint8Array, n: number): Uint8Array | null => {
            const record = this.fileh.frameRecord(blk, prefix, n)
            if (record !== null) this.#pageRecords.push({ zblk: null, record }) // tracked even if storeblk throws next
            return record
          }
        : undefined
      this.zfile.storeblk(blk, src, overPage)
      lastStorer.set(blk, this)
      if (this.#pageRecords.length === before) return
      const zblk = this.zfile.blktab.get(blk) // the block object that took the record
      this.#pageRecords[this.#pageRecords.length - 1]!.zblk = zblk instanceof ZBlk0 ? zblk : null
    })
  }

  /**
   * Lets go of the records the last commit made over pages: each block object still viewing
   * one becomes a ghost again (its frame may hold another page by now), and each record is
   * unmapped (any view left of it reads empty, never another page's bytes).
   */
  #releasePageRecords(): void {
    const records = this.#pageRecords
    if (records.length === 0) return
    this.#pageRecords = []
    for (const { zblk, record } of records) {
      try {
        if (zblk !== null && zblk._p_state !== GHOST && isPageRecord(zblk.data)) {
          if (zblk._p_changed === true) zblk._p_invalidate() // an aborted commit's: the storage has its state
          else zblk.release()
        }
      } catch (e) {
        // Not thrown: the boundary this runs in must go on. The record goes all the same.
        log('zbigfile handle %d: a block object viewing a committed page could not be released: %O', this.fileh.id, e)
      } finally {
        releaseFrameRecord(record) // whatever happened to the object: a view left reads empty
      }
    }
  }

  tpc_vote(txn: Transaction): void {
    void txn
  }

  tpc_finish(txn: Transaction): void {
    void txn
    // The blocks as this commit leaves them (the new objects have their oids by now): at the
    // boundary the connection may already see later commits of others, which must not pass
    // for the state of these pages.
    this.#storedDeps = new Map()
    for (const pg of this.#stored ?? []) {
      try {
        this.#storedDeps.set(pg, lookupBlock(this.zfile, pg).deps) // in memory: storeblk walked it
      } catch (e) {
        log('zbigfile handle %d: block %d as committed could not be looked up: %O', this.fileh.id, pg, e) // looked up at the boundary
      }
    }
    this.fileh.dirtyWriteout(WRITEOUT_MARKSTORED)
    this.#committing = null
    this.#joined = null
  }

  tpc_abort(txn: Transaction): void {
    // After our tpc_finish (the storage's own failed after it: a disk error at COMMIT, a lost
    // server): the pages it marked stored may show what the database never got, and stayed so
    // through the abort and after it — they are loaded again, from what the database has.
    if (this.#committing === null && this.#storedIn === txn && this.#stored !== null && !this.#closed)
      for (const pg of this.#stored) if (this.fileh.pageState(pg) === 'loaded') this.fileh.invalidatePage(pg)
    // The storage forgets what storeblk wrote; the pages stay dirty. The handle stays among
    // the transaction's managers: aborting the failed transaction discards them.
    this.#committing = null
    this.#stored = null
    this.#storedIn = null
  }

  // --- transaction boundaries -------------------------------------------------------------------

  #currentSnapshot(): Tid {
    if (this.#uncommitted) {
      const z = this.zfile
      if (z._p_jar === this.conn && z._p_serial !== 0n) this.#uncommitted = false
      else return 0n
    }
    return this.conn.before - 1n
  }

  #boundary(): void {
    if (this.#committing !== null) return
    this.#poked.clear() // committed or aborted with the connection's objects
    this.#releasePageRecords() // closed since the commit too
    if (this.#closed) return
    const oldSnapshot = this.#snapshot
    const newSnapshot = this.#currentSnapshot()
    const native = this.fileh._native
    // 1. loads starting from now read the new snapshot
    addon.filehSetSnapshot(native, newSnapshot)
    this.#snapshot = newSnapshot
    // 2. what finished loads depended on
    const reports = new Map<number, LoadReport>()
    for (const [pg, bytes] of addon.filehTakeLoadReports(native)) {
      const r = decodeReport(bytes)
      if (r.snapshot < oldSnapshot) continue // a load thrown away at an earlier boundary
      const prev = reports.get(pg)
      if (prev === undefined || r.snapshot >= prev.snapshot) reports.set(pg, r)
    }
    // 3. pages in memory
    const stored = new Set(this.#stored ?? [])
    const storers = this.#storedIn === null ? undefined : lastStorers.get(this.#storedIn)?.get(this.zfile)
    const storedDeps = this.#storedDeps
    // Stored pages show the blocks as of our commit: only later commits can have changed them.
    const ownTid = stored.size > 0 ? this.conn._lastCommitTid : 0n
    this.#stored = null
    this.#storedIn = null
    this.#storedDeps = new Map()
    const deps = new Map<number, Deps>()
    const invalidate: number[] = []
    const restart: number[] = []
    for (const [pg, state] of addon.filehPages(native)) {
      if (state === 'loading' || state === 'loading-invalidated') {
        if (state === 'loading') restart.push(pg)
        continue
      }
      if (stored.has(pg) && state === 'loaded' && storers !== undefined && storers.get(pg) !== this) {
        // Another handle of this file stored the block after us in the same commit: the
        // database has its page, not ours.
        invalidate.push(pg)
        continue
      }
      if (stored.has(pg) && state === 'loaded') {
        const { zblk, deps: now } = lookupBlock(this.zfile, pg)
        // ZBlk0: its bytes are in the page, the connection's cache need not keep 2 MiB more
        // (and where they viewed the page itself, the page's frame is no longer theirs).
        // ZBlk1 keeps its chunks (the cache's size bounds them): the next storeblk compares
        // the block with them, and reloading 512 chunks per commit costs 10x the commit.
        if (zblk instanceof ZBlk0) zblk.release()
        const mine = storedDeps.get(pg)
        deps.set(pg, mine === undefined ? { ...now, snapshot: newSnapshot } : { ...mine, snapshot: ownTid })
        continue
      }
      const d = reports.get(pg) ?? this.#deps.get(pg)
      if (d === undefined) {
        if (state === 'dirty') continue // written here; stored (and known) at commit
        restart.push(pg) // loaded during the boundary, from an unknown snapshot
        continue
      }
      deps.set(pg, d)
    }
    // 4. changes committed since the old snapshot
    let changed: Set<Oid> | null = null
    /** Of `changed`, what commits after our own changed (for the pages it stored). */
    let changedAfterOwn: Set<Oid> | null = null
    let everything = false
    if (newSnapshot !== oldSnapshot || this.#pending.length > 0) {
      changed = new Set()
      changedAfterOwn = new Set()
      const keep: Array<{ tid: Tid; oids: readonly Oid[] }> = []
      for (const p of this.#pending) {
        if (p.tid === -1n) everything = true
        else if (p.tid > newSnapshot) keep.push(p)
        else {
          for (const oid of p.oids) changed.add(oid)
          if (ownTid !== 0n && p.tid > ownTid) for (const oid of p.oids) changedAfterOwn.add(oid)
        }
      }
      this.#pending = keep
    }
    if (changed !== null) {
      for (const [pg, d] of deps) {
        if (d.snapshot >= newSnapshot || this.pageState(pg) !== 'loaded') continue
        const changed_ = ownTid !== 0n && d.snapshot === ownTid && stored.has(pg) ? changedAfterOwn! : changed
        if (everything || (d.zblk !== null && changed_.has(d.zblk))) {
          invalidate.push(pg)
          deps.delete(pg)
          continue
        }
        if (!d.path.some((oid) => changed_.has(oid))) {
          d.snapshot = newSnapshot
          continue
        }
        this.stats.rechecked++
        const now = lookupBlock(this.zfile, pg).deps
        if (now.zblk !== d.zblk) {
          invalidate.push(pg)
          deps.delete(pg)
        } else {
          deps.set(pg, { ...now, snapshot: newSnapshot })
        }
      }
    }
    invalidate.sort((a, b) => a - b)
    for (const pg of [...invalidate, ...restart]) {
      this.fileh.invalidatePage(pg)
      deps.delete(pg)
    }
    this.#deps = deps
    this.stats.invalidated += invalidate.length
    this.stats.restarted += restart.length
    // lastInvalidated: of the last boundary that had something to look at (begin() in implicit
    // mode is two boundaries: the abort of the current transaction, then the new one)
    if (changed !== null || invalidate.length > 0) this.stats.lastInvalidated = invalidate
    if (invalidate.length > 0) log('zbigfile handle %d: snapshot %s, invalidated pages %o', this.fileh.id, idToHex(newSnapshot), invalidate)
  }
}

/** How many ZBigFile handles are open (neither closed nor collected). */
export function openZBigFileHandles(): number {
  retryUnclosed()
  return liveHandles
}
