// Small OS facts and helpers the virtual memory manager is built on.
// The core under native/core/ never includes N-API headers: it is plain C++17 so it can be
// unit-tested and reasoned about without V8 (see native/binding/ for the JS face).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace wendelin {

// Size of one hardware page as the kernel reports it (mmap/mprotect granularity).
std::size_t osPageSize();

// Wrong use of the virtual memory manager by its caller (e.g. a second writeout of one file
// handle). The binding turns it into a JS Error; internal state is left consistent.
class VirtmemError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Ends the process after writing `message` to stderr. Used where carrying on could show wrong
// data in mapped memory (a block that cannot be loaded, the RAM hard cap). Callable from the
// SIGSEGV handler: it only formats into a stack buffer, write(2)s and _exit(2)s.
[[noreturn]] void fatal(const char* message);

// Writes a line to stderr without allocating (safe inside the SIGSEGV handler).
void writeStderr(const char* message);

// Futex wait/wake on a 32-bit atomic word (process-private).
void futexWait(std::atomic<std::uint32_t>& word, std::uint32_t expected);
void futexWakeAll(std::atomic<std::uint32_t>& word);

// Reserves `len` bytes of inaccessible address space aligned to `align` (a power of two,
// at least the OS page size). Returns nullptr on failure.
void* reserveAligned(std::size_t len, std::size_t align);

// The alignment that lets the kernel move a page's page tables whole (2 MiB PMD on x86-64 and
// arm64 with 4 KiB pages) when the page size is a multiple of it; else the OS page size.
std::size_t mappingAlignment(std::size_t pageSize);

// CLOCK_MONOTONIC in nanoseconds (vDSO: no system call, fine in a signal handler).
std::int64_t monotonicNanos();

// A pause for spin loops.
inline void cpuRelax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Exit status used by fatal(): EX_SOFTWARE from sysexits.h.
constexpr int kFatalExitCode = 70;

}  // namespace wendelin
