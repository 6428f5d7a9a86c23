// Reader threads for stress tests: plain pthreads (no V8, no libuv) that read mapped memory
// as fast as they can while the test's main thread moves its pages around (invalidation,
// eviction, dirtying, mappings made and dropped). Each read is checked against the byte the
// page must hold. A fault these threads take is served like any other; one the handler gets
// wrong kills the process — which is what the test is there to catch.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace wendelin {

class StressReaders {
 public:
  // `base`: `npages` pages of `pageSize` bytes; page p must read as expected[p] throughout.
  StressReaders(const unsigned char* base, std::size_t pageSize, std::vector<unsigned char> expected,
                unsigned threads)
      : base_(base), pageSize_(pageSize), expected_(std::move(expected)) {
    for (unsigned t = 0; t < threads; t++) threads_.emplace_back([this, t] { run(t); });
  }
  ~StressReaders() { stop(); }

  void stop() {
    stop_.store(true);
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

  std::uint64_t reads() const { return reads_.load(); }
  std::uint64_t mismatches() const { return mismatches_.load(); }
  std::string firstMismatch() const {
    std::lock_guard<std::mutex> g(mutex_);
    return first_;
  }

 private:
  void run(unsigned t) {
    std::uint32_t x = 2463534242u + t * 7919u;
    auto next = [&x] {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      return x;
    };
    const std::size_t npages = expected_.size();
    std::vector<unsigned char> chunk(4096);
    std::uint64_t reads = 0;
    while (!stop_.load(std::memory_order_relaxed)) {
      const std::size_t pg = next() % npages;
      const std::size_t off = next() % pageSize_;
      unsigned char got;
      if (reads % 4 == 0) {
        // as memcpy in a threadpool job (zlib, fs.write) reads it: a run of bytes
        const std::size_t len = std::min<std::size_t>(chunk.size(), pageSize_ - off);
        std::memcpy(chunk.data(), base_ + pg * pageSize_ + off, len);
        got = chunk[len - 1];
      } else {
        got = *reinterpret_cast<const volatile unsigned char*>(base_ + pg * pageSize_ + off);
      }
      reads++;
      if (got != expected_[pg] && mismatches_.fetch_add(1) == 0) {
        char msg[160];
        std::snprintf(msg, sizeof msg, "page %zu offset %zu read %u, expected %u", pg, off,
                      static_cast<unsigned>(got), static_cast<unsigned>(expected_[pg]));
        std::lock_guard<std::mutex> g(mutex_);
        first_ = msg;
      }
    }
    reads_.fetch_add(reads);
  }

  const unsigned char* base_;
  std::size_t pageSize_;
  std::vector<unsigned char> expected_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> reads_{0};
  std::atomic<std::uint64_t> mismatches_{0};
  mutable std::mutex mutex_;
  std::string first_;
};

}  // namespace wendelin
