// PatternFile: a BigFile whose blocks are computed natively — for tests and benchmarks.
//
// Block `blk` reads as bytes of value (seed + blk) & 0xff (or is left untouched in no-op
// mode, to measure the cost of a fault alone). A gate can hold loads back so tests can race
// invalidation against a load, or two faults against one load, deterministically. Loads can
// be made to fail to exercise the fatal path.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/bigfile_ops.h"

namespace wendelin {

class PatternFile : public BigFileOps {
 public:
  explicit PatternFile(bool noop) : noop_(noop) {}

  bool loadblk(std::uint64_t blk, void* dest, std::size_t len, char* err,
               std::size_t errLen, const WhileLoading&) override;

  void setSeed(std::uint32_t seed) { seed_.store(seed); }
  void setGateOpen(bool open);
  void setFailing(bool failing) { failing_.store(failing); }
  std::uint64_t loads() const { return loads_.load(); }
  std::uint32_t loadsWaitingAtGate() const { return waiting_.load(); }

 private:
  const bool noop_;
  std::atomic<std::uint32_t> seed_{100};
  std::atomic<std::uint32_t> gateOpen_{1};
  std::atomic<std::uint32_t> waiting_{0};
  std::atomic<bool> failing_{false};
  std::atomic<std::uint64_t> loads_{0};
};

}  // namespace wendelin
