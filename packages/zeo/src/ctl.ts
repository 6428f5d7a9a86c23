// The words of shared memory between ClientStorage (the main thread) and its I/O worker.

/** Bumped (and notified) when the worker posted something a waiting main thread must see. */
export const WAKE = 0
/** Bumped after every batch the worker posts (invalidation pushes included). */
export const POSTED = 1
/**
 * The socket's file descriptor while the main thread may write requests to it itself (a plain
 * TCP connection, welcomed, nothing of the worker's own waiting to be written), else -1.
 */
export const FD = 2
/** 1 while the main thread is writing to FD: the worker does not close or write the socket then. */
export const BUSY = 3
/** Frames the main thread posted to the worker for writing, and those the worker has handled. */
export const HANDED = 4
export const HANDLED = 5
/** The connection FD belongs to (bumped at every welcome). */
export const EPOCH = 6
/** The id of the main thread's `finish` call written directly (its reply is a tid to remember). */
export const FINISH_ID = 7
/**
 * The inode and device numbers (as int32) of the socket FD is published for: the main thread
 * checks the descriptor still refers to it before writing (a worker that died without withdrawing
 * FD, out of memory or terminated, leaves a closed number another file may have taken since).
 */
export const SOCK_INO = 8
export const SOCK_DEV = 9
/** Set once the worker is gone (or going): no reply will come from it. */
export const GONE = 10
/**
 * Who reads the socket: 0 the worker; -1 the worker, but the main thread asks for it (the worker
 * stops reading after its next batch with a reply, and sets the word to its EPOCH); a connection's
 * EPOCH: the main thread reads that connection's socket itself, the worker does not until the
 * main thread hands it back (see direct-read.ts).
 */
export const READER = 11
/**
 * Bumped by the worker every WORKER_BEAT_MS while its event loop runs: a worker killed without a
 * word (out of memory, terminated: its 'exit' handler does not run) while it publishes no socket
 * to check (disconnected, TLS) is noticed by a main thread blocked for a reply when it stops.
 */
export const BEAT = 14
export const WORKER_BEAT_MS = 250
/** Words in the control array (12 and 13 hold LAST_TID). */
export const CTL_WORDS = 15
/**
 * Byte offset of a BigInt64 in the same buffer: the newest tid the main thread has read (an
 * invalidation, its own finish), for the worker's next handshake when it did not read it itself.
 */
export const LAST_TID_OFFSET = 48
