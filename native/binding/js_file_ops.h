// JsFileOps: a BigFile whose loadblk is JavaScript, run by a loader worker.
#pragma once

#include <cstdio>
#include <cstring>

#include "binding/loader_pool.h"
#include "core/bigfile_ops.h"
#include "core/os.h"

namespace wendelin {

class JsFileOps : public BigFileOps {
 public:
  void setFilehId(std::uint64_t id) { filehId_ = id; }

  // On the faulting thread, maybe inside the SIGSEGV handler: queue, wake, wait.
  bool loadblk(std::uint64_t blk, void* dest, std::size_t len, char* err,
               std::size_t errLen) override {
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
    LoaderPool::instance().submit(&request);
    while (request.done.load() == 0) futexWait(request.done, 0);
    if (!request.ok) std::snprintf(err, errLen, "%s", request.error);
    return request.ok;
  }

 private:
  std::uint64_t filehId_ = 0;
};

}  // namespace wendelin
