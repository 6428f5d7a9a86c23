#include "core/virtmem.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/os.h"
#include "core/wait.h"

namespace wendelin {

const char* pageStateName(PageState state) {
  switch (state) {
    case PageState::Empty: return "empty";
    case PageState::Loading: return "loading";
    case PageState::LoadingInvalidated: return "loading-invalidated";
    case PageState::Loaded: return "loaded";
    case PageState::Dirty: return "dirty";
  }
  return "?";
}

namespace {

// initial-exec: read by the SIGSEGV handler, which must not reach __tls_get_addr (it may
// allocate on a thread's first access to a dlopen'ed module's TLS).
__attribute__((tls_model("initial-exec"))) thread_local bool tlsHoldsLock = false;
// Set by Virtmem::KeepMappedScope (read in a fault, hence initial-exec as well).
__attribute__((tls_model("initial-exec"))) thread_local bool tlsKeepMapped = false;
// Set by Virtmem::LoadingHereScope: the page this thread is loading itself (read in a fault).
__attribute__((tls_model("initial-exec"))) thread_local Page* tlsLoadingHere = nullptr;

// Ram::moveBackToAlias failed: says which call, its errno and whether all of the page was
// still mapped (once seen in a full test run under load, not reproduced in 40 runs of the
// stress test beside other CPU load since).
[[noreturn]] void fatalMoveBack(Ram* ram, void* from) {
  const int err = errno;
  unsigned char vec[1];
  bool whole = true;
  for (std::size_t off = 0; off < ram->pageSize(); off += osPageSize())
    if (::mincore(static_cast<char*>(from) + off, osPageSize(), vec) != 0 && errno == ENOMEM) whole = false;
  char msg[256];
  std::snprintf(msg, sizeof msg,
                "cannot move page tables back to the RAM alias: %s failed: %s (page at %p %s)",
                ram->lastMoveFailure(), std::strerror(err), from,
                whole ? "still mapped whole" : "partly unmapped");
  fatal(msg);
}

// A fault that can only be a bug of the application's (a misuse no one could wait out): ends the
// process with a message naming the page, its file and `what` happened to it.
[[noreturn]] void fatalOnPage(std::uint64_t pg, const FileH* fileh, const char* what) {
  char msg[512];
  std::snprintf(msg, sizeof msg, "page %llu of %s %s", static_cast<unsigned long long>(pg),
                fileh->description.c_str(), what);
  fatal(msg);
}

// Replaces [addr, addr+len) with inaccessible address space (still reserved for us).
void makeInaccessible(void* addr, std::size_t len) {
  void* p = ::mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
                   -1, 0);
  if (p == MAP_FAILED) fatal("cannot drop a page mapping (mmap PROT_NONE failed)");
}

// Where a load writes a frame: its alias address, or a temporary mapping released after.
struct FrameView {
  FrameView(Ram* ram, std::int64_t frame, int prot) : ram_(ram) {
    addr = ram->aliasOf(frame);
    if (!addr) {
      addr = ram->mapFrame(frame, nullptr, prot, /*populate=*/true);
      temporary_ = addr != nullptr;
    }
  }
  ~FrameView() { release(); }
  void release() {
    if (temporary_) ::munmap(addr, ram_->pageSize());
    temporary_ = false;
  }
  void* addr = nullptr;

 private:
  Ram* ram_;
  bool temporary_ = false;
};

}  // namespace

// The virtmem lock, remembering per thread that it is held (see lockedByThisThread).
class Virtmem::Guard {
 public:
  explicit Guard(Virtmem& vm) : vm_(vm) { lock(); }
  ~Guard() {
    if (held_) unlock();
  }
  void lock() {
    vm_.lock_.lock();
    tlsHoldsLock = true;
    held_ = true;
  }
  void unlock() {
    tlsHoldsLock = false;
    held_ = false;
    vm_.lock_.unlock();
  }

 private:
  Virtmem& vm_;
  bool held_ = false;
};

Virtmem& Virtmem::instance() {
  static Virtmem* vm = new Virtmem();  // leaked on purpose: see header
  return *vm;
}

bool Virtmem::lockedByThisThread() { return tlsHoldsLock; }

void Virtmem::checkOpen(FileH* fileh) {
  if (fileh->closed) throw VirtmemError("file handle is closed");
}

// ---- file handles ----------------------------------------------------------------------

FileH* Virtmem::filehOpen(Ram* ram, std::shared_ptr<BigFileOps> ops, std::string description,
                          int baseFd) {
  auto* fileh = new FileH();
  fileh->baseFd = baseFd;
  fileh->ram = ram;
  fileh->ops = std::move(ops);
  fileh->description = std::move(description);
  Guard g(*this);
  fileh->id = nextFilehId_++;
  ram->openFilehs++;
  return fileh;
}

