// RAM: the physical memory virtmem hands out, as frames of one memfd file.
//
// A frame is one page (page size = block size, 2 MiB by default) at offset frame*pageSize of
// the memfd. Frames are file-backed so one frame can be mapped at several addresses at once
// (two mappings of one file region, or the loader's temporary view while a VMA maps it).
//
// Frames are recycled: freeing a frame puts it on the warm list and the next allocation takes
// it again, because first touch of fresh memory is slow (the kernel zeroes it) while a recycled
// frame is already resident. Above the high-water mark freed frames are handed back to the OS
// (fallocate PUNCH_HOLE) and parked on the cold list.
//
// Two aliases, each one mapping of the whole memfd kept for the process's life:
//
//  - the write alias (read-write): loads write into a frame through it, so a load into a
//    recycled frame costs no mmap, no page-table population, no page fault and no munmap
//    (with its TLB shootdown) — only the copy. It is never moved: its page tables stay warm.
//  - the read alias (read-only): keeps a frame's read-only page tables warm for the VMAs.
//    Mapping a page into a VMA moves the read slot's page tables there (mremap — whole 2 MiB
//    page tables when aligned) instead of populating 512 entries afresh, and unmapping moves
//    them back (see Virtmem::mapPageInto). Both ends are read-only, so a clean page goes in
//    and out of a VMA without a single PTE rewritten (no mprotect); only a dirty page's
//    read-write entries are write-protected before they go back.
//
// A read slot is "warm" once it holds page tables a VMA gave back; a cold one (a new or
// punched frame) is not moved: the VMA maps the frame populated and its page tables go back
// to the slot when it is unmapped. Frames beyond the reservation (a stretched limit) fall back
// to temporary and ordinary mappings.
//
// Ram knows nothing of pages, files or the limit policy: the virtmem layer (virtmem.h) decides
// when to reclaim; Ram only counts, and holds the lists and state virtmem keeps per RAM (lru,
// leftBehind). All methods are called with the virtmem lock held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <utility>
#include <vector>

namespace wendelin {

struct Page;

struct RamConfig {
  std::size_t pageSize = 2u << 20;   // bytes per frame, a multiple of the OS page size
  std::size_t limitBytes = 0;        // reclaim non-dirty pages above this (0 = 1 GiB)
  std::size_t hardCapBytes = 0;      // end the process above this (0 = no cap)
  std::size_t highWaterBytes = 0;    // keep at most this much backed memory (0 = limit)
};

class Ram {
 public:
  explicit Ram(const RamConfig& config);
  ~Ram();
  Ram(const Ram&) = delete;
  Ram& operator=(const Ram&) = delete;

  std::size_t pageSize() const { return pageSize_; }
  std::size_t limitFrames() const { return limitFrames_; }
  std::size_t hardCapFrames() const { return hardCapFrames_; }
  std::size_t limitBytes() const { return limitFrames_ * pageSize_; }
  std::size_t hardCapBytes() const { return hardCapFrames_ * pageSize_; }
  int fd() const { return fd_; }

  // Takes a frame: warm (recycled) first, then cold (punched), then a new one at the end.
  std::int64_t allocFrame();
  // Returns a frame; recycled, or punched when more than the high-water mark is backed.
  void freeFrame(std::int64_t frame);

  // Maps a frame at `at` (MAP_FIXED) or anywhere (at == nullptr). Returns nullptr on failure.
  void* mapFrame(std::int64_t frame, void* at, int prot, bool populate) const;
  // The frame's address in the write alias, or nullptr when it lies beyond the aliases.
  void* aliasOf(std::int64_t frame) const;
  // True when the frame's read slot holds page tables worth moving (see above).
  bool readSlotWarm(std::int64_t frame) const;
  // The read slot's page tables → `at`, read-only (the slot stays mapped, unpopulated).
  // False when the frame has no warm read slot: nothing changed then.
  bool moveAliasTo(std::int64_t frame, void* at);
  // Page tables at `from` (which map the frame) → the frame's read slot, write-protected
  // first (a no-op without a PTE walk when they are read-only already); the slot is warm from
  // then on. `from` is left mapped read-only without page tables (an access populates it from
  // the frame) — or, on kernels before 5.13, unmapped: the caller maps over it at once, with
  // the virtmem lock still held. False when the frame lies beyond the aliases.
  bool moveBackToAlias(std::int64_t frame, void* from);
  // Which call of the last failed moveBackToAlias failed (for its fatal message).
  const char* lastMoveFailure() const { return lastMoveFailure_; }

  std::size_t framesInUse() const { return inUse_; }
  std::size_t framesWarm() const { return warm_.size(); }
  std::size_t framesPeak() const { return peak_; }
  std::uint64_t framesPunched() const { return punched_; }

  // Least recently used first. Holds LOADED and DIRTY pages (never LOADING ones).
  std::list<Page*> lru;
  // Virtmem's recycling of pages left behind (Virtmem::recycleLeftBehind): those LOADED pages,
  // oldest first; whether it is still on for this RAM; and the pages it recycled, as runs of
  // pages per file handle ({fileh id, first page} -> last page; at most kRecycledRuns, the
  // oldest forgotten first), to notice one being asked for again. A sequential pass recycles
  // one run however long it is.
  std::list<Page*> leftBehind;
  bool leftBehindRecycling = true;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint64_t> recycledRuns;
  std::deque<std::pair<std::uint64_t, std::uint64_t>> recycledRunOrder;
  static constexpr std::size_t kRecycledRuns = 4096;
  // Whether a frame freed now would stay backed (warm) rather than be punched (high water).
  bool freedFrameStaysWarm() const { return inUse_ - 1 + warm_.size() < highWaterFrames_; }
  // File handles open on this RAM (it cannot be destroyed while any is).
  std::size_t openFilehs = 0;

 private:
  std::size_t pageSize_;
  std::size_t limitFrames_;
  std::size_t hardCapFrames_;
  std::size_t highWaterFrames_;
  int fd_ = -1;
  char* alias_ = nullptr;            // write alias: read-write view of frames [0, aliasFrames_)
  char* readAlias_ = nullptr;        // read alias: read-only view of the same frames
  std::size_t aliasFrames_ = 0;
  std::vector<bool> readWarm_;       // readWarm_[frame]: its read slot holds page tables
  char* readSlot(std::int64_t frame) const;
  std::int64_t nextFrame_ = 0;       // frames [0, nextFrame_) exist in the memfd
  std::vector<std::int64_t> warm_;   // freed frames still backed by memory
  std::vector<std::int64_t> cold_;   // freed frames whose memory was punched out
  std::size_t inUse_ = 0;
  std::size_t peak_ = 0;
  std::uint64_t punched_ = 0;
  const char* lastMoveFailure_ = "nothing";
};

}  // namespace wendelin
