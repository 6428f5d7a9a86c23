// PendingLoad: a page taken into LOADING whose data is being filled elsewhere (fileh.load
// from JS, or readahead), finished by Virtmem::finishLoad.
#pragma once

#include <cstdint>

namespace wendelin {

struct FileH;
struct Page;

struct PendingLoad {
  FileH* fileh = nullptr;
  Page* page = nullptr;
  void* dest = nullptr;
  std::uint64_t blk = 0;
};

}  // namespace wendelin