void Virtmem::filehClose(FileH* fileh) {
  Guard g(*this);
  checkOpen(fileh);
  if (!fileh->vmas.empty())
    throw VirtmemError("cannot close file handle: " + std::to_string(fileh->vmas.size()) +
                       " mapping(s) still live (unmap them first)");
  if (fileh->writeoutInProgress)
    throw VirtmemError("cannot close file handle: writeout in progress");
  if (tlsLoadingHere && tlsLoadingHere->fileh == fileh)
    throw VirtmemError("cannot close file handle: one of its pages is loading on this thread (loadHere)");
  // Loads under way (readahead, fileh.load) finish in loader workers, which never wait for
  // this thread: wait for them — those of invalidated pages too, whose frames would otherwise
  // keep the RAM from closing after this handle. No mapping is left, so no new fault can
  // start one.
  while (fileh->loading > 0) {
    const std::uint32_t seq = loadSeq_.load();
    g.unlock();
    futexWait(loadSeq_, seq);
    g.lock();
    checkOpen(fileh);
    if (!fileh->vmas.empty() || fileh->writeoutInProgress)
      throw VirtmemError("cannot close file handle: it was used again while closing");
  }
  std::vector<Page*> pages;
  fileh->pagemap.forEach([&](std::uint64_t, Page* page) { pages.push_back(page); });
  for (Page* page : pages) dropPage(page);
  fileh->closed = true;
  fileh->ram->openFilehs--;
  // The FileH object itself stays allocated (a LOADING_INVALIDATED page's loader may still
  // look at it); the binding frees nothing else through it once closed.
}

// ---- mappings ----------------------------------------------------------------------------

Vma* Virtmem::mmap(FileH* fileh, std::uint64_t pgoffset, std::size_t pglen) {
  if (pglen == 0) throw VirtmemError("mmap: empty page range");
  {
    Guard g(*this);
    checkOpen(fileh);  // a closed handle's RAM may be gone
  }
  const std::size_t pageSize = fileh->ram->pageSize();
  if (pglen > SIZE_MAX / pageSize) throw VirtmemError("mmap: page range too large");
  const std::size_t len = pglen * pageSize;
  void* addr = reserveAligned(len, mappingAlignment(pageSize));
  if (!addr)
    throw VirtmemError("mmap: cannot reserve " + std::to_string(len) + " bytes of address space: " +
                       std::strerror(errno));
  auto* vma = new Vma();
  vma->start = reinterpret_cast<std::uintptr_t>(addr);
  vma->end = vma->start + len;
  vma->pgoffset = pgoffset;
  vma->fileh = fileh;
  vma->mapped.assign(pglen, false);
  if (fileh->baseFd >= 0) {
    // Overlay: the base covers the whole blocks the file has now.
    struct stat st;
    if (::fstat(fileh->baseFd, &st) != 0) {
      ::munmap(addr, len);
      delete vma;
      throw VirtmemError(std::string("mmap: cannot stat the base file: ") + std::strerror(errno));
    }
    const std::uint64_t fileBlocks = static_cast<std::uint64_t>(st.st_size) / pageSize;
    vma->basePages = fileBlocks > pgoffset ? std::min<std::uint64_t>(fileBlocks - pgoffset, pglen) : 0;
    if (vma->basePages) mapBaseInto(vma, 0, vma->basePages);
  }
  Guard g(*this);
  if (fileh->closed) {
    ::munmap(addr, len);
    delete vma;
    throw VirtmemError("file handle is closed");
  }
  vmas_[vma->start] = vma;
  fileh->vmas.push_back(vma);
  // Overlay: dirty pages are mapped over the base right away, or the base would show through.
  if (fileh->baseFd >= 0)
    for (Page* page : fileh->dirty)
      if (vma->covers(page->pgoffset)) mapPageInto(vma, page, PROT_READ | PROT_WRITE);
  return vma;
}

// Maps the base file read-only at pages [first, first+count) of an overlay VMA.
void Virtmem::mapBaseInto(Vma* vma, std::size_t first, std::size_t count) {
  const std::size_t pageSize = vma->fileh->ram->pageSize();
  void* at = reinterpret_cast<void*>(vma->start + first * pageSize);
  const off_t offset = static_cast<off_t>((vma->pgoffset + first) * pageSize);
  if (::mmap(at, count * pageSize, PROT_READ, MAP_SHARED | MAP_FIXED, vma->fileh->baseFd, offset) ==
      MAP_FAILED)
    fatal("cannot map the base file into a mapping (mmap failed)");
}

void Virtmem::unmap(Vma* vma) {
  Guard g(*this);
  const std::size_t pageSize = vma->fileh->ram->pageSize();
  for (std::size_t i = 0; i < vma->npages(); i++) {
    if (!vma->mapped[i]) continue;
    Page* page = vma->fileh->pagemap.get(vma->pgoffset + i);
    if (!page) continue;
    page->refcnt--;
    if (page->ptesIn == vma) {
      // Back to the read alias: the frame's next mapping then needs no population.
      void* at = reinterpret_cast<void*>(vma->start + i * pageSize);
      if (!vma->fileh->ram->moveBackToAlias(page->frame, at)) fatalMoveBack(vma->fileh->ram, at);
      page->ptesIn = nullptr;
    }
  }
  vmas_.erase(vma->start);
  vma->fileh->vmas.remove(vma);
  ::munmap(reinterpret_cast<void*>(vma->start), vma->npages() * pageSize);
  delete vma;
}

