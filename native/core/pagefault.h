// The SIGSEGV handler that turns accesses to our mappings into Virtmem::onFault calls.
#pragma once

namespace wendelin {

// Installs the handler once per process (later calls do nothing). Faults outside our VMAs,
// and every fault that is not an access-rights fault (SEGV_ACCERR), go to the handler that
// was installed before ours — e.g. Node's WebAssembly trap handler.
void installPagefaultHandler();

}  // namespace wendelin
