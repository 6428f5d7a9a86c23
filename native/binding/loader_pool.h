// Loader workers: where loadblk runs when it needs JavaScript.
//
// A fault cannot run JS (V8 cannot be re-entered from a signal handler in the middle of JIT
// code), so the faulting thread queues a LoadRequest, wakes a loader with uv_async_send
// (async-signal-safe) and waits on the request (a spin, then a futex). A loader is a Node
// worker thread that called serveLoads(): in its own event loop it takes requests, calls its JS
// handler with an ArrayBuffer over the RAM frame, and the handler calls completeLoad() when
// the block is in. Only as many loaders are woken as there are requests no woken loader takes.
//
// A loader woken for a fault runs on the faulting thread's CPU. The faulting thread only waits
// meanwhile, and on these VMs everything between two vCPUs costs 15-30 µs: waking a halted
// vCPU (the eventfd write, then the wake-up itself) and each TLB shootdown of the fault's page
// table moves while the loader runs on the other one — 65-80 µs a fault where a loader on the
// same vCPU takes ~21. So the woken loader is pinned to the faulting CPU (sched_setaffinity of
// a sleeping thread, <1 µs), the faulting thread sleeps at once instead of spinning (it would
// hold the CPU its loader needs), and the loader takes its own CPU mask back before it serves
// anything else (readahead, fileh.load) or, once the fault's load is done, goes back to sleep.
//
// Request life cycle:
//   queued (in the pool) ──take──► taken (owned by one loader, a job id names it to JS)
//     ──completeLoad──► done: fault requests wake their waiting thread; async requests
//                        (fileh.load from JS) finish the page here and are freed.
//   A loader that stops with jobs taken (an uncaught exception in it, or terminated) hands
//   them to loaderStopped(): a fault's load goes back to the queue once, for another loader;
//   fileh.load's and readahead's fail (see there).
#pragma once

#include <sched.h>
#include <sys/types.h>
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
  int cpu = -1;                      // urgent: the CPU the faulting thread submitted it from
  bool steered = false;              // a loader pinned to that CPU will serve it
  bool pinnedLoad = false;           // taken by a loader pinned to `cpu` (until finished())
  int orphaned = 0;                  // how many loaders stopped while they had it taken
  LoadRequest* next = nullptr;
};

class LoaderPool {
 public:
  static LoaderPool& instance();

  // Queues a request and wakes a sleeping loader if the loaders already awake are fewer than
  // the requests queued. Safe from the SIGSEGV handler of any thread. `urgent` (a thread waits
  // for it) goes before the queued readahead and fileh.load requests, and the loader woken for
  // it is pinned to the caller's CPU: `request->steered` says a loader will run there.
  void submit(LoadRequest* request, bool urgent = false);
  // A loader worker is being started (before serveLoads): until it has stopped, fault loads wait
  // for loaders instead of failing (see loaderStopped).
  void starting();
  // A loader started with starting() stopped before it served (it never called addLoader).
  void startFailed();
  // The next request for the loader woken through `wake`; nullptr when the queue is empty,
  // and the loader counts as asleep from then until it is woken again. Called on the loader's
  // own thread: a loader pinned for a fault gets its CPU mask back here when it takes other
  // work, or finds nothing to do with no fault's load of its own under way.
  LoadRequest* take(uv_async_t* wake);
  // A request taken through `wake` is done (on the loader's thread, before it is handed back):
  // the last pinned load of a loader gone to sleep gives it its CPU mask back.
  void finished(uv_async_t* wake, LoadRequest* request);

  // `tid`: the loader's thread; its CPU mask now is the one it gets back after a pinned load.
  void addLoader(uv_async_t* wake, pid_t tid);
  // The loader of `wake` stops with `taken` unfinished; returns the readahead requests among
  // them, for the caller to fail. A fault's load goes back to the queue for another loader the
  // first time; it fails (its thread ends the process with a message) when it was given back
  // before, or when no loader is left nor starting — then so do the fault loads queued, and
  // those submitted until a loader starts: they would wait forever. A fileh.load request goes
  // back marked `orphaned`: the loader that takes it reports it failed without running it. (A
  // load whose loader stopped under it most likely made it stop.)
  std::vector<LoadRequest*> loaderStopped(uv_async_t* wake, const std::vector<LoadRequest*>& taken);
  std::size_t loaderCount();

 private:
  // A loader is asleep (back in its event loop with the queue empty), woken (sent a wake-up it
  // has not answered yet) or busy (serving: it looks at the queue again before sleeping).
  struct Slot {
    uv_async_t* wake;
    bool asleep;
    bool woken;
    pid_t tid;
    cpu_set_t home;                  // its CPU mask before it was pinned
    int pinnedTo;                    // the CPU it is pinned to for a fault, or -1
    int pinnedLoads;                 // loads it took pinned and has not finished
  };
  Slot* slotOf(uv_async_t* wake);
  // `cpu` >= 0: pin the first loader woken to that CPU (an urgent request's).
  void wakeLocked(int cpu = -1);
  // The CPU of the urgent request at the head of the queue, or -1.
  int headUrgentCpu() const;
  // No loader is running nor starting: fault loads fail at once.
  bool noLoaderLocked() const { return loaders_.empty() && promised_ == 0; }
  void failQueuedUrgentLocked(const char* why);
  static void fail(LoadRequest* request, const char* why);
  // The loader of `slot` (the calling thread) gets its own CPU mask back.
  static void unpinLocked(Slot* slot);
  std::mutex mutex_;
  LoadRequest* head_ = nullptr;
  LoadRequest* tail_ = nullptr;
  std::size_t queued_ = 0;
  std::size_t woken_ = 0;            // slots with `woken` set
  std::size_t promised_ = 0;         // loaders started (starting()) and not yet serving
  std::vector<Slot> loaders_;
};

// True on a loader worker's thread (a fault there needing a load would wait for itself).
bool isLoaderThread();
void markLoaderThread();

}  // namespace wendelin