Vma* Virtmem::findVma(std::uintptr_t addr) {
  auto it = vmas_.upper_bound(addr);
  if (it == vmas_.begin()) return nullptr;
  --it;
  Vma* vma = it->second;
  return addr < vma->end ? vma : nullptr;
}

void Virtmem::mapPageInto(Vma* vma, Page* page, int prot) {
  const std::size_t pageSize = vma->fileh->ram->pageSize();
  const std::size_t i = page->pgoffset - vma->pgoffset;
  void* at = reinterpret_cast<void*>(vma->start + i * pageSize);
  if (vma->mapped[i]) {
    if (::mprotect(at, pageSize, prot) != 0) fatal("mprotect of a mapped page failed");
    return;
  }
  Ram* ram = vma->fileh->ram;
  if (!page->ptesIn && ram->moveAliasTo(page->frame, at)) {
    // The read slot's page tables (read-only, populated) now serve this VMA.
    page->ptesIn = vma;
    if (prot != PROT_READ && ::mprotect(at, pageSize, prot) != 0)
      fatal("mprotect of a mapped page failed");
  } else {
    if (!ram->mapFrame(page->frame, at, prot, /*populate=*/true))
      fatal("cannot map a RAM frame into a mapping (mmap failed; with small pages and a large "
            "RAM the kernel's vm.max_map_count may be too low)");
    // A cold read slot: these fresh page tables go to it when this VMA lets the page go.
    if (!page->ptesIn && ram->aliasOf(page->frame)) page->ptesIn = vma;
  }
  vma->mapped[i] = true;
  page->refcnt++;
}

void Virtmem::unmapPageFrom(Vma* vma, Page* page) {
  const std::size_t i = page->pgoffset - vma->pgoffset;
  if (!vma->mapped[i]) return;
  Ram* ram = vma->fileh->ram;
  const std::size_t pageSize = ram->pageSize();
  void* at = reinterpret_cast<void*>(vma->start + i * pageSize);
  if (page->ptesIn == vma) {
    // Keep the page tables warm for the frame's next mapping; `at` is left without them (or,
    // on an old kernel, a hole: a reader on another thread hitting it waits, see waitOutHole)
    // until it is mapped over below.
    if (!ram->moveBackToAlias(page->frame, at)) fatalMoveBack(ram, at);
    page->ptesIn = nullptr;
  }
  if (i < vma->basePages)
    mapBaseInto(vma, i, 1);  // overlay: the base shows through again
  else
    makeInaccessible(at, pageSize);
  vma->mapped[i] = false;
  page->refcnt--;
}

void Virtmem::unmapPageEverywhere(Page* page) {
  for (Vma* vma : page->fileh->vmas)
    if (vma->covers(page->pgoffset)) unmapPageFrom(vma, page);
}

void Virtmem::protectPageEverywhere(Page* page, int prot) {
  const std::size_t pageSize = page->fileh->ram->pageSize();
  for (Vma* vma : page->fileh->vmas) {
    if (!vma->covers(page->pgoffset)) continue;
    const std::size_t i = page->pgoffset - vma->pgoffset;
    if (vma->mapped[i] &&
        ::mprotect(reinterpret_cast<void*>(vma->start + i * pageSize), pageSize, prot) != 0)
      fatal("mprotect of a mapped page failed");
  }
}

// Unmaps a page from every VMA, unlinks it from all lists and gives its frame back.
void Virtmem::dropPage(Page* page) {
  FileH* fileh = page->fileh;
  if (page->state == PageState::Loading || page->state == PageState::LoadingInvalidated)
    fileh->loading--;  // only a load's owner drops a page it is loading; such a page is mapped
                       // nowhere, and its offset may show the page that replaced it by now
  else
    unmapPageEverywhere(page);
  if (page->inLru) fileh->ram->lru.erase(page->lruPos);
  if (page->inDirty) fileh->dirty.erase(page->dirtyPos);
  clearLeftBehind(page);
  fileh->pagemap.delIf(page->pgoffset, page);
  fileh->ram->freeFrame(page->frame);
  delete page;
}

void Virtmem::touchLru(Page* page) {
  Ram* ram = page->fileh->ram;
  if (page->inLru) {
    ram->lru.splice(ram->lru.end(), ram->lru, page->lruPos);
  } else {
    page->lruPos = ram->lru.insert(ram->lru.end(), page);
    page->inLru = true;
  }
}

// ---- RAM ---------------------------------------------------------------------------------

std::size_t Virtmem::reclaim(Ram* ram, std::size_t batch) {
  Guard g(*this);
  std::size_t n = 0;
  for (auto it = ram->lru.begin(); it != ram->lru.end() && n < batch;) {
    Page* page = *it++;
    if (page->state != PageState::Loaded) continue;
    dropPage(page);
    n++;
  }
  stats_.reclaimed += n;
  return n;
}

