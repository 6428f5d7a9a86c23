// Virtmem: the userspace virtual memory manager (after wendelin.core bigfile/virtmem.c).
//
//   FileH  — a handle of one BigFile: pagemap (pgoffset → Page), list of dirty pages, the
//            VMAs mapping it, writeout-in-progress flag.
//   Vma    — a range of address space mapping pages [pgoffset, pgoffset+npages) of a FileH;
//            a bitmap says which of its pages are mapped now. Unmapped parts are PROT_NONE,
//            so the first access faults (SIGSEGV → onFault).
//   Ram    — frames the pages live in (ram.h); its LRU list drives reclaim.
//
// One lock (the "virtmem lock") guards all of it. loadblk and storeblk run with it released
// (seed commits f49c11a3, fb4bfb32), so after a load everything is looked up again from the
// faulting address. Rules this imposes, enforced here:
//   - a page invalidated while loading (LOADING_INVALIDATED) is dropped by its loader and the
//     fault is retried, which loads it afresh;
//   - a page that is LOADING is waited for, never loaded twice;
//   - one writeout per FileH at a time; during it discard, invalidate and page modification
//     of that FileH are refused (modification ends the process: it happens in a fault).
//
// Readahead (not in wendelin.core, whose loads run on the faulting thread): when faults go
// page after page, the next pages are handed to the loader workers without waiting, so a
// worker fills page N+1 while page N is used. It never stretches the RAM limit nor evicts the
// page being faulted in; close waits for loads still under way.
//
// "mmap overlay" mode (wendelin.core's MMAP_OVERLAY, seed 000): a FileH with a base file
// descriptor maps the file itself read-only under its VMAs (whole blocks within the file's
// size when the VMA is made), so reads need no fault, no load and no RAM of ours, and share
// the kernel's page cache. A write faults: the block is copied into a RAM frame mapped
// read-write over the base. Once stored (MARKSTORED) or discarded, the base is mapped back
// and the frame freed. Blocks beyond the base (past the end of the file) behave as usual.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/bigfile_ops.h"
#include "core/page.h"
#include "core/pagemap.h"
#include "core/ram.h"
#include "core/wait.h"

namespace wendelin {

struct Vma;

constexpr std::uint64_t kNoPage = UINT64_MAX;

struct FileH {
  std::uint64_t id = 0;
  Ram* ram = nullptr;
  std::shared_ptr<BigFileOps> ops;
  std::string description;          // names the file in fatal messages
  PageMap pagemap;
  std::list<Page*> dirty;           // dirty pages, in the order they were dirtied
  std::list<Vma*> vmas;
  bool writeoutInProgress = false;
  bool closed = false;
  int baseFd = -1;                  // overlay mode: the file mapped read-only under the VMAs
  std::uint64_t lastFaultPg = kNoPage;  // page the last fault mapped (readahead)
  std::size_t loading = 0;          // pages LOADING or LOADING_INVALIDATED (frames held by loads)
};

struct Vma {
  std::uintptr_t start = 0;
  std::uintptr_t end = 0;
  std::uint64_t pgoffset = 0;       // first file page mapped at start
  FileH* fileh = nullptr;
  std::vector<bool> mapped;         // mapped[i]: page pgoffset+i is mapped at start+i*pageSize
  std::size_t basePages = 0;        // overlay: pages [0, basePages) show the base when unmapped

