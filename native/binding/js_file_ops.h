// JsFileOps: a BigFile whose loadblk is JavaScript, run by a loader worker.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "binding/loader_pool.h"
#include "core/bigfile_ops.h"
#include "core/os.h"
#include "core/wait.h"

namespace wendelin {

class JsFileOps : public BigFileOps {
 public:
  void setFilehId(std::uint64_t id) { filehId_ = id; }

  // On the faulting thread, maybe inside the SIGSEGV handler: queue, wake, wait (doing the
  // caller's work meanwhile).
  bool loadblk(std::uint64_t blk, void* dest, std::size_t len, char* err, std::size_t errLen,
               const WhileLoading& whileLoading) override {
    if (isLoaderThread()) {
      std::snprintf(err, errLen,
                    "page fault inside a loader worker (a loadblk touched mapped memory that "
                    "is not loaded; it would wait for itself)");
      return false;
    }
    LoadRequest request;
    request.filehId = filehId_;
    request.blk = blk;
    request.dest = dest;
    request.len = len;
    LoaderPool::instance().submit(&request, /*urgent=*/true);  // before readahead
    whileLoading();
    // A loader on another CPU usually answers within tens of µs, and a futex wake-up costs
    // about as much again on these VMs: spin that long before sleeping. A loader pinned to this
    // CPU needs it: sleep at once (its wake-up of this thread is then local and cheap).
    request.done.wait(request.steered ? 0 : kSpinNanos);
    if (!request.ok) std::snprintf(err, errLen, "%s", request.error);
    return request.ok;
  }

  bool canLoadAsync() const override { return true; }

  // Readahead: queued for the loaders, finished by whichever completes it (never reported
  // to JS: asyncId -1). Called with the virtmem lock held; only queues.
  void loadAsync(const PendingLoad& load, std::size_t len) override {
    auto* request = new LoadRequest();
    request->filehId = filehId_;
    request->blk = load.blk;
    request->dest = load.dest;
    request->len = len;
    request->async = true;
    request->asyncId = -1;
    request->pending = load;
    LoaderPool::instance().submit(request);
  }

 private:
  static constexpr std::int64_t kSpinNanos = 50'000;
  std::uint64_t filehId_ = 0;
};

}  // namespace wendelin
