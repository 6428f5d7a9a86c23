// Connection: one line of work's view of the database, and the data manager that commits its
// changes.
//
// MVCC: the connection reads every object as of a snapshot (`loadBefore(oid, before)`), fixed
// when its transaction starts. Commits by other connections only queue invalidations here; they
// are applied at transaction boundaries (newTransaction/afterCompletion, or `sync()`), so within
// one transaction the connection sees one consistent state of the database. Storing an object
// that someone else changed since the snapshot is a ConflictError, raised by the storage.
//
// Savepoints copy the records of changed objects into a temporary store inside the connection;
// loads look there first, and commit writes those records along with the objects still changed.

import createDebug from 'debug'
import {
  AsyncScopedTransactionManager,
  manager as defaultManager,
  type DataManagerSavepoint,
  type Transaction,
  type TransactionManagerLike,
} from '@wendelin/transaction'

import { findClass, nameOfClass } from './class-registry.js'
import {
  ConnectionStateError,
  InvalidObjectReference,
  ReadConflictError,
  ReadOnlyError,
  ReadOnlyHistoryError,
  UnknownClassError,
  UnserializableError,
} from './errors.js'
import { ObjectCache, type CacheLimits } from './object-cache.js'
import {
  CHANGED,
  GHOST,
  Persistent,
  type PersistentJar,
  type PersistentMeta,
  _attach,
  _detach,
  _loadState,
  _meta,
  _newGhost,
  _stored,
} from './persistent.js'
import { Broken, isBroken } from './broken.js'
import { decodeState, encodeRecord, type ReferenceReader, type ReferenceWriter } from './serialize.js'
import type { Storage } from './storage.js'
import { StorageCommit } from './storage-commit.js'
import { idToHex, type Oid, type Tid } from './tid.js'

const log = createDebug('wendelin:zodb:connection')

/** What a connection needs from its database. */
export interface ConnectionOwner {
  readonly storage: Storage
  /** A closed connection goes back to the pool. */
  _connectionClosed(conn: Connection<object>): void
}

export interface ConnectionOptions {
  transactionManager?: TransactionManagerLike
  /** Read as of just before this tid, forever (a historical, read-only connection). */
  before?: Tid | null
  cache: CacheLimits
}

interface TmpRecord {
  data: Uint8Array
  /** The serial the object's change is based on (0n for a new object). */
  serial: Tid
}

let connectionIds = 0
/** Storage answers to preload hints a connection keeps (older ones are dropped: not used in time). */
const PRELOADED_BATCHES = 4
/** Preload hints a connection keeps until used (older ones are dropped). */
const PRELOAD_HINTS = 4
/**
 * Loads a hint may miss before it is dropped. A hint over values that never load as ghosts (an
 * iteration of loaded objects) would otherwise be looked through by every other load until the
 * snapshot moves: loads of a big bucket's ghost children measured 30x slower (10,000 of them).
 * Iterations going on side by side miss each other's hints about once per leaf.
 */
const HINT_MISSES = 4

/** What a commit or savepoint does with a queued object (see Connection's #howToStore). */
const SKIP = 0
const NEW = 1
const CHANGED_ONE = 2
const LOST = 3
type StoreKind = typeof SKIP | typeof NEW | typeof CHANGED_ONE | typeof LOST

