// Waiting for a word of shared memory to change (the I/O worker's "a reply came" counter): either
// a short spin, then Atomics.wait, or Atomics.wait at once. On these VMs a thread sleeping in
// Atomics.wait takes tens of microseconds to wake when the vCPUs are idle, a large part of a
// loopback round trip, and spinning catches the replies that come within the window without that
// wake-up. But when the vCPUs are busy (other processes, or this client's own I/O worker and
// server needing the vCPU the spin holds) spinning delays the reply it waits for: measured on the
// 2-core VM with other work running, loads took 85-105 µs spinning and 50-57 sleeping, and the
// server's own handling of a request got slow one time in five.
//
// A spinning wait also reads the socket itself (direct-read.ts): a reply caught in the spin then
// wakes no thread at all (the I/O worker's wake-up, its JS and the postMessage are gone too).
//
// So the waiter measures both: running averages of how long replies take when it spins and when
// it sleeps at once, each wait doing what has lately been faster and one in EXPLORE doing the
// other (one in EXPLORE_FAR when the other has lately been much slower), to notice when that
// changes. A spin lasts longer than replies take (2.5 times, up to MAX_SPIN_US: one that runs out
// hands the socket's reading back and forth); when even sleeping replies take longer than
// MAX_SPIN_US, nothing spins. Each kind of
// wait has its own policy (a load's reply comes in tens of µs, a finish's after the server's
// fsync): one average of both would keep the loads from spinning.

/** Longest spin, in µs: replies that usually take longer are slept for at once. */
const MAX_SPIN_US = 250
/** Weight of the newest reply in a running average (1/8). */
const WEIGHT = 0.125
/** One wait in EXPLORE does what has lately been slower (a power of 2). */
const EXPLORE = 8
/**
 * One wait in EXPLORE_FAR does the other thing when it has lately been much slower (over
 * FAR_APART times): each try costs a slow reply, and the change back (the socket's reading handed
 * back and forth, see direct-read.ts) another.
 */
const EXPLORE_FAR = 32
const FAR_APART = 1.5

/** The choice between spinning and sleeping, from the reply times observed (no clock of its own). */
export class SpinPolicy {
  /** Running averages of the time to a reply, in µs, of waits that spun first and that slept at once. */
  spinning = MAX_SPIN_US / 2
  sleeping = MAX_SPIN_US / 2
  #waits = 0

  /** How long the next wait spins before it sleeps, in µs (0: it sleeps at once). */
  next(): number {
    const typical = Math.min(this.spinning, this.sleeping)
    if (typical > MAX_SPIN_US) return 0
    const spin = this.spinning < this.sleeping
    const far = Math.max(this.spinning, this.sleeping) > FAR_APART * typical
    const explore = (++this.#waits & ((far ? EXPLORE_FAR : EXPLORE) - 1)) === 0
    return spin !== explore ? Math.min(MAX_SPIN_US, typical * 2.5) : 0
  }

  /** Whether waits spin, lately (the next one may still explore). */
  get prefersSpinning(): boolean {
    return this.spinning < this.sleeping && this.spinning <= MAX_SPIN_US
  }

  /** A wait that spun first (`spun`) or slept at once had its reply after `micros` µs. */
  observe(spun: boolean, micros: number): void {
    // A reply that took very long says no more than "slow": it must not swamp the average.
    const took = Math.min(micros, 4 * MAX_SPIN_US)
    if (spun) this.spinning += (took - this.spinning) * WEIGHT
    else this.sleeping += (took - this.sleeping) * WEIGHT
  }
}

/**
 * The socket read by the waiting thread itself while it spins (direct-read.ts): no thread has to
 * be woken for a reply that comes within the spin.
 */
export interface SpinReader {
  /** Ask for the socket's reading (about to spin), or give it up (about to sleep). */
  want(on: boolean): void
  /** Read what the socket has, if this thread reads it; true if anything came. */
  poll(): boolean
  /** Give the reading up for a sleep; `keepAsking`: have it back after the next reply. */
  release(keepAsking: boolean): void
}

export class SpinWaiter {
  readonly #policies = new Map<string, SpinPolicy>()
  /** Waits that spun, and those whose reply came during the spin (statistics). */
  spins = 0
  caught = 0
  /**
   * For tests, and benchmarks comparing the ways: spin this long (µs; 0: sleep at once) instead
   * of what the policy says, and whether the socket is read while spinning (else only the worker
   * reads it).
   */
  fixedSpin: number | null = null
  readWhileSpinning = true

  /** The policy of the waits of `kind` (a method's name). */
  policy(kind: string): SpinPolicy {
    let p = this.#policies.get(kind)
    if (p === undefined) this.#policies.set(kind, (p = new SpinPolicy()))
    return p
  }

  /**
   * A call whose waits are of `kind` is about to be sent: if they spin lately, ask for the
   * socket's reading now, so that the worker hands it over with this call's reply (asked for only
   * once waiting, a quick reply may have been read and posted before).
   */
  beforeCall(kind: string | null, reader: SpinReader): void {
    if (kind === null || !this.readWhileSpinning) return
    if (this.fixedSpin !== null ? this.fixedSpin > 0 : this.policy(kind).prefersSpinning) reader.want(true)
  }

  /**
   * Wait until `word[index]` is no longer `seq` or `timeoutMs` passed (as Atomics.wait, without
   * its return value), as the policy of waits of `kind` says. `kind` null: a wait known to be long
   * or rare (a vote waiting for other clients' locks, a pack) sleeps at once and is not measured.
   * `reader`: a wait that spins reads the socket itself, if it has the reading; one that sleeps
   * gives the reading up first (it returns also when the reader read something).
   */
  wait(word: Int32Array, index: number, seq: number, timeoutMs: number, kind: string | null, reader?: SpinReader): void {
    if (kind === null) {
      reader?.want(false)
      Atomics.wait(word, index, seq, timeoutMs)
      return
    }
    const policy = this.policy(kind)
    const start = performance.now()
    const window = this.fixedSpin ?? policy.next()
    if (!this.readWhileSpinning && reader !== undefined) {
      reader.want(false)
      reader = undefined
    }
    reader?.want(window > 0)
    if (window > 0) {
      this.spins++
      const end = start + window / 1000
      do {
        if (Atomics.load(word, index) !== seq || (reader !== undefined && reader.poll())) {
          this.caught++
          policy.observe(true, (performance.now() - start) * 1000)
          return
        }
      } while (performance.now() < end)
      reader?.release(true)
    }
    Atomics.wait(word, index, seq, timeoutMs)
    policy.observe(window > 0, (performance.now() - start) * 1000)
  }
}
