// BigFileOps: how the core reaches a file's blocks.
//
// loadblk runs with the virtmem lock released, on the thread that faulted (possibly inside
// the SIGSEGV handler): it must not run JavaScript there. The binding's implementation hands
// the request to a loader worker and waits (native/binding/js_file_ops.h); the pattern file
// (pattern_file.h) fills blocks natively for tests and benchmarks. storeblk is not here: it
// runs on the owning thread at writeout and is passed to Virtmem::dirtyWriteout directly.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/pending_load.h"

namespace wendelin {

// Work the faulting thread can do while its load runs in another thread (Virtmem::onFault
// unmaps the next eviction's victim then). Called at most once, with no lock held; may be empty.
struct WhileLoading {
  void (*fn)(void* arg) = nullptr;
  void* arg = nullptr;
  void operator()() const {
    if (fn) fn(arg);
  }
};

class BigFileOps {
 public:
  virtual ~BigFileOps() = default;
  // Fills `dest` (`len` bytes, one block) with block `blk`. On failure writes a message into
  // err[0..errLen) and returns false. A backend that loads in another thread calls
  // `whileLoading` once that load is under way; one that loads right here need not call it.
  virtual bool loadblk(std::uint64_t blk, void* dest, std::size_t len, char* err,
                       std::size_t errLen, const WhileLoading& whileLoading) = 0;

  // Readahead: backends that load elsewhere (loader workers) can start a load without
  // waiting; whoever completes it calls Virtmem::finishLoad(load, ok). Called with the
  // virtmem lock held: it must only queue.
  virtual bool canLoadAsync() const { return false; }
  virtual void loadAsync(const PendingLoad& load, std::size_t len) { (void)load; (void)len; }
};

}  // namespace wendelin
