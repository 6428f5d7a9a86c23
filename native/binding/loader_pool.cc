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

void LoaderPool::wakeAllLocked() {
  for (uv_async_t* wake : loaders_) uv_async_send(wake);
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
  wakeAllLocked();
}

void LoaderPool::requeue(LoadRequest* request) {
  std::lock_guard<std::mutex> g(mutex_);
  request->next = head_;
  head_ = request;
  if (!tail_) tail_ = request;
  wakeAllLocked();
}

LoadRequest* LoaderPool::take() {
  std::lock_guard<std::mutex> g(mutex_);
  LoadRequest* request = head_;
  if (request) {
    head_ = request->next;
    if (!head_) tail_ = nullptr;
    request->next = nullptr;
  }
  return request;
}

void LoaderPool::addLoader(uv_async_t* wake) {
  std::lock_guard<std::mutex> g(mutex_);
  loaders_.push_back(wake);
  if (head_) uv_async_send(wake);  // requests queued before any loader was up
}

void LoaderPool::removeLoader(uv_async_t* wake) {
  std::lock_guard<std::mutex> g(mutex_);
  loaders_.erase(std::remove(loaders_.begin(), loaders_.end(), wake), loaders_.end());
}

std::size_t LoaderPool::loaderCount() {
  std::lock_guard<std::mutex> g(mutex_);
  return loaders_.size();
}

}  // namespace wendelin