namespace {
// Whether page `pg` of file handle `id` is in one of the RAM's recycled runs.
bool wasRecycled(const Ram* ram, std::uint64_t id, std::uint64_t pg) {
  auto it = ram->recycledRuns.upper_bound({id, pg});
  if (it == ram->recycledRuns.begin()) return false;
  --it;
  return it->first.first == id && it->second >= pg;
}

// Adds page `pg` of file handle `id` to the RAM's recycled runs (extending the run it follows).
void noteRecycled(Ram* ram, std::uint64_t id, std::uint64_t pg) {
  if (wasRecycled(ram, id, pg)) return;
  if (pg > 0) {
    auto it = ram->recycledRuns.upper_bound({id, pg - 1});
    if (it != ram->recycledRuns.begin() && (--it)->first.first == id && it->second == pg - 1) {
      it->second = pg;
      return;
    }
  }
  ram->recycledRuns[{id, pg}] = pg;
  ram->recycledRunOrder.push_back({id, pg});
  if (ram->recycledRunOrder.size() > Ram::kRecycledRuns) {
    ram->recycledRuns.erase(ram->recycledRunOrder.front());
    ram->recycledRunOrder.pop_front();
  }
}
}  // namespace

// Recycling of pages left behind. Below the limit a new page would take a frame of new memory,
// whose first touch costs more than reading a page back from the database on these machines
// (1.5-10 µs per 4 KiB page: 0.8-5 ms for a 2 MiB frame, against 0.4-1.5 ms to load one). Two
// kinds of pages are seldom used again: those a commit wrote out and no mapping shows (a writer
// streaming through an array larger than the RAM does not read back what it committed) and
// those two pages behind a sequential read through a mapping larger than the RAM, or that a
// caller walking a range wider than the RAM says it is done with (leaveBehind: BigArray's
// chunks() for each window it released); a cache of them helps no second pass (LRU evicts
// each before the pass comes back to it). So, with no freed frame at hand, the page left
// behind longest ago and not touched since gives its frame up instead. Left-behind pages are
// mapped nowhere (still loaded: their page tables are in the read alias), so any later access
// faults, cheaply, and takes the page off the list: "not touched since" is exact (so never the
// page a fault is mapping: the fault took it off before its readahead allocates), never while a
// range is being kept mapped (prefault, fileh.load), never where the freed frame would be
// punched (high water) instead of reused.
// Once a page recycled so is asked for again — its user does come back to it — the RAM stops
// doing it for good and caches as any cache would. Fresh processes, alternating with the build
// before: W-ARR write of 1 GiB with 512 MiB of RAM 196-476 -> 449-534 MB/s; cold reads of 1 GiB
// (ZBigFile through one mapping, 256 MiB; W-ARR through 64 MiB chunks, 512 MiB) 2.3-2.6 ->
// 3.2-3.4 GB/s and 1.0-1.3 -> 1.6-1.8 GB/s.
bool Virtmem::recycleLeftBehind(Ram* ram) {
  if (!ram->leftBehindRecycling || ram->leftBehind.empty() || tlsKeepMapped) return false;
  if (ram->framesWarm() != 0 || !ram->freedFrameStaysWarm()) return false;
  Page* victim = ram->leftBehind.front();
  noteRecycled(ram, victim->fileh->id, victim->pgoffset);
  dropPage(victim);
  stats_.recycledLeftBehind++;
  return true;
}

// Puts a LOADED page at the end of the left-behind list, unmapped everywhere.
void Virtmem::markLeftBehind(Page* page) {
  Ram* ram = page->fileh->ram;
  unmapPageEverywhere(page);
  if (page->leftBehind) ram->leftBehind.erase(page->leftBehindPos);
  page->leftBehindPos = ram->leftBehind.insert(ram->leftBehind.end(), page);
  page->leftBehind = true;
}

// A sequential fault at `pg` in a mapping larger than the RAM: the page two before it is
// passed. (Not the one just before: a read or a copy that crosses the page boundary still
// touches it.)
void Virtmem::passBehind(Vma* vma, std::uint64_t pg) {
  FileH* fileh = vma->fileh;
  if (tlsKeepMapped || pg < 2 || !fileh->ram->leftBehindRecycling) return;
  const std::uint64_t passed = pg - 2;
  if (vma->npages() <= fileh->ram->limitFrames() || !vma->covers(passed)) return;
  Page* page = fileh->pagemap.get(passed);
  if (page && page->state == PageState::Loaded && !page->leftBehind) markLeftBehind(page);
}

void Virtmem::leaveBehind(FileH* fileh, std::uint64_t pgoffset, std::uint64_t pglen) {
  Guard g(*this);
  checkOpen(fileh);
  if (!fileh->ram->leftBehindRecycling) return;
  // The pages present in the range (markLeftBehind changes no pagemap entry), not every offset:
  // a range may be far wider than the pages in memory, and the lock is held meanwhile.
  std::vector<Page*> pages;
  fileh->pagemap.forEachIn(pgoffset, pgoffset + pglen, [&](std::uint64_t, Page* page) { pages.push_back(page); });
  for (Page* page : pages)
    if (page->state == PageState::Loaded && page->refcnt == 0 && !page->leftBehind) markLeftBehind(page);
}

void Virtmem::clearLeftBehind(Page* page) {
  if (!page->leftBehind) return;
  page->fileh->ram->leftBehind.erase(page->leftBehindPos);
  page->leftBehind = false;
}

