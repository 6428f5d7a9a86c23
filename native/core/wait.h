// Waiting for another thread: spin briefly, then sleep on a futex.
//
// On these VMs a futex wake-up of a sleeping thread costs tens of µs (a halted vCPU is woken
// through the hypervisor), as much as a typical load through a loader worker, so a waiter spins
// first. The spin is bounded in time, not in rounds: on a busy machine a long spin would keep
// the thread it waits for off the CPU.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "core/os.h"

namespace wendelin {

// Spins while `word` holds `value`, for at most `nanos`. True when it changed meanwhile.
inline bool spinWhile(const std::atomic<std::uint32_t>& word, std::uint32_t value,
                      std::int64_t nanos) {
  if (nanos <= 0) return word.load(std::memory_order_acquire) != value;
  const std::int64_t until = monotonicNanos() + nanos;
  for (int i = 1; word.load(std::memory_order_acquire) == value; i++) {
    cpuRelax();
    if (i % 64 == 0 && monotonicNanos() > until) return word.load(std::memory_order_acquire) != value;
  }
  return true;
}

// A spin budget that follows what spinning achieves. Every spin that sees the change doubles
// the next budget (up to `maxNanos`), every one that runs out halves it, down to none: where
// the awaited event takes longer than the budget, spinning only steals the CPU from the thread
// that would bring it on a 2-core machine. With no budget left, one wait in 32 still tries a
// spin of `minNanos`, to notice when spinning pays again.
class AdaptiveSpin {
 public:
  AdaptiveSpin(std::int64_t minNanos, std::int64_t maxNanos)
      : min_(minNanos), max_(maxNanos), budget_(maxNanos) {}
  // spinWhile (above) within the current budget, then adapts it. True when `word` changed.
  bool spinWhile(const std::atomic<std::uint32_t>& word, std::uint32_t value) {
    std::int64_t budget = budget_.load(std::memory_order_relaxed);
    if (budget == 0 && idle_.fetch_add(1, std::memory_order_relaxed) % 32 == 31) budget = min_;
    if (budget == 0) return word.load(std::memory_order_acquire) != value;
    if (wendelin::spinWhile(word, value, budget)) {
      budget_.store(std::min(max_, std::max(2 * budget, min_)), std::memory_order_relaxed);
      return true;
    }
    budget_.store(budget >= 2 * min_ ? budget / 2 : 0, std::memory_order_relaxed);
    return false;
  }

 private:
  const std::int64_t min_, max_;
  std::atomic<std::int64_t> budget_;
  std::atomic<std::uint32_t> idle_{0};  // waits without a budget
};

// A one-shot event between two threads: one signals once, the other waits for it. The signal
// costs a futex system call only when the waiter has gone to sleep (it usually still spins).
class OneShot {
 public:
  bool isSet() const { return state_.load(std::memory_order_acquire) == kSet; }
  // Spins for up to `spinNanos`, then sleeps until set.
  void wait(std::int64_t spinNanos) {
    if (spinWhile(state_, kUnset, spinNanos)) return;
    std::uint32_t expected = kUnset;
    if (!state_.compare_exchange_strong(expected, kSleeping)) return;  // set meanwhile
    while (state_.load(std::memory_order_acquire) != kSet) futexWait(state_, kSleeping);
  }
  // After this, the waiter may go on (and free the object holding the event) at once.
  void set() {
    if (state_.exchange(kSet, std::memory_order_acq_rel) == kSleeping) futexWakeAll(state_);
  }

 private:
  static constexpr std::uint32_t kUnset = 0, kSleeping = 1, kSet = 2;
  std::atomic<std::uint32_t> state_{kUnset};
};

}  // namespace wendelin
