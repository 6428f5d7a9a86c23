// Waiting for a word of shared memory to change (the I/O worker's "a reply came" counter): a
// short spin first, then Atomics.wait. On these VMs a thread sleeping in Atomics.wait takes tens
// of microseconds to wake when the vCPUs are idle, a large part of a loopback round trip;
// spinning catches the replies that come within the window without that wake-up.
//
// The window follows the replies: a running average of how long they take decides it. Replies
// that usually come within MAX_SPIN_US are spun for (a little longer than they take); slower ones
// — a busy server, a loaded machine — are slept for at once, and an idle client spins not at all.
// MAX_SPIN_US must exceed a round trip that sleeps (~200 µs on idle vCPUs), or the spin never
// starts; measured in one run: no spin 141 µs, 150 µs 97, 250 µs 69, 350 µs 66.

/** Longest spin, in µs: replies that usually take longer are slept for at once. */
const MAX_SPIN_US = 250
/** Weight of the newest reply in the running average (1/8). */
const WEIGHT = 0.125

export class SpinWaiter {
  /** Running average of the time to a reply, in µs. */
  #average = MAX_SPIN_US / 2
  /** Waits that spun, and those whose reply came during the spin (statistics). */
  spins = 0
  caught = 0

  /** How long a wait spins now, in µs. */
  get window(): number {
    return this.#average <= MAX_SPIN_US ? Math.min(MAX_SPIN_US, this.#average * 1.5) : 0
  }

  /**
   * Wait until `word[index]` is no longer `seq` or `timeoutMs` passed (as Atomics.wait, without
   * its return value). `quick`: false for waits known to be long or rare (a vote waiting for other
   * clients' locks, a pack): they sleep at once and do not count in the average.
   */
  wait(word: Int32Array, index: number, seq: number, timeoutMs: number, quick = true): void {
    if (!quick) {
      Atomics.wait(word, index, seq, timeoutMs)
      return
    }
    const start = performance.now()
    const window = this.window
    if (window > 0) {
      this.spins++
      const end = start + window / 1000
      do {
        if (Atomics.load(word, index) !== seq) {
          this.caught++
          this.#observe(start)
          return
        }
      } while (performance.now() < end)
    }
    Atomics.wait(word, index, seq, timeoutMs)
    this.#observe(start)
  }

  #observe(start: number): void {
    // A reply that took very long says no more than "slow": it must not swamp the average.
    const took = Math.min((performance.now() - start) * 1000, 4 * MAX_SPIN_US)
    this.#average += (took - this.#average) * WEIGHT
  }
}
