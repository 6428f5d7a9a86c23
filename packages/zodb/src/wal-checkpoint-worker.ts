// The thread of a WalCheckpointer: its own connection to the file, a PASSIVE checkpoint each
// time the storage asks (see wal-checkpointer.ts). PASSIVE never waits for readers or the
// writer: it copies the frames no reader still needs and leaves the rest for the next one.
import { workerData } from 'node:worker_threads'

import Database from 'better-sqlite3'

import { type CheckpointWorkerData, Slot } from './wal-checkpointer.js'

const { file, synchronous, state: shared } = workerData as CheckpointWorkerData
const state = new Int32Array(shared)
Atomics.store(state, Slot.Started, 1)

function serve(db: Database.Database): void {
  let served = Atomics.load(state, Slot.Served)
  for (;;) {
    Atomics.wait(state, Slot.Requested, served)
    if (Atomics.load(state, Slot.Stop) === 1) return
    const asked = Atomics.load(state, Slot.Requested)
    try {
      db.pragma('wal_checkpoint(PASSIVE)')
    } catch {
      // SQLITE_BUSY (another connection checkpointing) and the like: the next request tries again
    }
    served = asked
    Atomics.store(state, Slot.Served, served)
    Atomics.notify(state, Slot.Served)
  }
}

let ended = 1
try {
  const db = new Database(file, { fileMustExist: true, timeout: 60_000 })
  try {
    // The checkpoint syncs the database file before the WAL may be restarted (as the storage's
    // own connection would, at its durability).
    db.pragma(`synchronous = ${synchronous}`)
    db.pragma('wal_autocheckpoint = 0')
    serve(db)
  } finally {
    db.close()
  }
} catch {
  ended = 2
} finally {
  Atomics.store(state, Slot.Ended, ended)
  Atomics.notify(state, Slot.Ended)
}
