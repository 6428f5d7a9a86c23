// The root object (oid 0), created by the database on first open. Attributes name the
// application's top-level objects: `conn.root.accounts = new PersistentMapping()`.

import { registerClass } from './class-registry.js'
import { Persistent } from './persistent.js'

export class Root extends Persistent {
  [name: string]: unknown
}

registerClass('zodb.Root', Root)
