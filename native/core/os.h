// Small OS facts the virtual memory manager is built on.
// The core under native/core/ never includes N-API headers: it is plain C++17 so it can be
// unit-tested and reasoned about without V8 (see native/binding/ for the JS face).
#pragma once

#include <cstddef>

namespace wendelin {

// Size of one hardware page as the kernel reports it (mmap/mprotect granularity).
std::size_t osPageSize();

}  // namespace wendelin