export class Connection<R extends object = Record<string, unknown>> implements PersistentJar, Disposable {
  readonly id = ++connectionIds
  readonly db: ConnectionOwner
  readonly #storage: Storage
  readonly cache: ObjectCache
  #tm: TransactionManagerLike
  /** Read as of just before this tid. */
  #before: Tid
  readonly #historical: boolean
  #opened = true
  /** The transaction this connection joined (it has changes in it), or null. */
  #txn: Transaction | null = null
  /** Changed objects registered in the current transaction. */
  #registered: Persistent[] = []
  /** New objects (added, or reachable from a stored object) not yet committed. */
  #added = new Map<Oid, Persistent>()
  /** Objects read with readCurrent(): oid → serial read. */
  #readCurrent = new Map<Oid, Tid>()
  /** Oids other transactions changed, to apply at the next transaction boundary. */
  #invalidated = new Set<Oid>()
  /** The savepoint store: records of objects changed before the last savepoint. */
  #tmp = new Map<Oid, TmpRecord>()
  /**
   * Records fetched ahead by `preload` at this connection's snapshot, for loads of their objects:
   * the storage's answers to the last PRELOADED_BATCHES hints (a B-tree leaf's ghosts each),
   * newest first, kept as they came; dropped whenever the snapshot moves. A load leaves its
   * record where it is (it stays true for the snapshot). Copying the answers into one map made
   * that map grow, up to 4,096 records, again and again: ~110 bytes allocated per loaded object,
   * and a look-up in the big map for each load instead of one or two in maps of a leaf's size.
   */
  #preloaded: Map<Oid, { data: Uint8Array; serial: Tid }>[] = []
  /**
   * The last PRELOAD_HINTS `preload` hints not used yet (a ring; null: none or used): values
   * whose first ghost to load fetches the others' records too. More than one, so that iterations
   * going on side by side (two trees read in step) each keep theirs.
   */
  readonly #hintValues: Array<readonly unknown[] | null> = new Array<readonly unknown[] | null>(PRELOAD_HINTS).fill(null)
  readonly #hintFrom: number[] = new Array<number>(PRELOAD_HINTS).fill(0)
  readonly #hintTo: number[] = new Array<number>(PRELOAD_HINTS).fill(0)
  /** Loads each hint was looked through for and did not hold (see HINT_MISSES). */
  readonly #hintMisses: number[] = new Array<number>(PRELOAD_HINTS).fill(0)
  /** The slot of the next hint. */
  #hintNext = 0
  /** Hints not used yet. */
  #hints = 0
  /** The serial of the last object loaded (see #setLoadedState). */
  #lastSerial: Tid = 0n
  /** During a commit: objects stored, their record sizes, and whether they are new (were added). */
  #stored: { obj: Persistent; size: number; added: boolean }[] = []
  #resolved: Oid[] = []
  /** While this connection finishes a commit: its tid, once the storage chose it. */
  #finishingTid: Tid | null = null
  /** The tid of the last transaction this connection committed (0n: none yet). */
  #lastCommitTid: Tid = 0n
  #onClose: (() => void)[] = []
  /** Asked by close() before it closes: each throws to refuse (see _addCloseCheck). */
  readonly #closeChecks = new Set<() => void>()
  readonly #synchronizer
  /**
   * The manager the synchronizer is registered with: with the async-scoped manager, the one of
   * the scope that opened the connection, wherever it is closed (unregistering from the scope
   * current at close would leave it following the opener's transactions after it is reused).
   */
  #synchManager: TransactionManagerLike | null = null

