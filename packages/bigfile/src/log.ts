// Logging through `debug` namespaces:
//   wendelin:bigfile           file handles: open, close, mmap, unmap
//   wendelin:bigfile:loader    loader workers: start, loads, retries, failures
//   wendelin:bigfile:writeout  dirty page writeout and discard
import createDebug from 'debug'

export const log = createDebug('wendelin:bigfile')
export const loaderLog = createDebug('wendelin:bigfile:loader')
export const writeoutLog = createDebug('wendelin:bigfile:writeout')
