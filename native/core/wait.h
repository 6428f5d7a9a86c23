// Waiting for another thread: spin briefly, then sleep on a futex.
//
// On these VMs a futex wake-up of a sleeping thread costs tens of µs (a halted vCPU is woken
// through the hypervisor), as much as a typical load through a loader worker, so a waiter spins
// first. The spin is bounded in time, not in rounds: on a busy machine a long spin would keep
// the thread it waits for off the CPU.
#pragma once

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
