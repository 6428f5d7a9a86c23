#include "binding/loader_pool.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace wendelin {

namespace {
// initial-exec: read on faulting threads, inside the SIGSEGV handler (see virtmem.cc).
__attribute__((tls_model("initial-exec"))) thread_local bool tlsIsLoader = false;
}

bool isLoaderThread() { return tlsIsLoader; }
void markLoaderThread() { tlsIsLoader = true; }

LoaderPool& LoaderPool::instance() {
  static LoaderPool* pool = new LoaderPool();  // leaked: faults may be served during exit
  return *pool;
}

LoaderPool::Slot* LoaderPool::slotOf(uv_async_t* wake) {
  for (Slot& slot : loaders_)
    if (slot.wake == wake) return &slot;
  return nullptr;
}

// One wake-up per queued request not yet covered by a loader woken for it: waking every loader
// for every request made them all contend for the queue, and each wake-up of a sleeping thread
// costs tens of µs on these VMs (eventfd write, an IPI to a halted vCPU, a context switch).
// Busy loaders need none: they look at the queue again before going to sleep. The first loader
// woken for an urgent request is pinned to its CPU first (see the header), so the wake-up puts
// it there; if pinning fails (a cpuset without that CPU) it runs wherever the scheduler says.
void LoaderPool::wakeLocked(int cpu) {
  for (Slot& slot : loaders_) {
    if (queued_ <= woken_) return;
    if (!slot.asleep) continue;
    slot.asleep = false;
    slot.woken = true;
    woken_++;
    if (cpu >= 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      // The mask to give back is the one it has now: a taskset or cpuset change since the
      // loader started is kept, not undone at its next unpin.
      if (slot.pinnedTo < 0 && ::sched_getaffinity(slot.tid, sizeof slot.home, &slot.home) != 0)
        std::memset(&slot.home, 0xff, sizeof slot.home);
      if (slot.pinnedTo == cpu || ::sched_setaffinity(slot.tid, sizeof one, &one) == 0) slot.pinnedTo = cpu;
      cpu = -1;  // one loader per request
    }
    uv_async_send(slot.wake);
  }
}

int LoaderPool::headUrgentCpu() const { return head_ && head_->urgent ? head_->cpu : -1; }

namespace {
const char kLoaderStopped[] =
    "the loader worker serving it stopped (an uncaught exception in it, or it was terminated)";
const char kNoLoader[] = "no loader worker is left (the last one stopped)";
}  // namespace

void LoaderPool::fail(LoadRequest* request, const char* why) {
  std::snprintf(request->error, sizeof request->error, "%s", why);
  request->ok = false;
  request->done.set();  // after this the faulting thread owns (and may free) the request
}

void LoaderPool::failQueuedUrgentLocked(const char* why) {
  LoadRequest** at = &head_;
  tail_ = nullptr;
  while (LoadRequest* request = *at) {
    if (request->urgent && !request->async) {
      *at = request->next;
      queued_--;
      fail(request, why);
    } else {
      tail_ = request;
      at = &request->next;
    }
  }
}

void LoaderPool::submit(LoadRequest* request, bool urgent) {
  int cpu = urgent ? ::sched_getcpu() : -1;  // vDSO/rseq: fine in the SIGSEGV handler
  if (cpu >= CPU_SETSIZE) cpu = -1;            // beyond a cpu_set_t: not pinned
  std::lock_guard<std::mutex> g(mutex_);
  if (urgent && !request->async && noLoaderLocked()) {
    fail(request, kNoLoader);  // nobody would ever serve it
    return;
  }
  if (urgent) {
    // After the urgent ones already queued, before the rest (FIFO among urgent requests).
    LoadRequest** at = &head_;
    while (*at && (*at)->urgent) at = &(*at)->next;
    request->next = *at;
    *at = request;
    if (!request->next) tail_ = request;
  } else {
    request->next = nullptr;
    if (tail_) tail_->next = request; else head_ = request;
    tail_ = request;
  }
  request->urgent = urgent;
  request->cpu = cpu;
  queued_++;
  // A loader on this CPU that has finished its fault's load (the previous fault's, back at the
  // queue in a moment) takes it: waking another would only put a second loader on this CPU for
  // nothing. One still loading is no cover: this fault would wait behind that load.
  bool covered = false;
  if (cpu >= 0)
    for (const Slot& slot : loaders_)
      if (!slot.asleep && !slot.woken && slot.pinnedTo == cpu && slot.pinnedLoads == 0) covered = true;
  if (!covered) wakeLocked(cpu);
  // Set before any loader can take it (take() holds the lock).
  request->steered = false;
  if (cpu >= 0)
    for (const Slot& slot : loaders_)
      if (!slot.asleep && slot.pinnedTo == cpu) request->steered = true;
}

