// @wendelin/zodb: transparent persistent objects, MVCC connections and storages.
//
//     import * as transaction from '@wendelin/transaction'
//     import { DB, Persistent, PersistentMapping, registerClass } from '@wendelin/zodb'

export { Persistent, GHOST, UPTODATE, CHANGED, STICKY, type PersistentState, type PersistentStatus, type PersistentJar } from './persistent.js'
export { PersistentMapping } from './persistent-mapping.js'
export { PersistentList } from './persistent-list.js'
export { copyTransactions, type CopyOptions, type CopyProgress, type RestorableStorage } from './copy-transactions.js'
export { Root } from './root.js'
export { Broken } from './broken.js'
export { registerClass, findClass, classForName, nameOfClass, registeredClassNames, type AnyClass } from './class-registry.js'
export {
  RECORD_FORMAT_VERSION,
  encodeStateRecord,
  bytesRecord,
  bytesRecordPrefix,
  OWN_RECORD,
  _encodeStateRecordWithMsgpackr,
  _decodeStateWithMsgpackr,
  decodeState,
  PersistentReference,
  decodeForDump,
  decodeRaw,
  recordClassName,
  referencesIn,
  type RawRecord,
} from './serialize.js'
export { type Oid, type Tid, z64, MAX_TID, tidFromDate, tidToDate, newTid, idToHex, hexToId, idToBytes, bytesToId } from './tid.js'
export type {
  Storage,
  TransactionMetaData,
  LoadedRevision,
  HistoryEntry,
  DataRecord,
  TransactionRecord,
  InvalidationListener,
  UndoLogEntry,
} from './storage.js'
export { MemoryStorage, type MemoryStorageOptions } from './memory-storage.js'
export { SQLiteStorage, SQLITE_SCHEMA_VERSION, StorageBusyError, StorageFileError, UndoError, type SQLiteStorageOptions, type AutoVacuum, type Durability, type PackOptions, type PackProgress, type UndoEntry } from './sqlite-storage.js'
export { openStorage, registerStorageScheme, specForAnotherThread, type StorageOpener } from './storage-spec.js'
export { tryToResolveConflict } from './conflict-resolution.js'
export { Connection } from './connection.js'
export { ObjectCache, type CacheLimits } from './object-cache.js'
export { DB, type DBOptions, type OpenOptions, type TransactionOptions } from './db.js'
export {
  POSError,
  POSKeyError,
  ConflictError,
  ReadConflictError,
  StorageTransactionError,
  ReadOnlyError,
  ReadOnlyHistoryError,
  ConnectionStateError,
  InvalidObjectReference,
  UnserializableError,
  UnknownClassError,
  CorruptRecordError,
  StorageNotShareableError,
  type ConflictDetails,
} from './errors.js'