  constructor(db: ConnectionOwner, options: ConnectionOptions) {
    this.db = db
    this.#storage = db.storage
    this.cache = new ObjectCache({ ...options.cache })
    this.#tm = options.transactionManager ?? defaultManager
    this.#historical = options.before !== null && options.before !== undefined
    this.#before = this.#historical ? options.before! : this.#storage.lastTransaction() + 1n
    // Transaction managers hold synchronizers weakly: the connection keeps its own alive.
    this.#synchronizer = {
      newTransaction: () => this.#sync(),
      afterCompletion: (txn: Transaction) => this.#afterCompletion(txn),
    }
    // A historical connection follows transactions too: its snapshot stays, but its cache is
    // trimmed at their boundaries as any other's (it grew without bound otherwise).
    this.#registerSynch()
  }

  #registerSynch(): void {
    const tm = this.#tm
    this.#synchManager = tm instanceof AsyncScopedTransactionManager ? tm.current : tm
    this.#synchManager.registerSynch(this.#synchronizer)
  }

  #unregisterSynch(): void {
    this.#synchManager?.unregisterSynch(this.#synchronizer)
    this.#synchManager = null
  }

  // --- the public face -------------------------------------------------------------------------

  /** The root object (oid 0). */
  get root(): R {
    return this.get(0n) as unknown as R
  }

  /** Whether the connection is open (not closed back to its database's pool). */
  get opened(): boolean {
    return this.#opened
  }

  /**
   * Whether a savepoint of the current transaction holds objects' changed states: those objects
   * show this transaction's state though they are no longer `_p_changed`.
   */
  get hasSavepointState(): boolean {
    return this.#tmp.size > 0
  }

  /** A historical connection reads a fixed past state and cannot change anything. */
  get historical(): boolean {
    return this.#historical
  }

  /** The tid this connection reads before (its snapshot is everything committed before it). */
  get before(): Tid {
    return this.#before
  }

  /**
   * @internal The tid of the last transaction this connection committed (0n: none yet): what a
   * BigFile handle's pages stored in it show, whatever the snapshot moved past since.
   */
  get _lastCommitTid(): Tid {
    return this.#lastCommitTid
  }

  get transactionManager(): TransactionManagerLike {
    return this.#tm
  }

  /** The object with `oid`: from the cache, or a ghost made by loading its class name. */
  get(oid: Oid): Persistent {
    this.#checkOpen('get')
    const cached = this.cache.get(oid)
    if (cached !== undefined) return cached
    const added = this.#added.get(oid)
    if (added !== undefined) return added
    const { data, serial } = this.#load(oid)
    const { className, state } = decodeState(data, this.#reader())
    // A record that refers to its own object made that object's ghost while it was decoded.
    let obj = this.cache.get(oid)
    if (obj === undefined) {
      obj = _newGhost(this.#classFor(className, oid), this, oid)
      this.cache.add(obj)
    }
    this.#setLoadedState(obj, className, state, serial, data.length)
    return obj
  }

  /** Make `obj` persistent in this connection now (it gets its oid); it is stored at commit. */
  add(obj: Persistent): void {
    this.#checkOpen('add')
    if (!(obj instanceof Persistent)) throw new TypeError('add: only Persistent objects can be added')
    const jar = obj._p_jar
    if (jar === this) return
    if (jar !== null) throw new InvalidObjectReference(`add: ${describe(obj)} already belongs to another connection`)
    this.#checkWritable('add')
    this.#addNew(obj)
  }

  /**
   * Make the commit fail with a ReadConflictError if `obj` was changed by another transaction
   * since it was read, even if this transaction does not change it.
   */
  readCurrent(obj: Persistent): void {
    this.#checkOpen('readCurrent')
    if (obj._p_jar !== this) throw new InvalidObjectReference(`readCurrent: ${describe(obj)} does not belong to this connection`)
    const oid = obj._p_oid!
    if (this.#added.has(oid)) return
    if (obj._p_state === GHOST) obj._p_activate()
    this.#join()
    if (!this.#readCurrent.has(oid)) this.#readCurrent.set(oid, obj._p_serial)
  }

  /**
   * Ask the storage to start loading these objects (ghosts, or oids) at this connection's
   * snapshot, for storages where loading waits on a network. Resolves when they are loaded; a
   * storage without prefetch resolves at once. Objects still load on first use either way.
   */
  async prefetch(...objects: (Persistent | Oid)[]): Promise<void> {
    this.#checkOpen('prefetch')
    if (typeof this.#storage.prefetch !== 'function') return
    const oids: Oid[] = []
    for (const o of objects) {
      if (typeof o === 'bigint') oids.push(o)
      else if (o._p_jar === this && o._p_state === GHOST && !this.#tmp.has(o._p_oid!)) oids.push(o._p_oid!)
    }
    if (oids.length > 0) await this.#storage.prefetch(oids, this.#before)
  }

  /** Apply pending invalidations and move the snapshot to the newest transaction (aborts nothing). */
  sync(): void {
    this.#checkOpen('sync')
    if (this.#txn !== null) throw new ConnectionStateError('sync: the connection has changes in the current transaction; commit or abort first')
    this.#sync()
  }

  /** Make every up-to-date object a ghost. */
  cacheMinimize(): void {
    this.cache.minimize()
  }

  /** Make least recently used objects ghosts until the cache is within its limits. */
  cacheGC(): void {
    this.cache.incrgc()
  }

  /** Call `fn` when the connection is closed. */
  onCloseCallback(fn: () => void): void {
    this.#onClose.push(fn)
  }

  /**
   * @internal A part of the connection with changes of its own, not joined to the transaction
   * yet (a ZBigFile handle's dirty pages join at commit): `check` throws to refuse close() as
   * changed objects do. Returns the function that removes the check.
   */
  _addCloseCheck(check: () => void): () => void {
    this.#closeChecks.add(check)
    return () => this.#closeChecks.delete(check)
  }

  /** Close the connection (it returns to its database's pool). Error while it has uncommitted changes. */
  close(): void {
    if (!this.#opened) return
    if (this.#txn !== null) {
      throw new ConnectionStateError('cannot close a connection joined to a transaction: commit or abort the transaction first')
    }
    for (const check of this.#closeChecks) check()
    this.#closeChecks.clear()
    this.#opened = false
    const callbacks = this.#onClose
    this.#onClose = []
    for (const fn of callbacks) {
      try {
        fn()
      } catch (error) {
        log('error in a close callback: %O', error)
      }
    }
    this.#unregisterSynch()
    this.db._connectionClosed(this as unknown as Connection<object>)
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /** @internal The database closed: stop following transactions and drop the cache. */
  _shutdown(): void {
    this.#closeChecks.clear()
    if (this.#opened) {
      this.#unregisterSynch()
      const callbacks = this.#onClose
      this.#onClose = []
      for (const fn of callbacks) {
        try {
          fn()
        } catch (error) {
          log('error in a close callback: %O', error)
        }
      }
    }
    this.#opened = false
    this.#invalidated.clear()
    this.#preloaded = []
    this.#dropHints()
    this.cache.clear()
  }

  /** @internal Reopen a pooled connection for another user. */
  _reopen(tm: TransactionManagerLike | undefined): void {
    this.#opened = true
    this.#tm = tm ?? defaultManager
    this.#registerSynch()
    this.#sync()
  }

  /** @internal Other transactions committed changes to `oids` (called by the database). */
  _invalidate(tid: Tid, oids: readonly Oid[]): void {
    if (this.#historical) return
    if (!this.#opened) {
      // In the pool: nothing loads before it is reopened, so only objects cached now can be
      // stale then. Queuing every oid made an idle pooled connection keep every oid committed
      // since it was closed (about 45 MB per million).
      for (const oid of oids) if (this.cache.get(oid) !== undefined) this.#invalidated.add(oid)
      return
    }
    if (tid === this.#finishingTid) {
      // Our own commit: what this connection stored is up to date here (tpc_finish marks it
      // so); what other data managers of the transaction stored through the storage is news.
      // Others' commits told meanwhile (a client storage delivers them in tid order) are queued.
      if (oids.length === this.#stored.length) return // the same oids: #stored has each once
      const mine = new Set(this.#stored.map(({ obj }) => obj._p_oid))
      oids = oids.filter((oid) => !mine.has(oid))
    }
    for (const oid of oids) this.#invalidated.add(oid)
    if (log.enabled) log('conn %d: %d invalidations queued by %s', this.id, oids.length, idToHex(tid))
  }

  /** @internal Drop every cached object (the storage lost track of changes). */
  _invalidateCache(): void {
    for (const obj of this.cache.objects()) this.#invalidated.add(obj._p_oid!)
  }

  // --- PersistentJar ---------------------------------------------------------------------------

  setstate(obj: Persistent): void {
    const oid = obj._p_oid!
    if (!this.#opened) {
      throw new ConnectionStateError(`cannot load ${describe(obj)}: its connection is closed`)
    }
    const { data, serial } = this.#load(oid)
    const { className, state } = decodeState(data, this.#reader())
    this.#setLoadedState(obj, className, state, serial, data.length)
  }

  preload(values: readonly unknown[], from: number, to: number): void {
    if (to <= from || typeof this.#storage.loadBeforeMany !== 'function' || !this.#opened) return
    const k = this.#hintNext
    if (this.#hintValues[k] === null) this.#hints++
    this.#hintValues[k] = values
    this.#hintFrom[k] = from
    this.#hintTo[k] = to
    this.#hintMisses[k] = 0
    this.#hintNext = (k + 1) % PRELOAD_HINTS
  }

  #dropHints(): void {
    if (this.#hints === 0) return
    this.#hintValues.fill(null)
    this.#hints = 0
  }

  /**
   * When `oid` is a ghost among the values of a `preload` hint (the newest first): fetch its
   * record and those of the hint's other ghosts with one storage call (into #preloaded), and
   * drop the hint. False (the hints kept) when `oid` is in none of them.
   */
  #fetchUpcoming(oid: Oid): boolean {
    for (let j = 1; j <= PRELOAD_HINTS; j++) {
      const k = (this.#hintNext - j + PRELOAD_HINTS) % PRELOAD_HINTS
      const values = this.#hintValues[k]
      if (values === null || values === undefined) continue
      const oids: Oid[] = [oid]
      let found = false
      for (let i = this.#hintFrom[k]!, to = this.#hintTo[k]!; i <= to; i++) {
        const v = values[i]
        if (!(v instanceof Persistent)) continue
        const meta = _meta(v)
        if (meta.jar !== this || meta.state !== GHOST) continue
        const other = meta.oid!
        if (other === oid) found = true
        else if ((this.#tmp.size === 0 || !this.#tmp.has(other)) && this.#preloadedRecord(other) === undefined) oids.push(other)
      }
      if (!found) {
        if (++this.#hintMisses[k]! >= HINT_MISSES) {
          this.#hintValues[k] = null
          this.#hints--
        }
        continue
      }
      this.#hintValues[k] = null
      this.#hints--
      if (oids.length < 2) return false
      const batches = this.#preloaded
      batches.unshift(this.#storage.loadBeforeMany!(oids, this.#before))
      if (batches.length > PRELOADED_BATCHES) batches.pop()
      return true
    }
    return false
  }

  #preloadedRecord(oid: Oid): { data: Uint8Array; serial: Tid } | undefined {
    const batches = this.#preloaded
    for (let i = 0; i < batches.length; i++) {
      const pre = batches[i]!.get(oid)
      if (pre !== undefined) return pre
    }
    return undefined
  }

  register(obj: Persistent): void {
    if (!this.#opened) throw new ConnectionStateError(`cannot change ${describe(obj)}: its connection is closed`)
    if (this.#historical) {
      throw new ReadOnlyHistoryError(`cannot change ${describe(obj)}: it was read by a historical connection (before 0x${idToHex(this.#before)})`)
    }
    // The message names the object (idToHex): made only when it is thrown (it was 2% of an update).
    if (this.#storage.isReadOnly()) this.#checkWritable(`change ${describe(obj)}`)
    this.#join()
    this.#registered.push(obj)
    // No cache.accessed(obj) here: a changed object is never evicted, and tpc_finish marks it
    // used when it is up to date again (a move in a big LRU map was a tenth of an update).
  }

  ghostified(obj: Persistent): void {
    this.cache.ghostified(obj)
  }

  // --- DataManager -----------------------------------------------------------------------------

  sortKey(): string {
    return this.#storage.sortKey()
  }

  abort(txn: Transaction): void {
    // A transaction this connection is no longer joined to (one whose failed commit already
    // tpc_aborted it, aborted after the connection went back to the pool and was reused) has
    // nothing of ours: the changes are another transaction's.
    if (this.#txn !== null && txn !== this.#txn) return
    this.#discardChanges()
  }

  tpc_begin(txn: Transaction): void {
    this.#checkOpen('commit')
    this.#stored = []
    this.#resolved = []
    StorageCommit.for(this.#storage, txn).begin()
  }

  commit(txn: Transaction): void {
    const writer = this.#writer()
    const { queue, registered } = this.#storeQueue()
    // Whether the queue below stores `obj` (cached under `oid`): it is in the queue (new, in
    // #added, or registered) and still new or changed. One registered but made up to date again
    // (`_p_changed = false`) or a ghost is not stored from the queue.
    const storedFromQueue = (oid: Oid, obj: Persistent | undefined) => {
      if (obj === undefined || (this.#added.get(oid) !== obj && !registered.has(obj))) return false
      const how = this.#howToStore(_meta(obj))
      return how === NEW || how === CHANGED_ONE
    }
    // Records of the savepoint store whose object is not stored again from its current state.
    for (const [oid, rec] of this.#tmp) {
      const obj = this.cache.get(oid) ?? this.#added.get(oid)
      if (storedFromQueue(oid, obj)) continue
      this.#storage.store(oid, rec.serial, rec.data, txn)
      if (obj !== undefined) this.#stored.push({ obj, size: rec.data.length, added: this.#added.has(oid) })
    }
    this.#addedDuringCommit = queue
    try {
      for (let i = 0; i < queue.length; i++) {
        const obj = queue[i]!
        const meta = _meta(obj)
        const how = this.#howToStore(meta)
        if (how === SKIP) continue
        if (how === LOST) {
          // Storing the records that refer to it would leave them dangling.
          throw new UnserializableError(describe(obj), 'it was added in this transaction and made a ghost (_p_invalidate) before it was ever saved: its state is gone')
        }
        const oid = meta.oid!
        const data = encodeRecord(obj, this.#classNameOf(obj), writer)
        this.#storage.store(oid, this.#replacedSerial(oid, how, meta), data, txn)
        this.#stored.push({ obj, size: data.length, added: how === NEW })
      }
    } finally {
      this.#addedDuringCommit = null
    }
    for (const [oid, serial] of this.#readCurrent) {
      if (!storedFromQueue(oid, this.cache.get(oid)) && !this.#tmp.has(oid)) {
        this.#storage.checkCurrentSerialInTransaction(oid, serial, txn)
      }
    }
  }

  tpc_vote(txn: Transaction): void {
    this.#resolved = StorageCommit.for(this.#storage, txn).vote()
  }

  tpc_finish(txn: Transaction): void {
    let tid: Tid
    try {
      tid = StorageCommit.for(this.#storage, txn).finish((t) => (this.#finishingTid = t))
    } finally {
      this.#finishingTid = null
    }
    this.#lastCommitTid = tid
    for (const { obj, size, added } of this.#stored) {
      if (!_stored(obj, tid, size)) continue  // a ghost is not active: the cache must not hold it
      // Counted again with its stored size; a new object was used when it was added (this
      // transaction), a changed one now.
      if (added) this.cache.recount(obj)
      else this.cache.accessed(obj)
    }
    for (const oid of this.#resolved) this.cache.get(oid)?._p_invalidate()
    if (log.enabled) log('conn %d committed %s (%d objects)', this.id, idToHex(tid), this.#stored.length)
    this.#endTransaction()
  }

  tpc_abort(txn: Transaction): void {
    StorageCommit.for(this.#storage, txn).abort()
    if (this.#txn !== null && txn !== this.#txn) return
    this.#discardChanges()
  }

  savepoint(): DataManagerSavepoint {
    this.#checkOpen('savepoint')
    const writer = this.#writer()
    const { queue } = this.#storeQueue()
    this.#addedDuringCommit = queue
    try {
      for (let i = 0; i < queue.length; i++) {
        const obj = queue[i]!
        const meta = _meta(obj)
        const how = this.#howToStore(meta)
        if (how !== NEW && how !== CHANGED_ONE) continue // a lost new object fails the commit, not the savepoint
        const oid = meta.oid!
        const data = encodeRecord(obj, this.#classNameOf(obj), writer)
        this.#tmp.set(oid, { data, serial: this.#replacedSerial(oid, how, meta) })
        // Up to date with the savepoint store: later changes register again.
        _stored(obj, obj._p_serial, data.length)
        this.cache.accessed(obj)
      }
    } finally {
      this.#addedDuringCommit = null
    }
    this.#registered = []
    const tmpAtSavepoint = new Map(this.#tmp)
    const addedAtSavepoint = new Map(this.#added)
    return {
      rollback: () => {
        // Objects changed or created since the savepoint lose their changes.
        for (const obj of this.#registered) if (!addedAtSavepoint.has(obj._p_oid!)) obj._p_invalidate()
        for (const [oid, obj] of this.#added) {
          if (!addedAtSavepoint.has(oid)) {
            this.cache.delete(oid)
            _detach(obj)
          }
        }
        for (const oid of this.#tmp.keys()) this.cache.get(oid)?._p_invalidate()
        for (const oid of addedAtSavepoint.keys()) addedAtSavepoint.get(oid)!._p_invalidate()
        this.#registered = []
        this.#added = new Map(addedAtSavepoint)
        this.#tmp = new Map(tmpAtSavepoint)
      },
    }
  }

  // --- internals -------------------------------------------------------------------------------

  /** Set while storing: the queue an unsaved object reached from a stored one joins when it is added. */
  #addedDuringCommit: Persistent[] | null = null

  /**
   * What a commit or savepoint looks at: every new object, then the registered ones that are not
   * new, each once (an object registers again after `_p_changed = false` and a change). New
   * objects are each once in #added, and one added while storing is new: only the registered
   * ones need a set (a set of every queued object cost a hash of each new object per commit).
   */
  #storeQueue(): { queue: Persistent[]; registered: Set<Persistent> } {
    const queue: Persistent[] = []
    for (const obj of this.#added.values()) queue.push(obj)
    const registered = new Set<Persistent>()
    for (const obj of this.#registered) {
      if (registered.has(obj)) continue
      const oid = _meta(obj).oid
      if (oid !== null && this.#added.get(oid) === obj) continue
      registered.add(obj)
      queue.push(obj)
    }
    return { queue, registered }
  }

  /**
   * New objects are stored; a registered object only if it is still changed (setting
   * `_p_changed = false` after a change is a legal way to take it back, as in ZODB).
   */
  /**
   * What a commit or a savepoint does with a queued object: SKIP it (another connection's, an
   * unchanged object, a ghost), store it as NEW or as CHANGED_ONE, or LOST: added in this
   * transaction and made a ghost (`_p_invalidate`) with no savepoint record to load from, its
   * state is gone. One look-up of the oid in #added (a hash of a bigint).
   */
  #howToStore(meta: PersistentMeta): StoreKind {
    if (meta.jar !== this) return SKIP
    const isNew = this.#added.has(meta.oid!)
    if (meta.state === GHOST) return isNew && !this.#tmp.has(meta.oid!) ? LOST : SKIP
    return isNew ? NEW : meta.state === CHANGED ? CHANGED_ONE : SKIP
  }

  /** The serial a store of `oid` replaces: none for a new object, else the savepoint's or the loaded one. */
  #replacedSerial(oid: Oid, how: StoreKind, meta: PersistentMeta): Tid {
    if (how === NEW) return 0n
    const tmp = this.#tmp.size > 0 ? this.#tmp.get(oid) : undefined
    return tmp !== undefined ? tmp.serial : meta.serial
  }

  #checkOpen(what: string): void {
    if (!this.#opened) throw new ConnectionStateError(`${what}: the connection is closed`)
  }

  #checkWritable(what: string): void {
    if (this.#storage.isReadOnly()) throw new ReadOnlyError(`cannot ${what}: the database is read-only`)
    if (this.#historical) throw new ReadOnlyHistoryError(`cannot ${what}: this connection is historical (read-only)`)
  }

  #join(): void {
    if (this.#txn !== null) return
    const txn = this.#tm.get()
    txn.join(this)
    this.#txn = txn
  }

  #addNew(obj: Persistent): Oid {
    this.#join()
    const given = _meta(obj).oid
    const oid = given ?? this.#storage.newOid()
    _attach(obj, this, oid)
    this.#added.set(oid, obj)
    if (given === null) this.cache.addNew(obj)
    else this.cache.add(obj)
    this.#addedDuringCommit?.push(obj)
    return oid
  }

  #load(oid: Oid): { data: Uint8Array; serial: Tid } {
    const tmp = this.#tmp.size === 0 ? undefined : this.#tmp.get(oid)
    if (tmp !== undefined) return { data: tmp.data, serial: tmp.serial }
    if (this.#preloaded.length > 0) {
      const pre = this.#preloadedRecord(oid)
      if (pre !== undefined) return pre
    }
    if (this.#hints > 0 && this.#fetchUpcoming(oid)) {
      const pre = this.#preloaded[0]!.get(oid)
      if (pre !== undefined) return pre
    }
    const rev = this.#storage.loadBefore(oid, this.#before)
    if (rev === null) {
      throw new ReadConflictError(`object 0x${idToHex(oid)} did not exist in this connection's snapshot (before 0x${idToHex(this.#before)})`, { oid })
    }
    return { data: rev.data, serial: rev.serial }
  }

  #setLoadedState(obj: Persistent, className: string, state: unknown, serial: Tid, size: number): void {
    if (isBroken(obj)) this.#unbreak(obj, className)
    // Objects committed together are mostly loaded together: they share one serial bigint (each
    // record's own was 24 bytes more kept per loaded object).
    if (serial === this.#lastSerial) serial = this.#lastSerial
    else this.#lastSerial = serial
    _loadState(obj, state, serial, size)
    this.cache.accessed(obj)
  }

  /**
   * A Broken ghost made while its class was not registered: once it is (its module imported
   * later), the ghost takes that class and loads, or it would stay broken as long as anything
   * holds it. A Broken class registered as a placeholder stays broken.
   */
  #unbreak(obj: Persistent, className: string): void {
    const cls = findClass(className)
    if (cls === undefined || !(cls.prototype instanceof Persistent) || cls === Broken || cls.prototype instanceof Broken) {
      throw new UnknownClassError(className, obj._p_oid)
    }
    Object.setPrototypeOf(obj, cls.prototype)
  }

  #classFor(className: string, oid: Oid): new () => Persistent {
    const cls = findClass(className)
    if (cls === undefined) return Broken.forClass(className)
    if (!(cls.prototype instanceof Persistent)) {
      throw new UnknownClassError(className, oid)
    }
    return cls as unknown as new () => Persistent
  }

  /** The registered name of `obj`'s class; `path` names it in the error (the object itself by default). */
  #classNameOf(obj: Persistent, path?: () => string): string {
    const name = nameOfClass(obj.constructor)
    if (name === undefined) {
      if (isBroken(obj)) return (obj as Broken)._p_brokenClassName
      throw new UnserializableError(path === undefined ? describe(obj) : path(), `its class ${obj.constructor.name} is not registered: call registerClass(name, ${obj.constructor.name})`)
    }
    return name
  }

  /** How loads turn references into objects (one per connection: a load allocates none). */
  readonly #referenceReader: ReferenceReader = {
    persistentObject: (oid: Oid, className: string) => {
      const cached = this.cache.get(oid) ?? (this.#added.size > 0 ? this.#added.get(oid) : undefined)
      if (cached !== undefined) return cached
      const ghost = _newGhost(this.#classFor(className, oid), this, oid)
      this.cache.addGhost(ghost)
      return ghost
    },
  }

  #reader(): ReferenceReader {
    return this.#referenceReader
  }

  #writer(): ReferenceWriter {
    // One answer, refilled for each reference (the encoder reads it at once).
    const ref: { oid: Oid; className: string } = { oid: 0n, className: '' }
    return {
      persistentRef: (obj: Persistent, path: () => string) => {
        // The record, not the _p_jar/_p_oid getters: this site sees every persistent class.
        const meta = _meta(obj)
        const jar = meta.jar
        let oid: Oid
        if (jar === null) {
          oid = this.#addNew(obj)
        } else if (jar !== this) {
          throw new InvalidObjectReference(
            `cannot store ${path()}: it refers to ${describe(obj)}, which belongs to another connection` +
              (jar instanceof Connection && jar.db !== this.db ? ' of another database' : ''),
          )
        } else {
          oid = meta.oid!
        }
        ref.className = this.#classNameOf(obj, path)
        ref.oid = oid
        return ref
      },
    }
  }

  /** After abort or a failed commit: changed objects lose their changes, new ones are unsaved again. */
  #discardChanges(): void {
    for (const obj of this.#registered) {
      if (obj._p_jar === this && !this.#added.has(obj._p_oid!)) obj._p_invalidate()
    }
    for (const [oid, obj] of this.#added) {
      // A new object made a ghost after a savepoint gets its state back before it is detached.
      if (_meta(obj).state === GHOST && this.#tmp.has(oid) && this.#opened) obj._p_activate()
      this.cache.delete(oid)
      _detach(obj)
    }
    for (const oid of this.#tmp.keys()) this.cache.get(oid)?._p_invalidate()
    for (const { obj } of this.#stored) if (obj._p_jar === this && _meta(obj).state === CHANGED) obj._p_invalidate()
    this.#endTransaction()
  }

  #endTransaction(): void {
    this.#registered = []
    this.#added = new Map()
    this.#readCurrent = new Map()
    this.#tmp = new Map()
    this.#stored = []
    this.#resolved = []
    this.#txn = null
  }

  #afterCompletion(txn: Transaction): void {
    void txn
    // A transaction we did not join ended: our own state is unaffected, but it is a boundary.
    if (this.#txn !== null) this.#discardChanges()
    this.#sync()
    this.cache.incrgc()
  }

  /** A transaction boundary: apply queued invalidations and take a new snapshot. */
  #sync(): void {
    if (this.#historical || !this.#opened) return
    if (this.#preloaded.length > 0) this.#preloaded = []
    this.#dropHints()
    this.#before = this.#storage.lastTransaction() + 1n
    if (this.#invalidated.size === 0) return
    const oids = this.#invalidated
    this.#invalidated = new Set()
    for (const oid of oids) this.cache.get(oid)?._p_invalidate()
  }
}

/** `ClassName(oid 0x...)` for messages. */
export function describe(obj: Persistent): string {
  const oid = obj._p_oid
  return `${obj.constructor.name}(${oid === null ? 'unsaved' : `oid 0x${idToHex(oid)}`})`
}
