// Page: one block of one file handle, held in one RAM frame.
//
// Page state machine (after wendelin.core bigfile/virtmem.c; all transitions under the
// virtmem lock, loads themselves run with it released):
//
//            fault/load(): frame taken, page put in the pagemap
//   (absent) ───────────────────────────────────────────────► LOADING
//                                                                │  │ invalidate_page():
//                              loadblk() done, lock retaken      │  │ page leaves the pagemap
//                    LOADED ◄────────────────────────────────────┘  ▼
//                   │  ▲   │                            LOADING_INVALIDATED
//     write fault   │  │   │ reclaim / invalidate            │ loadblk() done: the loader
//   (not during     ▼  │   ▼                                 ▼ frees it, the fault retries
//     writeout)   DIRTY │  (absent)                       (absent)  and loads afresh
//                   │   │ writeout MARKSTORED
//                   │   └──────────────────
//                   │ discard / invalidate
//                   ▼
//                (absent)
//
// EMPTY is the state of a page that is not in the pagemap (no Page object exists for it);
// pageState() reports it for absent pages. A LOADING page is in the pagemap so a second
// thread faulting on it waits for the first one's load instead of loading again.
#pragma once

#include <cstdint>
#include <list>

namespace wendelin {

enum class PageState : std::uint8_t {
  Empty = 0,
  Loading = 1,
  LoadingInvalidated = 2,
  Loaded = 3,
  Dirty = 4,
};

const char* pageStateName(PageState state);

struct FileH;
struct Vma;

struct Page {
  FileH* fileh = nullptr;
  std::uint64_t pgoffset = 0;        // index of the page in its file handle (= block number)
  std::int64_t frame = -1;           // RAM frame holding the data
  PageState state = PageState::Empty;
  int refcnt = 0;                    // how many VMAs map this page now
  Vma* ptesIn = nullptr;             // the VMA holding the page tables moved from the alias

  // Left behind, and not faulted on since: written here and committed (dirtyWriteout
  // MARKSTORED) while no mapping showed it, or passed by a sequential read through a mapping
  // (or an advised range) wider than the RAM. Such a page is mapped nowhere, so that any later
  // access faults and takes it off
  // Ram::leftBehind, whose frames are taken before new memory is (Virtmem::recycleLeftBehind).
  bool leftBehind = false;
  std::list<Page*>::iterator leftBehindPos;  // position in Ram::leftBehind when leftBehind

  bool inLru = false;
  std::list<Page*>::iterator lruPos;     // position in Ram::lru when inLru
  bool inDirty = false;
  std::list<Page*>::iterator dirtyPos;   // position in FileH::dirty when inDirty
};

}  // namespace wendelin
