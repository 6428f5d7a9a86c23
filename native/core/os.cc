#include "core/os.h"

#include <unistd.h>

namespace wendelin {

std::size_t osPageSize() {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

}  // namespace wendelin
