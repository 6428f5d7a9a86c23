// @wendelin/zeo: a storage server and the network client storage that talks to it, with
// invalidations pushed to clients (a TypeScript take on ZEO).
//
//     import { StorageServer, ClientStorage } from '@wendelin/zeo'
//
// Importing the package registers the `zeo:` and `zeos:` storage specs with openStorage.

import { registerStorageScheme } from '@wendelin/zodb'

import { ClientStorage } from './client.js'

export { ClientStorage, parseZeoSpec, type ClientStorageOptions } from './client.js'
// A client's I/O worker and control words (exported for its tests; not an API to build on).
export { IO_INTERNALS } from './client.js'
export { DirectReader, type DirectReadHooks, type ReadHandback } from './direct-read.js'
export * as ioCtlWords from './ctl.js'
export { StorageServer, type StorageServerOptions, type ServedStorageOptions, type TlsServerOptions } from './server.js'
// How a waiting client chooses between spinning and sleeping (exported for its tests).
export { SpinPolicy } from './spin-wait.js'
export {
  BIG_FRAME_BYTES,
  ClientDisconnected,
  ProtocolError,
  PROTOCOL_VERSION,
  DEFAULT_MAX_FRAME,
  FrameReader,
  encodeFrame,
  frameParts,
  wholeFrameOf,
  decodeBody,
} from './protocol.js'

for (const scheme of ['zeo', 'zeos']) {
  registerStorageScheme(scheme, (spec, options) => ClientStorage.open(spec, options.readOnly ? { readOnly: true } : {}))
}
