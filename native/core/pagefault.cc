// SIGSEGV handling (after wendelin.core bigfile/pagefault.c).
//
// Our mappings are PROT_NONE where no page is mapped and PROT_READ where a page is mapped but
// not dirty, so a first read or a first write of a page raises SIGSEGV with si_code
// SEGV_ACCERR. The handler asks Virtmem to serve it; when the address is not ours the fault is
// passed on unchanged to the previous handler. One SEGV_MAPERR is ours too: a page whose page
// tables another thread is moving back to the RAM alias is unmapped for a moment (see
// Virtmem::waitOutHole); the access is retried once that thread is done. No JavaScript ever runs in here: loads that
// need JS are handed to loader workers by the BigFileOps (see native/binding/js_file_ops.cc).
#include "core/pagefault.h"

#include <signal.h>
#include <ucontext.h>

#include <cerrno>
#include <cstdint>
#include <mutex>

#if defined(__aarch64__)
#include <asm/sigcontext.h>
#endif

#include "core/os.h"
#include "core/virtmem.h"

namespace wendelin {

namespace {

struct sigaction previousAction;

// Was the faulting access a write? Read from the CPU state the kernel saved.
bool faultWasWrite(void* ucontextPtr) {
  auto* uc = static_cast<ucontext_t*>(ucontextPtr);
#if defined(__x86_64__)
  // Page-fault error code: bit 1 is set for a write access.
  return (uc->uc_mcontext.gregs[REG_ERR] & 0x2) != 0;
#elif defined(__aarch64__)
  // The exception syndrome register travels in an esr_context record; for a data abort
  // bit 6 (WnR) is set for a write.
  auto* ctx = reinterpret_cast<_aarch64_ctx*>(uc->uc_mcontext.__reserved);
  while (ctx->magic != 0) {
    if (ctx->magic == ESR_MAGIC)
      return ((reinterpret_cast<esr_context*>(ctx)->esr >> 6) & 1) != 0;
    ctx = reinterpret_cast<_aarch64_ctx*>(reinterpret_cast<char*>(ctx) + ctx->size);
  }
  return true;  // no syndrome: treat as write (dirtying a page is safe, losing a write is not)
#else
#error "virtmem supports x86-64 and arm64 only"
#endif
}

void chainToPrevious(int sig, siginfo_t* info, void* ucontext) {
  if (previousAction.sa_flags & SA_SIGINFO) {
    previousAction.sa_sigaction(sig, info, ucontext);
    return;
  }
  if (previousAction.sa_handler == SIG_DFL || previousAction.sa_handler == SIG_IGN) {
    // Restore the default action; returning re-executes the access, which now kills us
    // with the usual SIGSEGV (and core dump) at the right place.
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGSEGV, &dfl, nullptr);
    return;
  }
  previousAction.sa_handler(sig);
}

void onSigsegv(int sig, siginfo_t* info, void* ucontext) {
  // A fault while this thread holds the virtmem lock is a bug in virtmem itself: serving it
  // would deadlock, so let it crash through the previous handler.
  if (info->si_code == SEGV_ACCERR && !Virtmem::lockedByThisThread()) {
    const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
    if (Virtmem::instance().onFault(addr, faultWasWrite(ucontext))) return;
  }
  // An unmapped address inside one of our VMAs is a page caught in the middle of a move by
  // another thread (see Virtmem::waitOutHole): once that thread is done, retry the access.
  if (info->si_code == SEGV_MAPERR && !Virtmem::lockedByThisThread()) {
    const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
    if (Virtmem::instance().waitOutHole(addr)) return;
  }
  chainToPrevious(sig, info, ucontext);
}

}  // namespace

void installPagefaultHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action = {};
    action.sa_sigaction = onSigsegv;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, &previousAction) != 0)
      fatal("cannot install the SIGSEGV handler");
  });
}

}  // namespace wendelin
