// FdFileOps: blocks read natively from a file descriptor (block blk at byte blk*blksize;
// past the end of the file reads as zeros). Used by overlay mode: the copy a write fault
// makes of a base block, and loads of blocks beyond the base, need no loader worker.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "core/bigfile_ops.h"

namespace wendelin {

class FdFileOps : public BigFileOps {
 public:
  explicit FdFileOps(int fd) : fd_(fd) {}
  ~FdFileOps() override { closeFd(); }

  int fd() const { return fd_; }
  void closeFd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool loadblk(std::uint64_t blk, void* dest, std::size_t len, char* err,
               std::size_t errLen, const WhileLoading&) override {
    auto* out = static_cast<char*>(dest);
    std::size_t done = 0;
    // A block whose bytes lie beyond any off_t is past the end of every file: zeros (blk*len
    // would wrap around and read another block).
    constexpr std::uint64_t kMaxOff = static_cast<std::uint64_t>(INT64_MAX);
    if (len != 0 && blk > (kMaxOff - len) / len) {
      std::memset(out, 0, len);
      return true;
    }
    while (done < len) {
      ssize_t n = ::pread(fd_, out + done, len - done, static_cast<off_t>(blk * len + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        std::snprintf(err, errLen, "pread: %s", std::strerror(errno));
        return false;
      }
      if (n == 0) break;  // end of file
      done += static_cast<std::size_t>(n);
    }
    if (done < len) std::memset(out + done, 0, len - done);
    return true;
  }

 private:
  int fd_;
};

}  // namespace wendelin