  std::size_t npages() const { return mapped.size(); }
  bool covers(std::uint64_t pg) const { return pg >= pgoffset && pg < pgoffset + npages(); }
};

enum WriteoutFlags : int { kWriteoutStore = 1, kWriteoutMarkStored = 2 };

struct VirtmemStats {
  std::uint64_t faults = 0;          // SIGSEGVs served inside our VMAs
  std::uint64_t writeFaults = 0;     // of which: first write to a loaded page (page dirtied)
  std::uint64_t loads = 0;           // loadblk calls completed
  std::uint64_t loadWaits = 0;       // faults that waited for another thread's load
  std::uint64_t loadsInvalidated = 0;  // loads thrown away because invalidated meanwhile
  std::uint64_t reclaimed = 0;       // pages evicted to make room
  std::uint64_t stretches = 0;       // allocations above the limit with only dirty pages left
  std::uint64_t readaheads = 0;      // loads started ahead of sequential faults
  std::uint64_t holeRetries = 0;     // accesses that hit a page mid-move and were retried
  std::uint64_t recycledLeftBehind = 0;  // frames of left-behind pages taken before new memory
};

struct RamStats {
  std::size_t pageSize = 0;
  std::size_t limitBytes = 0;
  std::size_t hardCapBytes = 0;
  std::size_t bytesInUse = 0;        // frames holding pages
  std::size_t bytesWarm = 0;         // freed frames kept resident for reuse
  std::size_t bytesPeak = 0;
  std::uint64_t framesPunched = 0;
  std::size_t pagesLoaded = 0;
  std::size_t pagesDirty = 0;
};

class Virtmem {
 public:
  // The process-wide instance (the SIGSEGV handler is process-wide too). Never destroyed:
  // faults may still be served while the process exits.
  static Virtmem& instance();

  // While one lives on a thread, loads faulted in from that thread do not unmap the next
  // eviction's victim early (unmapNextVictim): a prefault promises its whole range mapped when
  // it fits in the RAM, and the victim may be a page it has just touched.
  class KeepMappedScope {
   public:
    KeepMappedScope();
    ~KeepMappedScope();
    KeepMappedScope(const KeepMappedScope&) = delete;
    KeepMappedScope& operator=(const KeepMappedScope&) = delete;

   private:
    bool saved_;
  };

  // While one lives on a thread, that thread fills the LOADING page of `load` itself (loadHere):
  // a fault of that thread on the page, or a close of its handle, would wait for the thread
  // itself — the fault ends the process with a message, the close is refused.
  class LoadingHereScope {
   public:
    explicit LoadingHereScope(const PendingLoad& load);
    ~LoadingHereScope();
    LoadingHereScope(const LoadingHereScope&) = delete;
    LoadingHereScope& operator=(const LoadingHereScope&) = delete;

   private:
    Page* saved_;
  };

  // baseFd >= 0 opens the handle in overlay mode over that file (the caller keeps it open
  // until the handle is closed).
  FileH* filehOpen(Ram* ram, std::shared_ptr<BigFileOps> ops, std::string description,
                   int baseFd = -1);
  // Drops every page. Refused while mappings or a writeout live; waits for loads under way.
  void filehClose(FileH* fileh);

  Vma* mmap(FileH* fileh, std::uint64_t pgoffset, std::size_t pglen);
  void unmap(Vma* vma);

  // STORE: storeblk(blk, src) for every dirty page in ascending order, lock released.
  // MARKSTORED: dirty pages become LOADED and are mapped read-only again.
  // If store throws, the writeout stops, pages stay dirty and the exception propagates.
  using StoreFn = std::function<void(std::uint64_t blk, const void* src, std::size_t len)>;
  void dirtyWriteout(FileH* fileh, int flags, const StoreFn& store);
  void dirtyDiscard(FileH* fileh);
  void invalidatePage(FileH* fileh, std::uint64_t pgoffset);
  // The caller is done with pages [pgoffset, pgoffset + pglen): those loaded and mapped nowhere
  // are left behind (their frames taken before new memory; see recycleLeftBehind).
  void leaveBehind(FileH* fileh, std::uint64_t pgoffset, std::uint64_t pglen);
  bool pageIsDirty(FileH* fileh, std::uint64_t pgoffset);
  PageState pageState(FileH* fileh, std::uint64_t pgoffset);
  // Maps the frame of dirty page `pgoffset` read-only at `at` (MAP_FIXED over the caller's
  // reservation); false if the page is not dirty. While it stays dirty its frame is its own
  // (dirty pages are never evicted); once stored or discarded the frame may hold another page.
  bool mapDirtyFrame(FileH* fileh, std::uint64_t pgoffset, void* at);
  std::vector<std::uint64_t> dirtyPages(FileH* fileh);   // ascending
  // Every page in the pagemap (loading, loaded, dirty) with its state, ascending.
  std::vector<std::pair<std::uint64_t, PageState>> presentPages(FileH* fileh);
  std::vector<bool> vmaMapped(Vma* vma);
  std::size_t vmaBasePages(Vma* vma);

