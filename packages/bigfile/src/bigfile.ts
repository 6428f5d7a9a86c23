// BigFile: where a file's blocks come from and go to.
//
// loadblk runs in a loader worker (its own isolate: a fault cannot run JS on the faulting
// thread), so a BigFile must be describable by a spec — module URL, exported class name and
// JSON arguments — from which a loader reopens its own instance. storeblk runs on the thread
// that owns the file handle, at writeout.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

export interface BigFileSpec {
  /** URL of the module exporting the class (use `import.meta.url`). */
  module: string
  /** Name of the exported class; it must have a static `fromSpec(args)`. */
  export: string
  args: JsonValue
}

export interface BigFileClass {
  fromSpec(args: JsonValue): BigFile
}

/** What a loader tells loadblk besides the block: which file handle the load is for. */
export interface LoadContext {
  filehId: number
}

export abstract class BigFile implements Disposable {
  /** Block size in bytes; equals the page size of the RAM the file is opened on. */
  abstract readonly blksize: number

  /**
   * Fills all of `dest` (blksize bytes) with block `blk` — zeros where the file has no data.
   * Runs in a loader worker. A thrown TransientError, or an error with `transient: true` or a
   * code such as EAGAIN, is retried; any other error fails the load.
   *
   * It may return a report (bytes) about the load; the owning thread drains the reports of
   * its handle (ZBigFile reports the database objects the block depended on).
   */
  abstract loadblk(blk: number, dest: Uint8Array, ctx?: LoadContext): void | Uint8Array | Promise<void | Uint8Array>

  /** Stores block `blk` from `src` (read-only; do not keep it). Runs on the owning thread. */
  abstract storeblk(blk: number, src: Uint8Array): void

  /** How a loader worker reopens this file. */
  abstract spec(): BigFileSpec

  /** Names the file in messages (the fatal message of a failed load names it too). */
  describe(): string {
    const spec = this.spec()
    return `${spec.export} ${JSON.stringify(spec.args)}`
  }

  /**
   * For "mmap overlay" mode: a file whose bytes are this BigFile's blocks (block b at byte
   * b*blksize, zeros past the end), mapped read-only under the handle's mappings. null: the
   * BigFile cannot be a base layer.
   */
  mmapBase(): { path: string } | null {
    return null
  }

  /**
   * Prepares for loads, in a loader worker, when the handle is opened: opens what loadblk will
   * need (connections, storages) so the first fault does not wait for it. Optional; errors are
   * only logged (the first load opens again and reports its own).
   */
  warm(_ctx: LoadContext): void | Promise<void> {}

  /** Releases resources (a loader calls it when the handle closes). */
  close(): void {}

  [Symbol.dispose](): void {
    this.close()
  }

  /**
   * Native backends (tests, benchmarks) are served without loader workers.
   * @internal
   */
  get nativeKind(): 'js' | 'pattern' | 'noop' {
    return 'js'
  }
}

/** Reopens a BigFile from its spec (in a loader worker). */
export async function openBigFile(spec: BigFileSpec): Promise<BigFile> {
  const mod = (await import(spec.module)) as Record<string, unknown>
  const cls = mod[spec.export] as Partial<BigFileClass> | undefined
  if (!cls || typeof cls.fromSpec !== 'function')
    throw new TypeError(`${spec.module} does not export a BigFile class ${spec.export} with fromSpec()`)
  return cls.fromSpec(spec.args)
}
