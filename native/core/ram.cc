#include "core/ram.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "core/os.h"

namespace wendelin {

namespace {

std::size_t toFrames(std::size_t bytes, std::size_t pageSize) {
  return (bytes + pageSize - 1) / pageSize;
}

// MREMAP_DONTUNMAP (Linux 5.13+ for shared mappings) moves the page tables and leaves the
// source mapped, without them: no address of ours is ever a hole. A hole is address space
// another thread's mmap may take in the moment before we map over it again (MAP_FIXED would
// then silently replace that thread's memory, and the thread would later unmap part of ours).
// Kernels that refuse it (EINVAL) get the plain move from then on, the hole refilled at once.
// Any other failure (ENOMEM: DONTUNMAP keeps the source, so it counts against RLIMIT_AS) falls
// back to the plain move for that call only: it needs no more address space than before.
std::atomic<bool> dontUnmapRefused{false};

// Moves the page tables of `len` bytes at `from` to `to`. `sourceKept`: `from` is still mapped.
bool moveTables(void* from, std::size_t len, void* to, bool* sourceKept) {
  if (!dontUnmapRefused.load(std::memory_order_relaxed)) {
    if (::mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, to) != MAP_FAILED) {
      *sourceKept = true;
      return true;
    }
    if (errno == EINVAL) dontUnmapRefused.store(true, std::memory_order_relaxed);
  }
  *sourceKept = false;
  return ::mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to) != MAP_FAILED;
}

}  // namespace

Ram::Ram(const RamConfig& config) : pageSize_(config.pageSize) {
  const std::size_t os = osPageSize();
  if (pageSize_ == 0 || pageSize_ % os != 0)
    throw VirtmemError("RAM page size " + std::to_string(pageSize_) +
                       " is not a positive multiple of the OS page size " + std::to_string(os));
  const std::size_t limit = config.limitBytes ? config.limitBytes : (std::size_t{1} << 30);
  limitFrames_ = toFrames(limit, pageSize_);
  if (limitFrames_ == 0) limitFrames_ = 1;
  hardCapFrames_ = config.hardCapBytes ? toFrames(config.hardCapBytes, pageSize_) : 0;
  if (hardCapFrames_ != 0 && hardCapFrames_ < limitFrames_)
    throw VirtmemError("RAM hard cap (" + std::to_string(config.hardCapBytes) +
                       " bytes) is below the limit (" + std::to_string(limit) + " bytes)");
  highWaterFrames_ =
      config.highWaterBytes ? toFrames(config.highWaterBytes, pageSize_) : limitFrames_;
  fd_ = ::memfd_create("wendelin-virtmem-ram", MFD_CLOEXEC);
  if (fd_ < 0)
    throw VirtmemError(std::string("memfd_create failed: ") + std::strerror(errno));
  // Address space only (PROT_NONE, no memory): room for the limit stretched 8 times, or the
  // hard cap, at most 1 TiB.
  std::size_t frames = std::max<std::size_t>({limitFrames_ * 8, hardCapFrames_, 16});
  frames = std::min<std::size_t>(frames, (std::size_t{1} << 40) / pageSize_);
  void* alias = reserveAligned(frames * pageSize_, mappingAlignment(pageSize_));
  void* readAlias = alias ? reserveAligned(frames * pageSize_, mappingAlignment(pageSize_)) : nullptr;
  if (alias && readAlias) {
    alias_ = static_cast<char*>(alias);
    readAlias_ = static_cast<char*>(readAlias);
    aliasFrames_ = frames;
    readWarm_.assign(frames, false);
  } else if (alias) {
    ::munmap(alias, frames * pageSize_);
  }
}

Ram::~Ram() {
  if (alias_) ::munmap(alias_, aliasFrames_ * pageSize_);
  if (readAlias_) ::munmap(readAlias_, aliasFrames_ * pageSize_);
  if (fd_ >= 0) ::close(fd_);
}

