// @wendelin/btrees: persistent B-trees with conflict resolution.
export { BTreeKeyError, type KeyKind, type ObjectKey, compareObjectKeys, describeKey, intKeys, longKeys, objectKeys } from './key-kind.js'
export { BucketMergeConflict, type BucketContents, type MergeConflictReason, mergeBuckets } from './bucket-merge.js'
export * as setOperations from './set-operations.js'