// Takes a frame for a new LOADING page. At the limit, evicts the least recently used
// non-dirty page; with only dirty (or loading) pages left the limit stretches, up to the
// hard cap. Below it, a left-behind page's frame may be taken first (recycleLeftBehind).
// Called with the lock held.
Page* Virtmem::allocPage(FileH* fileh, std::uint64_t pgoffset) {
  Ram* ram = fileh->ram;
  if (ram->leftBehindRecycling && !ram->recycledRuns.empty() && wasRecycled(ram, fileh->id, pgoffset)) {
    ram->leftBehindRecycling = false;  // a recycled page asked for again: cache as usual from now on
    ram->recycledRuns.clear();
    ram->recycledRunOrder.clear();
  }

  if (ram->framesInUse() < ram->limitFrames()) recycleLeftBehind(ram);
  while (ram->framesInUse() >= ram->limitFrames()) {
    Page* victim = nullptr;
    for (Page* page : ram->lru)
      if (page->state == PageState::Loaded) {
        victim = page;
        break;
      }
    if (!victim) break;
    dropPage(victim);
    stats_.reclaimed++;
  }
  if (ram->framesInUse() >= ram->limitFrames()) {
    if (ram->hardCapFrames() != 0 && ram->framesInUse() >= ram->hardCapFrames()) {
      char msg[256];
      std::snprintf(msg, sizeof msg,
                    "RAM hard cap of %zu bytes reached: %zu pages are dirty or loading and none "
                    "can be evicted (commit or abort sooner, or raise the cap)",
                    ram->hardCapBytes(), ram->framesInUse());
      fatal(msg);
    }
    if (ram->framesInUse() == ram->limitFrames()) {
      char msg[256];
      std::snprintf(msg, sizeof msg,
                    "wendelin:virtmem: warning: RAM limit of %zu bytes reached with only dirty "
                    "pages left; stretching it (a transaction's changes must fit in memory)\n",
                    ram->limitBytes());
      writeStderr(msg);
    }
    stats_.stretches++;
  }
  std::int64_t frame = ram->allocFrame();
  if (frame < 0) fatal("cannot grow the RAM file (ftruncate of the memfd failed)");
  auto* page = new Page();
  page->fileh = fileh;
  page->pgoffset = pgoffset;
  page->frame = frame;
  page->state = PageState::Loading;
  fileh->loading++;
  fileh->pagemap.set(pgoffset, page);
  return page;
}

// Waits until some load completes after `seq`: a short spin first (a futex wake-up costs
// 50-100 µs on these VMs, and a page loading elsewhere may be nearly done), then sleeps. The
// spin adapts (AdaptiveSpin): 2 MiB pages read ahead by busy loaders take hundreds of µs,
// and spinning for them only steals the loaders' CPU.
void Virtmem::waitForLoad(std::uint32_t seq) {
  if (!loadSpin_.spinWhile(loadSeq_, seq)) futexWait(loadSeq_, seq);
}

// When the RAM is full, unmaps the page the next eviction will take (allocPage's victim: the
// least recently used clean page) from every mapping, leaving it loaded. A fault whose load
// runs in a loader worker does this while it waits: unmapping moves the page's page tables, and
// with a loader thread of this process on the other vCPU each such move costs a TLB shootdown
// of 15-30 µs on these VMs, which the next fault would otherwise pay in its eviction before it
// could even queue its load. Nothing else changes: the page stays in memory and in LRU order
// (an access maps it again without a load), so what is cached is as before.
void Virtmem::unmapNextVictim(Ram* ram) {
  if (tlsKeepMapped) return;
  Guard g(*this);
  if (ram->framesInUse() < ram->limitFrames()) return;
  for (Page* page : ram->lru)
    if (page->state == PageState::Loaded) {
      if (page->refcnt > 0) unmapPageEverywhere(page);
      return;
    }
}

Virtmem::KeepMappedScope::KeepMappedScope() : saved_(tlsKeepMapped) { tlsKeepMapped = true; }
Virtmem::KeepMappedScope::~KeepMappedScope() { tlsKeepMapped = saved_; }

Virtmem::LoadingHereScope::LoadingHereScope(const PendingLoad& load) : saved_(tlsLoadingHere) {
  tlsLoadingHere = load.page;
}
Virtmem::LoadingHereScope::~LoadingHereScope() { tlsLoadingHere = saved_; }

void Virtmem::loadDone() {
  loadSeq_.fetch_add(1);
  futexWakeAll(loadSeq_);
}

// ---- the page fault ----------------------------------------------------------------------

bool Virtmem::waitOutHole(std::uintptr_t addr) {
  const int savedErrno = errno;
  Guard g(*this);  // the thread that made the hole holds the lock until it is filled
  bool retry = findVma(addr) != nullptr;
  if (retry) {
    // With the lock held no hole is left in a VMA, so the address must be mapped now. If it is
    // not, something else unmapped our memory: retrying would fault again forever, so the
    // fault is passed on (and kills the process where it happened). mincore fails with ENOMEM
    // exactly on unmapped addresses and is a plain system call (fine in a signal handler).
    unsigned char vec;
    const std::uintptr_t page = addr & ~(static_cast<std::uintptr_t>(osPageSize()) - 1);
    retry = ::mincore(reinterpret_cast<void*>(page), osPageSize(), &vec) == 0 || errno != ENOMEM;
    if (retry) stats_.holeRetries++;
  }
  errno = savedErrno;
  return retry;
}