void LoaderPool::starting() {
  std::lock_guard<std::mutex> g(mutex_);
  promised_++;
}

void LoaderPool::startFailed() {
  std::lock_guard<std::mutex> g(mutex_);
  if (promised_ > 0) promised_--;
  if (noLoaderLocked()) failQueuedUrgentLocked(kNoLoader);
}

LoadRequest* LoaderPool::take(uv_async_t* wake) {
  std::lock_guard<std::mutex> g(mutex_);
  Slot* slot = slotOf(wake);
  if (slot && slot->woken) {
    slot->woken = false;
    woken_--;
  }
  LoadRequest* request = head_;
  if (request) {
    head_ = request->next;
    if (!head_) tail_ = nullptr;
    request->next = nullptr;
    queued_--;
  }
  if (slot && slot->pinnedTo >= 0) {
    if (request && request->urgent && request->cpu == slot->pinnedTo) {
      request->pinnedLoad = true;
      slot->pinnedLoads++;
    } else if (request || slot->pinnedLoads == 0) {
      // Other work (readahead runs beside the reading thread) and the next wake-up may use
      // any CPU again. A load that went asynchronous (the file still opening) keeps the pin
      // until finished(): its faulting thread sleeps on this CPU meanwhile.
      unpinLocked(slot);
    }
  }
  if (!request && slot) slot->asleep = true;
  return request;
}

void LoaderPool::finished(uv_async_t* wake, LoadRequest* request) {
  if (!request->pinnedLoad) return;
  std::lock_guard<std::mutex> g(mutex_);
  request->pinnedLoad = false;
  Slot* slot = slotOf(wake);
  if (!slot || --slot->pinnedLoads > 0) return;
  // Asleep: take() found nothing while this load was under way. (Awake — serving, or woken
  // and maybe pinned anew by a submit — the next take() decides.)
  if (slot->asleep && slot->pinnedTo >= 0) unpinLocked(slot);
}

// Under the lock: a submit cannot pin the loader anew in between. Should its old mask be
// refused (the cpuset changed meanwhile), any CPU will do.
void LoaderPool::unpinLocked(Slot* slot) {
  if (::sched_setaffinity(0, sizeof slot->home, &slot->home) != 0) {
    cpu_set_t any;
    std::memset(&any, 0xff, sizeof any);
    ::sched_setaffinity(0, sizeof any, &any);
  }
  slot->pinnedTo = -1;
}

void LoaderPool::addLoader(uv_async_t* wake, pid_t tid) {
  Slot slot{wake, /*asleep=*/true, /*woken=*/false, tid, {}, /*pinnedTo=*/-1, /*pinnedLoads=*/0};
  if (::sched_getaffinity(tid, sizeof slot.home, &slot.home) != 0) std::memset(&slot.home, 0xff, sizeof slot.home);
  std::lock_guard<std::mutex> g(mutex_);
  if (promised_ > 0) promised_--;  // started: counted in loaders_ from now on
  loaders_.push_back(slot);
  wakeLocked(headUrgentCpu());  // requests queued before any loader was up
}

std::vector<LoadRequest*> LoaderPool::loaderStopped(uv_async_t* wake, const std::vector<LoadRequest*>& taken) {
  std::lock_guard<std::mutex> g(mutex_);
  if (Slot* slot = slotOf(wake); slot && slot->woken) woken_--;
  loaders_.erase(std::remove_if(loaders_.begin(), loaders_.end(),
                                [wake](const Slot& slot) { return slot.wake == wake; }),
                 loaders_.end());
  std::vector<LoadRequest*> notGiven;
  for (LoadRequest* request : taken) {
    request->pinnedLoad = false;  // its loader is gone
    const bool again = request->orphaned++ > 0;
    if (request->async && request->asyncId < 0) {
      notGiven.push_back(request);  // readahead: nobody waits for it
      continue;
    }
    if (!request->async && (again || noLoaderLocked())) {
      fail(request, kLoaderStopped);
      continue;
    }
    // A fault's load to run again; fileh.load's for the next loader to report failed (JS waits
    // for its result, and only a loader can post one).
    request->next = head_;  // first: it waited longest
    head_ = request;
    if (!tail_) tail_ = request;
    queued_++;
  }
  if (noLoaderLocked()) failQueuedUrgentLocked(kNoLoader);
  wakeLocked(headUrgentCpu());  // a wake-up it never answered goes to another loader
  return notGiven;
}

std::size_t LoaderPool::loaderCount() {
  std::lock_guard<std::mutex> g(mutex_);
  return loaders_.size();
}

}  // namespace wendelin
