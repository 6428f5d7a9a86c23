#include "binding/loader_pool.h"

#include <algorithm>

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
// Busy loaders need none: they look at the queue again before going to sleep.
void LoaderPool::wakeLocked() {
  for (Slot& slot : loaders_) {
    if (queued_ <= woken_) return;
    if (!slot.asleep) continue;
    slot.asleep = false;
    slot.woken = true;
    woken_++;
    uv_async_send(slot.wake);
  }
}

void LoaderPool::submit(LoadRequest* request, bool urgent) {
  std::lock_guard<std::mutex> g(mutex_);
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
  queued_++;
  wakeLocked();
}

void LoaderPool::requeue(LoadRequest* request) {
  std::lock_guard<std::mutex> g(mutex_);
  request->next = head_;
  head_ = request;
  if (!tail_) tail_ = request;
  queued_++;
  wakeLocked();
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
  } else if (slot) {
    slot->asleep = true;
  }
  return request;
}

void LoaderPool::addLoader(uv_async_t* wake) {
  std::lock_guard<std::mutex> g(mutex_);
  loaders_.push_back(Slot{wake, /*asleep=*/true, /*woken=*/false});
  wakeLocked();  // requests queued before any loader was up
}

void LoaderPool::removeLoader(uv_async_t* wake) {
  std::lock_guard<std::mutex> g(mutex_);
  if (Slot* slot = slotOf(wake); slot && slot->woken) woken_--;
  loaders_.erase(std::remove_if(loaders_.begin(), loaders_.end(),
                                [wake](const Slot& slot) { return slot.wake == wake; }),
                 loaders_.end());
  wakeLocked();  // a wake-up it never answered goes to another loader
}

std::size_t LoaderPool::loaderCount() {
  std::lock_guard<std::mutex> g(mutex_);
  return loaders_.size();
}

}  // namespace wendelin