bool Virtmem::onFault(std::uintptr_t addr, bool write) {
  const int savedErrno = errno;
  Guard g(*this);
  bool counted = false;
  for (;;) {
    // (1) address → VMA → file page. Looked up afresh on every round: while the lock was
    // released for a load, the VMA may have been unmapped or the page invalidated.
    Vma* vma = findVma(addr);
    if (!vma) {
      errno = savedErrno;
      return counted;  // not ours (or unmapped meanwhile: the retried access decides)
    }
    if (!counted) {
      stats_.faults++;
      counted = true;
    }
    FileH* fileh = vma->fileh;
    Ram* ram = fileh->ram;
    const std::uint64_t pg = vma->pgoffset + (addr - vma->start) / ram->pageSize();
    Page* page = fileh->pagemap.get(pg);

    // (2) absent: load it with the lock released, then start over.
    if (!page) {
      page = allocPage(fileh, pg);
      std::shared_ptr<BigFileOps> ops = fileh->ops;  // keeps the backend alive meanwhile
      g.unlock();
      char err[512] = "";
      FrameView dest(ram, page->frame, PROT_READ | PROT_WRITE);
      bool ok = dest.addr != nullptr;
      if (!ok) std::snprintf(err, sizeof err, "cannot map a RAM frame: %s", std::strerror(errno));
      const WhileLoading whileLoading{
          [](void* r) { Virtmem::instance().unmapNextVictim(static_cast<Ram*>(r)); }, ram};
      if (ok) ok = ops->loadblk(pg, dest.addr, ram->pageSize(), err, sizeof err, whileLoading);
      dest.release();
      g.lock();
      stats_.loads++;
      if (!ok) {
        char msg[1024];
        std::snprintf(msg, sizeof msg, "cannot load block %llu of %s: %s",
                      static_cast<unsigned long long>(pg), fileh->description.c_str(), err);
        fatal(msg);  // mapped memory must never show wrong data
      }
      if (page->state == PageState::LoadingInvalidated) {
        stats_.loadsInvalidated++;
        dropPage(page);  // already out of the pagemap; the next round loads afresh
      } else {
        page->state = PageState::Loaded;
        fileh->loading--;
        touchLru(page);
      }
      loadDone();
      continue;
    }

    // (3) another thread is loading it: wait for any load to complete, then start over.
    if (page->state == PageState::Loading || page->state == PageState::LoadingInvalidated) {
      if (page == tlsLoadingHere)
        fatalOnPage(pg, fileh,
                    "accessed while it is loading on this very thread (a loadHere fill must not "
                    "touch mapped memory of the page it fills)");
      stats_.loadWaits++;
      const std::uint32_t seq = loadSeq_.load();
      g.unlock();
      waitForLoad(seq);
      g.lock();
      continue;
    }

    // (4) data ready: dirty it on write, map it into this VMA, mark it recently used. A page
    // faulted on again is in use: no longer one to recycle first.
    clearLeftBehind(page);
    if (write && page->state == PageState::Loaded) {
      if (fileh->writeoutInProgress)
        fatalOnPage(pg, fileh,
                    "modified during its writeout (storeblk must not write into mapped memory of "
                    "the file it stores)");
      page->state = PageState::Dirty;
      page->dirtyPos = fileh->dirty.insert(fileh->dirty.end(), page);
      page->inDirty = true;
      stats_.writeFaults++;
    }
    const int prot = page->state == PageState::Dirty ? PROT_READ | PROT_WRITE : PROT_READ;
    mapPageInto(vma, page, prot);
    if (fileh->baseFd >= 0 && page->state == PageState::Dirty) {
      // Overlay: other VMAs showing the base at this page would read stale data.
      for (Vma* other : fileh->vmas)
        if (other != vma && other->covers(pg) && pg - other->pgoffset < other->basePages)
          mapPageInto(other, page, prot);
    }
    touchLru(page);  // before readahead, which evicts from the LRU's cold end
    // Sequential faults: keep the next pages loading while this one is used, and leave the
    // one before behind if the mapping is larger than the RAM.
    if (fileh->lastFaultPg != kNoPage && pg == fileh->lastFaultPg + 1) {
      passBehind(vma, pg);
      readahead(vma, pg);
    }
    fileh->lastFaultPg = pg;
    errno = savedErrno;
    return true;
  }
}

// ---- readahead -----------------------------------------------------------------------------

// Room for a page without stretching the limit and without evicting `keep` (readahead
// must neither stretch the limit nor evict the page being faulted in). allocPage evicts
// the least recently used loaded page, and `keep` was just touched, so another loaded page
// goes first if there is one.
bool Virtmem::canAllocWithoutStretch(Ram* ram, Page* keep) {
  if (ram->framesInUse() < ram->limitFrames()) return true;
  for (Page* page : ram->lru)
    if (page->state == PageState::Loaded && page != keep) return true;
  return false;
}

