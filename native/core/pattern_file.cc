#include "core/pattern_file.h"

#include <cstdio>
#include <cstring>

#include "core/os.h"

namespace wendelin {

void PatternFile::setGateOpen(bool open) {
  gateOpen_.store(open ? 1 : 0);
  if (open) futexWakeAll(gateOpen_);
}

bool PatternFile::loadblk(std::uint64_t blk, void* dest, std::size_t len, char* err,
                          std::size_t errLen, const WhileLoading&) {
  // The seed is read before the gate: a test changes it while a load is held back, so a load
  // that started before an invalidation shows the old data unless virtmem redoes it.
  const std::uint32_t seed = seed_.load();
  waiting_.fetch_add(1);
  while (gateOpen_.load() == 0) futexWait(gateOpen_, 0);
  waiting_.fetch_sub(1);
  if (failing_.load()) {
    std::snprintf(err, errLen, "pattern file told to fail");
    return false;
  }
  if (!noop_) std::memset(dest, static_cast<int>((seed + blk) & 0xff), len);
  loads_.fetch_add(1);
  return true;
}

}  // namespace wendelin
