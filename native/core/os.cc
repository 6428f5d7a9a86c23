#include "core/os.h"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

namespace wendelin {

std::size_t osPageSize() {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

void* reserveAligned(std::size_t len, std::size_t align) {
  void* p = ::mmap(nullptr, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t aligned = (start + align - 1) & ~(static_cast<std::uintptr_t>(align) - 1);
  if (aligned > start) ::munmap(p, aligned - start);
  const std::uintptr_t end = start + len + align;
  if (end > aligned + len) ::munmap(reinterpret_cast<void*>(aligned + len), end - (aligned + len));
  return reinterpret_cast<void*>(aligned);
}

std::size_t mappingAlignment(std::size_t pageSize) {
  constexpr std::size_t kPmd = std::size_t{2} << 20;
  return pageSize % kPmd == 0 ? kPmd : osPageSize();
}

std::int64_t monotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void writeStderr(const char* message) {
  std::size_t left = std::strlen(message);
  while (left > 0) {
    ssize_t n = ::write(2, message, left);
    if (n <= 0) return;
    message += n;
    left -= static_cast<std::size_t>(n);
  }
}

void fatal(const char* message) {
  writeStderr("wendelin:virtmem: FATAL: ");
  writeStderr(message);
  writeStderr("\n");
  ::_exit(kFatalExitCode);
}

void futexWait(std::atomic<std::uint32_t>& word, std::uint32_t expected) {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
            nullptr, nullptr, 0);
}

void futexWakeAll(std::atomic<std::uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX,
            nullptr, nullptr, 0);
}

}  // namespace wendelin