// Starts async loads of the pages after `pg` within the VMA (a sequential reader's next
// pages) on backends that load elsewhere. Not in wendelin.core: loads there run on the
// faulting thread itself, here a loader worker can fill the next page while this one is used.
void Virtmem::readahead(Vma* vma, std::uint64_t pg) {
  FileH* fileh = vma->fileh;
  Page* current = fileh->pagemap.get(pg);
  if (!fileh->ops->canLoadAsync()) return;
  Ram* ram = fileh->ram;
  // Up to 8 pages (16 MiB of 2 MiB pages) ahead, at most an eighth of the RAM: enough for
  // the loaders never to run dry while the faulting thread maps and evicts pages between loads.
  const std::uint64_t window = std::clamp<std::uint64_t>(ram->limitFrames() / 8, 2, 8);
  for (std::uint64_t next = pg + 1; next <= pg + window && vma->covers(next); next++) {
    if (fileh->pagemap.get(next)) continue;
    if (ram->limitFrames() < 4 || !canAllocWithoutStretch(ram, current)) return;
    Page* page = allocPage(fileh, next);
    void* dest = ram->aliasOf(page->frame);
    if (!dest) {  // beyond the alias (a stretched limit): no readahead
      dropPage(page);
      return;
    }
    PendingLoad load;
    load.fileh = fileh;
    load.page = page;
    load.dest = dest;
    load.blk = next;
    fileh->ops->loadAsync(load, ram->pageSize());
    stats_.readaheads++;
  }
}

// ---- loads from the JS side ----------------------------------------------------------------

Virtmem::BeginLoad Virtmem::beginLoad(FileH* fileh, std::uint64_t pgoffset, PendingLoad* out) {
  Guard g(*this);
  checkOpen(fileh);
  Page* page = fileh->pagemap.get(pgoffset);
  if (page) {
    clearLeftBehind(page);  // asked for: in use
    return page->state == PageState::Loading ? BeginLoad::Busy : BeginLoad::Present;
  }
  page = allocPage(fileh, pgoffset);
  g.unlock();
  Ram* ram = fileh->ram;
  void* dest = ram->aliasOf(page->frame);
  if (!dest) dest = ram->mapFrame(page->frame, nullptr, PROT_READ | PROT_WRITE, true);
  if (!dest) {
    g.lock();
    dropPage(page);
    loadDone();
    throw VirtmemError(std::string("cannot map a RAM frame: ") + std::strerror(errno));
  }
  out->fileh = fileh;
  out->page = page;
  out->dest = dest;
  out->blk = pgoffset;
  return BeginLoad::Started;
}

bool Virtmem::finishLoad(PendingLoad& load, bool ok) {
  Ram* ram = load.fileh->ram;
  if (load.dest != ram->aliasOf(load.page->frame)) ::munmap(load.dest, ram->pageSize());
  load.dest = nullptr;
  Guard g(*this);
  stats_.loads++;
  Page* page = load.page;
  bool kept = false;
  if (ok && page->state == PageState::Loading) {
    page->state = PageState::Loaded;
    load.fileh->loading--;
    touchLru(page);
    kept = true;
  } else {
    if (page->state == PageState::LoadingInvalidated) stats_.loadsInvalidated++;
    dropPage(page);
  }
  loadDone();
  return kept || !ok;
}

// ---- dirty pages ---------------------------------------------------------------------------

void Virtmem::dirtyWriteout(FileH* fileh, int flags, const StoreFn& store) {
  if (!(flags & (kWriteoutStore | kWriteoutMarkStored)) ||
      (flags & ~(kWriteoutStore | kWriteoutMarkStored)))
    throw VirtmemError("dirtyWriteout: flags must be STORE, MARKSTORED or both");
  Guard g(*this);
  checkOpen(fileh);
  if (fileh->writeoutInProgress)
    throw VirtmemError("dirtyWriteout: a writeout of this file handle is already in progress");
  fileh->writeoutInProgress = true;

  // Stored in ascending page order (ZBlk format choice relies on it, as in wendelin.core).
  // The dirty list stays constant meanwhile: modification, discard and invalidation of this
  // handle are refused while writeoutInProgress is set.
  std::vector<Page*> pages(fileh->dirty.begin(), fileh->dirty.end());
  std::sort(pages.begin(), pages.end(),
            [](const Page* a, const Page* b) { return a->pgoffset < b->pgoffset; });

  if (flags & kWriteoutStore) {
    Ram* ram = fileh->ram;
    for (Page* page : pages) {
      // A view of its own: a VMA mapping may go away while the lock is released.
      void* src = ram->mapFrame(page->frame, nullptr, PROT_READ, true);
      if (!src) {
        fileh->writeoutInProgress = false;
        throw VirtmemError(std::string("writeout: cannot map a RAM frame: ") + std::strerror(errno));
      }
      g.unlock();
      try {
        store(page->pgoffset, src, ram->pageSize());
      } catch (...) {
        ::munmap(src, ram->pageSize());
        g.lock();
        fileh->writeoutInProgress = false;
        throw;
      }
      ::munmap(src, ram->pageSize());
      g.lock();
    }
  }
  if (flags & kWriteoutMarkStored) {
    for (Page* page : pages) {
      page->state = PageState::Loaded;
      fileh->dirty.erase(page->dirtyPos);
      page->inDirty = false;
      if (fileh->baseFd >= 0) {
        // Overlay: the stored data is in the base now. Map it back where it underlies the
        // VMA; the frame goes away unless a VMA without base there still shows it.
        for (Vma* vma : fileh->vmas)
          if (vma->covers(page->pgoffset) && page->pgoffset - vma->pgoffset < vma->basePages)
            unmapPageFrom(vma, page);
        if (page->refcnt == 0) {
          dropPage(page);
          continue;
        }
      }
      // Read-only again where it is mapped: a view that showed it still does (system calls
      // on it keep working). Mapped nowhere, it is left behind: its frame is one to take
      // before new memory until an access to it (a fault) tells that it is in use.
      if (fileh->baseFd < 0 && page->refcnt == 0 && fileh->ram->leftBehindRecycling) markLeftBehind(page);
      else protectPageEverywhere(page, PROT_READ);
    }
  }
  fileh->writeoutInProgress = false;
}

