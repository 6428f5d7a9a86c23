// Storage specs: the URL-like strings that name a storage (`memory:`, `sqlite:/path`,
// `zeo://host:port`), so that a worker thread can open its own instance of the storage the main
// thread uses. Packages that bring a storage register their scheme here.

import { StorageNotShareableError } from './errors.js'
import { MemoryStorage, specNotShareable } from './memory-storage.js'
import type { Storage } from './storage.js'

export type StorageOpener = (spec: string, options: { readOnly?: boolean }) => Storage | Promise<Storage>

const openers = new Map<string, StorageOpener>()

/** Packages that register a scheme when imported, for schemes nobody registered yet. */
const PROVIDERS: Record<string, string> = { zeo: '@wendelin/zeo', zeos: '@wendelin/zeo' }

/** Make `openStorage` understand specs that start with `scheme:`. */
export function registerStorageScheme(scheme: string, opener: StorageOpener): void {
  if (!/^[a-z][a-z0-9+.-]*$/.test(scheme)) throw new TypeError(`not a valid storage scheme: ${JSON.stringify(scheme)}`)
  openers.set(scheme, opener)
}

/** Open the storage a spec names. */
export async function openStorage(spec: string, options: { readOnly?: boolean } = {}): Promise<Storage> {
  const m = /^([a-z][a-z0-9+.-]*):/.exec(spec)
  if (m === null) throw new TypeError(`not a storage spec (expected scheme:...): ${JSON.stringify(spec)}`)
  let opener = openers.get(m[1]!)
  const provider = PROVIDERS[m[1]!]
  if (opener === undefined && provider !== undefined) {
    // A worker thread (a ZBigFile loader, say) opens specs without having imported the package
    // that registers their scheme: import it now. zodb cannot depend on those packages (they
    // depend on it), so they are found at run time, by name.
    try {
      await import(provider)
    } catch (error) {
      throw new TypeError(`${m[1]}: specs need the package ${provider}, which cannot be loaded here: ${(error as Error).message}`)
    }
    opener = openers.get(m[1]!)
  }
  if (opener === undefined) {
    throw new TypeError(`no storage is registered for ${m[1]}: specs (known: ${[...openers.keys()].join(', ')}); import the package that provides it`)
  }
  return await opener(spec, options)
}

/**
 * The spec another thread can open to reach the same data as `storage`; StorageNotShareableError
 * for a storage that lives in this thread's memory.
 */
export function specForAnotherThread(storage: Storage): string {
  if (typeof storage.specForAnotherThread === 'function') return storage.specForAnotherThread()
  if (!storage.shareable) throw specNotShareable(storage)
  return storage.spec
}

export { StorageNotShareableError }

registerStorageScheme('memory', (spec, options) => {
  const name = spec.slice('memory:'.length)
  return new MemoryStorage({ ...(name ? { name } : {}), ...(options.readOnly ? { readOnly: true } : {}) })
})
