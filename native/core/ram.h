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
// Loads write into a frame through the alias: one read-write mapping of the whole memfd kept
// for the process's life, so a load into a recycled frame costs no mmap, no page-table
// population and no munmap (with its TLB shootdown) — only the copy. Frames beyond the alias
// reservation (a stretched limit) fall back to a temporary mapping.
//
// The alias also keeps a frame's page tables warm: mapping a page into a VMA moves the alias
// slot's populated page tables there (mremap — whole 2 MiB page tables when aligned) instead
// of populating 512 entries afresh, and eviction moves them back (see Virtmem::mapPageInto).
//
// Ram knows nothing of pages, files or the limit policy: the virtmem layer (virtmem.h) decides
// when to reclaim; Ram only counts. All methods are called with the virtmem lock held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
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
  // The frame's read-write address in the alias, or nullptr when it lies beyond the alias.
  void* aliasOf(std::int64_t frame) const;
  // Page tables of the frame's alias slot → `at` (the slot is mapped afresh, unpopulated).
  bool moveAliasTo(std::int64_t frame, void* at) const;
  // Page tables at `from` (which map the frame) → the frame's alias slot, read-write again.
  bool moveBackToAlias(std::int64_t frame, void* from) const;

  std::size_t framesInUse() const { return inUse_; }
  std::size_t framesWarm() const { return warm_.size(); }
  std::size_t framesPeak() const { return peak_; }
  std::uint64_t framesPunched() const { return punched_; }

  // Least recently used first. Holds LOADED and DIRTY pages (never LOADING ones).
  std::list<Page*> lru;
  // File handles open on this RAM (it cannot be destroyed while any is).
  std::size_t openFilehs = 0;

 private:
  std::size_t pageSize_;
  std::size_t limitFrames_;
  std::size_t hardCapFrames_;
  std::size_t highWaterFrames_;
  int fd_ = -1;
  char* alias_ = nullptr;            // read-write view of frames [0, aliasFrames_)
  std::size_t aliasFrames_ = 0;
  std::int64_t nextFrame_ = 0;       // frames [0, nextFrame_) exist in the memfd
  std::vector<std::int64_t> warm_;   // freed frames still backed by memory
  std::vector<std::int64_t> cold_;   // freed frames whose memory was punched out
  std::size_t inUse_ = 0;
  std::size_t peak_ = 0;
  std::uint64_t punched_ = 0;
};

}  // namespace wendelin