void Virtmem::dirtyDiscard(FileH* fileh) {
  Guard g(*this);
  checkOpen(fileh);
  if (fileh->writeoutInProgress)
    throw VirtmemError("dirtyDiscard: refused while a writeout of this file handle is in progress");
  std::vector<Page*> pages(fileh->dirty.begin(), fileh->dirty.end());
  for (Page* page : pages) dropPage(page);
}

void Virtmem::invalidatePage(FileH* fileh, std::uint64_t pgoffset) {
  Guard g(*this);
  checkOpen(fileh);
  if (fileh->writeoutInProgress)
    throw VirtmemError("invalidatePage: refused while a writeout of this file handle is in progress");
  Page* page = fileh->pagemap.get(pgoffset);
  if (!page) return;
  if (page->state == PageState::Loading) {
    // Its loader drops it when done; meanwhile a new access loads the page afresh.
    fileh->pagemap.del(pgoffset);
    page->state = PageState::LoadingInvalidated;
    return;
  }
  dropPage(page);
}

bool Virtmem::pageIsDirty(FileH* fileh, std::uint64_t pgoffset) {
  return pageState(fileh, pgoffset) == PageState::Dirty;
}

PageState Virtmem::pageState(FileH* fileh, std::uint64_t pgoffset) {
  Guard g(*this);
  Page* page = fileh->pagemap.get(pgoffset);
  return page ? page->state : PageState::Empty;
}

bool Virtmem::mapDirtyFrame(FileH* fileh, std::uint64_t pgoffset, void* at) {
  Guard g(*this);
  checkOpen(fileh);
  Page* page = fileh->pagemap.get(pgoffset);
  if (!page || page->state != PageState::Dirty) return false;
  return fileh->ram->mapFrame(page->frame, at, PROT_READ, /*populate=*/true) != nullptr;
}

std::vector<std::pair<std::uint64_t, PageState>> Virtmem::presentPages(FileH* fileh) {
  Guard g(*this);
  std::vector<std::pair<std::uint64_t, PageState>> out;
  fileh->pagemap.forEach([&](std::uint64_t pg, Page* page) { out.emplace_back(pg, page->state); });
  return out;
}

std::vector<std::uint64_t> Virtmem::dirtyPages(FileH* fileh) {
  Guard g(*this);
  std::vector<std::uint64_t> out;
  for (Page* page : fileh->dirty) out.push_back(page->pgoffset);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<bool> Virtmem::vmaMapped(Vma* vma) {
  Guard g(*this);
  return vma->mapped;
}

std::size_t Virtmem::vmaBasePages(Vma* vma) {
  Guard g(*this);
  return vma->basePages;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> Virtmem::lru(Ram* ram) {
  Guard g(*this);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (Page* page : ram->lru) out.emplace_back(page->fileh->id, page->pgoffset);
  return out;
}

void Virtmem::ramDestroy(Ram* ram) {
  Guard g(*this);
  if (ram->openFilehs != 0)
    throw VirtmemError("cannot close RAM: " + std::to_string(ram->openFilehs) +
                       " file handle(s) still open on it");
  if (ram->framesInUse() != 0)
    throw VirtmemError("cannot close RAM: " + std::to_string(ram->framesInUse()) +
                       " page(s) still in it (a load is finishing)");
  delete ram;
}

VirtmemStats Virtmem::stats() {
  Guard g(*this);
  return stats_;
}

RamStats Virtmem::ramStats(Ram* ram) {
  Guard g(*this);
  RamStats s;
  s.pageSize = ram->pageSize();
  s.limitBytes = ram->limitBytes();
  s.hardCapBytes = ram->hardCapBytes();
  s.bytesInUse = ram->framesInUse() * ram->pageSize();
  s.bytesWarm = ram->framesWarm() * ram->pageSize();
  s.bytesPeak = ram->framesPeak() * ram->pageSize();
  s.framesPunched = ram->framesPunched();
  for (Page* page : ram->lru) {
    if (page->state == PageState::Loaded) s.pagesLoaded++;
    if (page->state == PageState::Dirty) s.pagesDirty++;
  }
  return s;
}

}  // namespace wendelin