  // Evicts up to `batch` non-dirty pages, least recently used first. Returns how many.
  std::size_t reclaim(Ram* ram, std::size_t batch);
  // (fileh id, pgoffset) in LRU order, least recently used first.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> lru(Ram* ram);

  // Frees a RAM (its memfd and alias). Refused while file handles are open on it or frames
  // are still in use (a page invalidated while loading gives its frame back later).
  void ramDestroy(Ram* ram);

  VirtmemStats stats();
  RamStats ramStats(Ram* ram);

  // The SIGSEGV handler's entry: serves an access to `addr`. Returns false when the address is
  // not in one of our VMAs (the handler then chains to the previous handler).
  bool onFault(std::uintptr_t addr, bool write);
  // A fault on an address with no mapping (SEGV_MAPERR) inside one of our VMAs: the page is
  // being moved by a thread that holds the lock (unmapPageFrom moves its page tables back to the
  // RAM alias and then maps PROT_NONE there; on kernels without MREMAP_DONTUNMAP for shared
  // mappings, before 5.13, the address is a hole between the two: see Ram). Waits for
  // the lock, so that the hole is filled, and says whether the access should simply be retried.
  // (False — the fault is passed on — when the address is still unmapped with the lock held:
  // then no move is under way and a retry would fault forever.)
  bool waitOutHole(std::uintptr_t addr);
  // True when this thread holds the virtmem lock: a fault now is a bug, not a page access.
  static bool lockedByThisThread();

  // Loading from the JS side (fileh.load): begin takes the page into LOADING and returns a
  // writable view of its frame; the caller fills it (with the lock released) and finishes.
  using PendingLoad = wendelin::PendingLoad;
  enum class BeginLoad { Present, Busy, Started };
  BeginLoad beginLoad(FileH* fileh, std::uint64_t pgoffset, PendingLoad* out);
  // Returns false when the page was invalidated meanwhile (its data is dropped, load again).
  bool finishLoad(PendingLoad& load, bool ok);

 private:
  Virtmem() = default;
  class Guard;

  Vma* findVma(std::uintptr_t addr);
  Page* allocPage(FileH* fileh, std::uint64_t pgoffset);
  bool recycleLeftBehind(Ram* ram);
  void markLeftBehind(Page* page);
  void passBehind(Vma* vma, std::uint64_t pg);
  static void clearLeftBehind(Page* page);
  void mapPageInto(Vma* vma, Page* page, int prot);
  void mapBaseInto(Vma* vma, std::size_t first, std::size_t count);
  void unmapPageFrom(Vma* vma, Page* page);
  void unmapPageEverywhere(Page* page);
  void protectPageEverywhere(Page* page, int prot);
  void dropPage(Page* page);
  void touchLru(Page* page);
  void checkOpen(FileH* fileh);
  bool canAllocWithoutStretch(Ram* ram, Page* keep);
  void readahead(Vma* vma, std::uint64_t pg);
  void loadDone();
  void waitForLoad(std::uint32_t seq);
  void unmapNextVictim(Ram* ram);

  std::mutex lock_;
  std::map<std::uintptr_t, Vma*> vmas_;      // by start address
  std::uint64_t nextFilehId_ = 1;
  VirtmemStats stats_;
  // Bumped and futex-woken whenever a load completes; threads waiting for a LOADING page
  // sleep on it.
  std::atomic<std::uint32_t> loadSeq_{0};
  AdaptiveSpin loadSpin_{4'000, 50'000};  // waitForLoad's spin before sleeping
};

}  // namespace wendelin
