// How the process's malloc (glibc) treats memory in blocks the size of our pages.
// Each commit of N dirty pages allocates N records of a page each (plus SQLite's bound copy of
// each), and every loaded block passes through a buffer of its size. glibc's defaults serve such
// blocks with mmap/munmap or give the heap's freed top back to the kernel at once: the next
// commit then faults every byte in again as new memory (4 KiB at a time, zeroed by the kernel,
// and on a VM that hands freed guest memory back to its host, faulted in by the host too).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace wendelin {

namespace malloc_tuning_detail {

// glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit).
inline constexpr std::size_t kMmapThreshold = std::size_t{32} << 20;

inline bool userChoseMalloc() {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr || std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr) return true;
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return true;
  const char* ours = std::getenv("WENDELIN_MALLOC_TUNING");
  return ours != nullptr && std::strcmp(ours, "0") == 0;
}

}  // namespace malloc_tuning_detail

// Keeps blocks of up to 32 MiB in malloc's heap and lets up to `retainBytes` (at least what
// was asked before) of freed heap stay in the process for reuse. A no-op when the user set
// glibc's own knobs (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, GLIBC_TUNABLES with a
// malloc tunable), when WENDELIN_MALLOC_TUNING=0, and off glibc. Thread-safe; returns whether
// the process's malloc settings are now ours.
inline bool keepBlockMemory(std::size_t retainBytes) {
  using namespace malloc_tuning_detail;
#if defined(__GLIBC__)
  static std::mutex mu;
  static bool refused = userChoseMalloc();
  static bool thresholdSet = false;
  static std::size_t retained = 0;
  std::lock_guard<std::mutex> lock(mu);
  if (refused) return false;
  if (!thresholdSet) {
    // Also stops glibc's dynamic threshold, which follows the largest block freed so far: a
    // record a few bytes larger than the last one freed would be mmapped afresh.
    if (mallopt(M_MMAP_THRESHOLD, static_cast<int>(kMmapThreshold)) == 0) {
      refused = true;
      return false;
    }
    thresholdSet = true;
  }
  if (retainBytes > retained) {
    const std::size_t capped = retainBytes > (std::size_t{1} << 30) ? std::size_t{1} << 30 : retainBytes;
    if (capped > retained && mallopt(M_TRIM_THRESHOLD, static_cast<int>(capped)) != 0) retained = capped;
  }
  return true;
#else
  (void)retainBytes;
  return false;
#endif
}

}  // namespace wendelin
