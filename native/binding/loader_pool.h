// Loader workers: where loadblk runs when it needs JavaScript.
//
// A fault cannot run JS (V8 cannot be re-entered from a signal handler in the middle of JIT
// code), so the faulting thread queues a LoadRequest, wakes a loader with uv_async_send
// (async-signal-safe) and waits on the request (a spin, then a futex). A loader is a Node
// worker thread that called serveLoads(): in its own event loop it takes requests, calls its JS
// handler with an ArrayBuffer over the RAM frame, and the handler calls completeLoad() when
// the block is in. Only as many loaders are woken as there are requests no woken loader takes.
//
// Request life cycle:
//   queued (in the pool) ──take──► taken (owned by one loader, a job id names it to JS)
//     ──completeLoad──► done: fault requests wake their waiting thread; async requests
//                        (fileh.load from JS) finish the page here and are freed.
//   A loader that shuts down with jobs taken puts them back in the queue for another loader.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "core/virtmem.h"
#include "core/wait.h"

namespace wendelin {

struct LoadRequest {
  std::uint64_t filehId = 0;
  std::uint64_t blk = 0;
  void* dest = nullptr;
  std::size_t len = 0;
  // fault requests: the faulting thread waits on `done`
  OneShot done;
  bool ok = false;
  char error[512] = "";
  // async requests (fileh.load): owned by the pool, finished by the loader
  bool async = false;
  double asyncId = 0;
  Virtmem::PendingLoad pending;
  bool urgent = false;               // a faulting thread waits for it (queued first)
  LoadRequest* next = nullptr;
};

class LoaderPool {
 public:
  static LoaderPool& instance();

  // Queues a request and wakes a sleeping loader if the loaders already awake are fewer than
  // the requests queued. Safe from the SIGSEGV handler of any thread. `urgent` (a thread waits
  // for it) goes before the queued readahead and fileh.load requests.
  void submit(LoadRequest* request, bool urgent = false);
  // Puts back a request a loader took but could not finish (it is shutting down).
  void requeue(LoadRequest* request);
  // The next request for the loader woken through `wake`; nullptr when the queue is empty,
  // and the loader counts as asleep from then until it is woken again.
  LoadRequest* take(uv_async_t* wake);

  void addLoader(uv_async_t* wake);
  void removeLoader(uv_async_t* wake);
  std::size_t loaderCount();

 private:
  // A loader is asleep (back in its event loop with the queue empty), woken (sent a wake-up it
  // has not answered yet) or busy (serving: it looks at the queue again before sleeping).
  struct Slot {
    uv_async_t* wake;
    bool asleep;
    bool woken;
  };
  Slot* slotOf(uv_async_t* wake);
  void wakeLocked();
  std::mutex mutex_;
  LoadRequest* head_ = nullptr;
  LoadRequest* tail_ = nullptr;
  std::size_t queued_ = 0;
  std::size_t woken_ = 0;            // slots with `woken` set
  std::vector<Slot> loaders_;
};

// True on a loader worker's thread (a fault there needing a load would wait for itself).
bool isLoaderThread();
void markLoaderThread();

}  // namespace wendelin
