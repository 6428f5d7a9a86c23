// What every subcommand shares: opening a storage from a spec with one clear line on failure,
// progress output (a bar on a terminal, plain lines otherwise), and formatting.

import { existsSync } from 'node:fs'

import cliProgress from 'cli-progress'
import { type Storage, StorageFileError, type Tid, idToHex, openStorage, tidToDate } from '@wendelin/zodb'
import { ClientDisconnected } from '@wendelin/zeo'

/** An error to print as one line (`wendelin CMD: message`) with its exit status. */
export class CliError extends Error {
  override name = 'CliError'
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message)
  }
}

/** `spec` as a storage spec: one without a scheme is a plain path, taken as a SQLite file. */
export function plainPathAsSqlite(spec: string): string {
  return /^[a-z][a-z0-9+.-]*:/.test(spec) ? spec : `sqlite:${spec}`
}

/**
 * Open the storage `spec` names. A plain path is taken as a SQLite file. A SQLite file that
 * does not exist is an error here (these commands inspect databases, they do not create them).
 */
export async function openExisting(spec: string, options: { readOnly?: boolean } = {}): Promise<Storage> {
  spec = plainPathAsSqlite(spec)
  if (spec.startsWith('sqlite:')) {
    const file = spec.slice('sqlite:'.length).split('?')[0]!
    if (!existsSync(file)) throw new CliError(`${file}: no such database file`)
  }
  try {
    return await openStorage(spec, options)
  } catch (error) {
    throw new CliError(`cannot open ${spec}: ${(error as Error).message.split('\n')[0]}`)
  }
}

/** Run a subcommand's work, turning any failure into one line on stderr and an exit status. */
export function action<A extends unknown[]>(name: string, fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args)
      process.exitCode = code ?? 0
    } catch (error) {
      // A storage found corrupt, or lost, after it opened is what the README's status 2 says too
      // (a bad page surfaces only when it is read: wendelin info on a damaged file).
      const code = error instanceof CliError ? error.exitCode : error instanceof StorageFileError || error instanceof ClientDisconnected ? 2 : 1
      process.stderr.write(`wendelin ${name}: ${(error as Error).message.split('\n')[0]}\n`)
      process.exitCode = code
    }
  }
}

export interface Progress {
  update(done: number, detail?: string): void
  stop(): void
}

/** A progress bar on a terminal (stderr), or a line every few seconds otherwise. */
export function progress(what: string, total: number | null): Progress {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: `${what} [{bar}] {value}${total === null ? '' : '/{total}'} {detail}`, stream: process.stderr, hideCursor: true, clearOnComplete: true },
      cliProgress.Presets.shades_classic,
    )
    bar.start(total ?? 0, 0, { detail: '' })
    return {
      update: (done, detail = '') => (total === null ? bar.setTotal(done) : undefined, bar.update(done, { detail })),
      stop: () => bar.stop(),
    }
  }
  let last = Date.now()
  return {
    update(done, detail = '') {
      const now = Date.now()
      if (now - last < 2000) return
      last = now
      process.stderr.write(`${what}: ${done}${total === null ? '' : `/${total}`} ${detail}\n`)
    },
    stop() {},
  }
}

export function formatTid(tid: Tid): string {
  return tid === 0n ? 'none' : `0x${idToHex(tid)} (${tidToDate(tid).toISOString()})`
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let x = n
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024
    i++
  }
  return `${i === 0 ? x : x.toFixed(1)} ${units[i]}`
}

/** An oid or tid given on the command line: decimal, or hex with 0x. */
export function parseId(value: string, what: string): bigint {
  try {
    if (/^0x[0-9a-f]{1,16}$/i.test(value) || /^\d+$/.test(value)) return BigInt(value)
  } catch {
    // fall through
  }
  throw new CliError(`${what} must be a decimal number or 0x-prefixed hex, got ${JSON.stringify(value)}`)
}

/** JSON with bigints as strings and bytes as their length. */
export function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_k, v: unknown) => {
      if (typeof v === 'bigint') return `${v}n`
      if (v instanceof Uint8Array) return { $bytes: v.length }
      if (v instanceof Map) return { $map: [...v.entries()] }
      if (v instanceof Set) return { $set: [...v] }
      return v
    },
    indent,
  )
}
