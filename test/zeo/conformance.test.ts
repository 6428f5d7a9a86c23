// ClientStorage against a server in a child process: the whole storage conformance suite.
import { describeStorageConformance } from '../zodb/storage-conformance.js'

import { ServerProcess, removeScratch } from './helpers.js'

let server: ServerProcess | null = null

describeStorageConformance('ClientStorage (server in a child process, SQLite behind it)', async (options = {}) => {
  server ??= await ServerProcess.start()
  const name = await server.addStorage()
  return server.client(name, options.readOnly ? { readOnly: true } : {})
})

after(async () => {
  await server?.stop()
  server = null
  removeScratch()
})
