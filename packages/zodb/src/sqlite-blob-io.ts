// Part-of-a-record reads and big-record writes for SQLiteStorage: SQLite's incremental blob
// I/O, which better-sqlite3 does not expose, through build/Release/sqlite_blob.node
// (native/sqlite/blob_io.c). That file is both a Node-API module (it is handed the memory to
// read into or write from) and a SQLite extension (SQL functions wendelin_blob_range,
// wendelin_blob_read and wendelin_blob_write), loaded into each connection.
//
// Without it the storage still works (with a process warning): a range is then a substr() of
// the whole record, which SQLite reads in full (every overflow page) before cutting it.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import createDebug from 'debug'

const log = createDebug('wendelin:zodb:sqlite')

interface BlobAddon {
  setBuffers(buffers: readonly Uint8Array[]): void
  clearBuffers(): void
}

/** The extension: its file (for Database.loadExtension) and the calls that hand it buffers. */
export interface BlobIO {
  /** The file; SQLite finds its entry point from the name (sqlite3_sqliteblob_init). */
  readonly path: string
  /**
   * Runs `statement` with `buffers` as the slots 0, 1, ... that wendelin_blob_read reads into
   * and wendelin_blob_write writes from, on this thread; they are forgotten when it returns or
   * throws.
   */
  with<T>(buffers: readonly Uint8Array[], statement: () => T): T
}

function load(): BlobIO | null {
  const here = path.dirname(fileURLToPath(import.meta.url))
  const file = path.resolve(process.env.WENDELIN_SQLITE_BLOB_ADDON || path.resolve(here, '../../../build/Release/sqlite_blob.node'))
  let addon: BlobAddon
  try {
    if (!existsSync(file)) throw new Error('no such file')
    addon = createRequire(import.meta.url)(file) as BlobAddon
  } catch (error) {
    unavailable(`cannot load ${file} (${(error as Error).message})`)
    return null
  }
  return {
    path: file,
    with(buffers, statement) {
      addon.setBuffers(buffers)
      try {
        return statement()
      } finally {
        addon.clearBuffers()
      }
    },
  }
}

let warned = false

/**
 * The extension cannot be used: said once per thread as a process warning (the storage works,
 * but a part of a big record costs a read of all of it), and in the log.
 */
export function unavailable(why: string): void {
  log('blob extension unavailable: %s', why)
  if (warned) return
  warned = true
  process.emitWarning(`${why}: SQLiteStorage reads parts of big records by reading all of them (slower); run npm install to build it`, {
    code: 'WENDELIN_SQLITE_BLOB',
  })
}

/** The extension, or null where it was not built. */
export const blobIO: BlobIO | null = load()