void* Ram::aliasOf(std::int64_t frame) const {
  if (!alias_ || frame < 0 || static_cast<std::size_t>(frame) >= aliasFrames_) return nullptr;
  return alias_ + static_cast<std::size_t>(frame) * pageSize_;
}

char* Ram::readSlot(std::int64_t frame) const {
  if (!readAlias_ || frame < 0 || static_cast<std::size_t>(frame) >= aliasFrames_) return nullptr;
  return readAlias_ + static_cast<std::size_t>(frame) * pageSize_;
}

bool Ram::readSlotWarm(std::int64_t frame) const {
  return readSlot(frame) && readWarm_[static_cast<std::size_t>(frame)];
}

bool Ram::moveAliasTo(std::int64_t frame, void* at) {
  if (!readSlotWarm(frame)) return false;
  char* slot = readSlot(frame);
  bool slotKept;
  if (!moveTables(slot, pageSize_, at, &slotKept))
    return false;  // the caller maps the frame the ordinary way (MAP_FIXED over `at`)
  readWarm_[static_cast<std::size_t>(frame)] = false;
  // A hole left (an old kernel): map the frame there again (no population) for the way back.
  if (!slotKept && !mapFrame(frame, slot, PROT_READ, /*populate=*/false))
    fatal("cannot map a RAM frame into the read alias again (mmap failed; with small pages "
          "and a large RAM the kernel's vm.max_map_count may be too low)");
  return true;
}

bool Ram::moveBackToAlias(std::int64_t frame, void* from) {
  char* slot = readSlot(frame);
  if (!slot) {
    lastMoveFailure_ = "finding the frame's read slot";
    errno = ERANGE;
    return false;
  }
  // Write-protect first: the entries must arrive read-only (mremap moves the protection along).
  // For a clean page they are already: the kernel then returns without touching them.
  if (::mprotect(from, pageSize_, PROT_READ) != 0) {
    lastMoveFailure_ = "mprotect";
    return false;
  }
  bool fromKept;
  if (!moveTables(from, pageSize_, slot, &fromKept)) {
    lastMoveFailure_ = "mremap";
    return false;
  }
  readWarm_[static_cast<std::size_t>(frame)] = true;
  return true;
}

std::int64_t Ram::allocFrame() {
  std::int64_t frame;
  if (!warm_.empty()) {
    frame = warm_.back();
    warm_.pop_back();
  } else if (!cold_.empty()) {
    frame = cold_.back();
    cold_.pop_back();
  } else {
    frame = nextFrame_;
    const off_t size = static_cast<off_t>((frame + 1) * static_cast<std::int64_t>(pageSize_));
    if (::ftruncate(fd_, size) != 0) return -1;
    if (void* at = aliasOf(frame)) {
      if (!mapFrame(frame, at, PROT_READ | PROT_WRITE, /*populate=*/false)) return -1;
      if (!mapFrame(frame, readSlot(frame), PROT_READ, /*populate=*/false)) return -1;
    }
    nextFrame_++;
  }
  inUse_++;
  if (inUse_ > peak_) peak_ = inUse_;
  return frame;
}

void Ram::freeFrame(std::int64_t frame) {
  inUse_--;
  if (inUse_ + warm_.size() >= highWaterFrames_) {
    // Too much memory backed already: give this frame's memory back to the OS.
    ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                static_cast<off_t>(frame * static_cast<std::int64_t>(pageSize_)),
                static_cast<off_t>(pageSize_));
    punched_++;
    if (readSlot(frame)) readWarm_[static_cast<std::size_t>(frame)] = false;  // entries zapped
    cold_.push_back(frame);
  } else {
    warm_.push_back(frame);
  }
}

void* Ram::mapFrame(std::int64_t frame, void* at, int prot, bool populate) const {
  int flags = MAP_SHARED | (at ? MAP_FIXED : 0) | (populate ? MAP_POPULATE : 0);
  void* p = ::mmap(at, pageSize_, prot, flags, fd_,
                   static_cast<off_t>(frame * static_cast<std::int64_t>(pageSize_)));
  return p == MAP_FAILED ? nullptr : p;
}

}  // namespace wendelin
