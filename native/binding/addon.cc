// The `virtmem` addon: a thin node-addon-api face over the C++ core in native/core.
// Each export converts arguments, calls the core and converts the result; policy lives in the
// core (virtmem) and in packages/bigfile (TypeScript).
#include <napi.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <cstdio>
#include <cstring>
#include <string>

#include "binding/js_file_ops.h"
#include "binding/loader_pool.h"
#include "binding/stress_readers.h"
#include "core/fd_file_ops.h"
#include "core/malloc_tuning.h"
#include "core/os.h"
#include "core/pagefault.h"
#include "core/pattern_file.h"
#include "core/ram.h"
#include "core/virtmem.h"

namespace wendelin {
namespace {

Virtmem& vm() { return Virtmem::instance(); }

// Runs a core call, turning VirtmemError into a JS Error (other exceptions pass as they are).
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const VirtmemError& e) {
    throw Napi::Error::New(env, e.what());
  }
}

std::uint64_t toIndex(const Napi::Value& v, const char* what) {
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<std::uint64_t>(d)))
    throw Napi::RangeError::New(v.Env(), std::string(what) + " must be a non-negative integer");
  return static_cast<std::uint64_t>(d);
}

// ---- RAM ---------------------------------------------------------------------------------

Napi::Value RamCreate(const Napi::CallbackInfo& info) {
  RamConfig config;
  config.pageSize = toIndex(info[0], "pageSize");
  config.limitBytes = toIndex(info[1], "limit");
  config.hardCapBytes = toIndex(info[2], "hardCap");
  config.highWaterBytes = toIndex(info[3], "highWater");
  Ram* ram = guarded(info.Env(), [&] { return new Ram(config); });
  // A commit's records and a load's buffers are blocks of this RAM's page size, up to about
  // its limit per commit: malloc keeps that much for reuse (see core/malloc_tuning.h).
  keepBlockMemory(ram->limitBytes());
  // Freed only by ramDestroy (RAM.close()): pages of handles never closed may sit in its
  // frames, and faults may be served while the process exits.
  return Napi::External<Ram>::New(info.Env(), ram);
}

Ram* ramOf(const Napi::Value& v) { return v.As<Napi::External<Ram>>().Data(); }

Napi::Value RamStatsJs(const Napi::CallbackInfo& info) {
  RamStats s = vm().ramStats(ramOf(info[0]));
  auto o = Napi::Object::New(info.Env());
  o.Set("pageSize", static_cast<double>(s.pageSize));
  o.Set("limitBytes", static_cast<double>(s.limitBytes));
  o.Set("hardCapBytes", static_cast<double>(s.hardCapBytes));
  o.Set("bytesInUse", static_cast<double>(s.bytesInUse));
  o.Set("bytesWarm", static_cast<double>(s.bytesWarm));
  o.Set("bytesPeak", static_cast<double>(s.bytesPeak));
  o.Set("framesPunched", static_cast<double>(s.framesPunched));
  o.Set("pagesLoaded", static_cast<double>(s.pagesLoaded));
  o.Set("pagesDirty", static_cast<double>(s.pagesDirty));
  return o;
}

Napi::Value RamDestroy(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] { vm().ramDestroy(ramOf(info[0])); });
  return info.Env().Undefined();
}

Napi::Value RamReclaim(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(),
                           static_cast<double>(vm().reclaim(ramOf(info[0]), toIndex(info[1], "batch"))));
}

Napi::Value RamLru(const Napi::CallbackInfo& info) {
  auto lru = vm().lru(ramOf(info[0]));
  auto out = Napi::Array::New(info.Env(), lru.size());
  for (std::size_t i = 0; i < lru.size(); i++) {
    auto pair = Napi::Array::New(info.Env(), 2);
    pair.Set(0u, static_cast<double>(lru[i].first));
    pair.Set(1u, static_cast<double>(lru[i].second));
    out.Set(static_cast<uint32_t>(i), pair);
  }
  return out;
}

// ---- file handles ----------------------------------------------------------------------

struct FileHandle {
  FileH* fileh = nullptr;
  std::shared_ptr<BigFileOps> ops;
  PatternFile* pattern = nullptr;  // set for pattern/no-op files
  FdFileOps* base = nullptr;       // set in overlay mode
};

// Specs loader workers reopen files from, by fileh id.
std::mutex specsMutex;
std::map<std::uint64_t, std::string>& specs() {
  static auto* m = new std::map<std::uint64_t, std::string>();
  return *m;
}

// Per file handle, shared with the loaders (by fileh id): the snapshot loads must read at
// (set by the owning thread at transaction boundaries, read by loaders), and the reports
// loaders attach to completed loads (which database objects a block depended on), drained
// synchronously by the owning thread. Reports of loads that were dropped (invalidated while
// loading) are kept too: the owner tells them apart by the snapshot written in the report and
// by the page's state (packages/bigfile/src/zbigfile-handle.ts).
struct FilehShared {
  std::atomic<std::uint64_t> snapshot{0};
  std::mutex reportsMutex;
  std::vector<std::pair<std::uint64_t, std::string>> reports;
};
std::map<std::uint64_t, std::shared_ptr<FilehShared>>& shared() {
  static auto* m = new std::map<std::uint64_t, std::shared_ptr<FilehShared>>();
  return *m;
}
std::shared_ptr<FilehShared> sharedOf(std::uint64_t id) {
  std::lock_guard<std::mutex> g(specsMutex);
  auto it = shared().find(id);
  return it == shared().end() ? nullptr : it->second;
}

FileHandle* fhOf(const Napi::Value& v) { return v.As<Napi::External<FileHandle>>().Data(); }

Napi::Value FilehOpen(const Napi::CallbackInfo& info) {
  Ram* ram = ramOf(info[0]);
  std::string kind = info[1].As<Napi::String>();
  std::string description = info[2].As<Napi::String>();
  std::string spec = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : std::string();
  auto* handle = new FileHandle();
  std::shared_ptr<JsFileOps> js;
  int baseFd = -1;
  if (kind == "overlay") {
    // info[4]: path of the file to map as the base layer (and to load blocks from).
    std::string basePath = info[4].As<Napi::String>();
    baseFd = ::open(basePath.c_str(), O_RDONLY | O_CLOEXEC);
    if (baseFd < 0) {
      delete handle;
      throw Napi::Error::New(info.Env(), "cannot open " + basePath + " as the base layer: " +
                                             std::strerror(errno));
    }
    auto fdOps = std::make_shared<FdFileOps>(baseFd);
    handle->base = fdOps.get();
    handle->ops = fdOps;
  } else if (kind == "js") {
    js = std::make_shared<JsFileOps>();
    handle->ops = js;
  } else if (kind == "pattern" || kind == "noop") {
    auto pattern = std::make_shared<PatternFile>(kind == "noop");
    handle->pattern = pattern.get();
    handle->ops = pattern;
  } else {
    delete handle;
    throw Napi::TypeError::New(info.Env(), "unknown file kind " + kind);
  }
  handle->fileh = vm().filehOpen(ram, handle->ops, description, baseFd);
  if (js) js->setFilehId(handle->fileh->id);
  {
    std::lock_guard<std::mutex> g(specsMutex);
    specs()[handle->fileh->id] = spec;
    shared()[handle->fileh->id] = std::make_shared<FilehShared>();
  }
  // Not freed by GC: an unclosed handle's pages stay in RAM (close() frees them).
  return Napi::External<FileHandle>::New(info.Env(), handle);
}

Napi::Value FilehId(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(fhOf(info[0])->fileh->id));
}

Napi::Value FilehSpec(const Napi::CallbackInfo& info) {
  std::uint64_t id = toIndex(info[0], "fileh id");
  std::lock_guard<std::mutex> g(specsMutex);
  auto it = specs().find(id);
  if (it == specs().end()) return info.Env().Undefined();
  return Napi::String::New(info.Env(), it->second);
}

Napi::Value FilehClose(const Napi::CallbackInfo& info) {
  FileHandle* h = fhOf(info[0]);
  guarded(info.Env(), [&] { vm().filehClose(h->fileh); });
  if (h->base) h->base->closeFd();
  std::lock_guard<std::mutex> g(specsMutex);
  specs().erase(h->fileh->id);
  shared().erase(h->fileh->id);
  return info.Env().Undefined();
}

// filehLeaveBehind(fh, pgoffset, pglen): the caller is done with these pages.
Napi::Value FilehLeaveBehind(const Napi::CallbackInfo& info) {
  FileHandle* h = fhOf(info[0]);
  std::uint64_t pgoffset = toIndex(info[1], "pgoffset");
  std::uint64_t pglen = toIndex(info[2], "pglen");
  guarded(info.Env(), [&] { vm().leaveBehind(h->fileh, pgoffset, pglen); });
  return info.Env().Undefined();
}

// filehSetSnapshot(fh, tid: bigint): the snapshot loads of this handle read at from now on.
Napi::Value FilehSetSnapshot(const Napi::CallbackInfo& info) {
  FileHandle* h = fhOf(info[0]);
  bool lossless = false;
  std::uint64_t tid = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw Napi::RangeError::New(info.Env(), "filehSetSnapshot: tid must fit in 64 bits");
  auto sh = sharedOf(h->fileh->id);
  if (!sh) throw Napi::Error::New(info.Env(), "file handle is closed");
  sh->snapshot.store(tid, std::memory_order_seq_cst);
  return info.Env().Undefined();
}

// filehSnapshot(filehId) → bigint (any thread; undefined once the handle is closed).
Napi::Value FilehSnapshot(const Napi::CallbackInfo& info) {
  auto sh = sharedOf(toIndex(info[0], "fileh id"));
  if (!sh) return info.Env().Undefined();
  return Napi::BigInt::New(info.Env(), sh->snapshot.load(std::memory_order_seq_cst));
}

// filehTakeLoadReports(fh) → Array<[pgoffset, Uint8Array]>, in completion order; empties them.
Napi::Value FilehTakeLoadReports(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto sh = sharedOf(fhOf(info[0])->fileh->id);
  std::vector<std::pair<std::uint64_t, std::string>> reports;
  if (sh) {
    std::lock_guard<std::mutex> g(sh->reportsMutex);
    reports.swap(sh->reports);
  }
  auto out = Napi::Array::New(env, reports.size());
  for (std::size_t i = 0; i < reports.size(); i++) {
    auto pair = Napi::Array::New(env, 2);
    pair.Set(0u, static_cast<double>(reports[i].first));
    auto bytes = Napi::Uint8Array::New(env, reports[i].second.size());
    std::memcpy(bytes.Data(), reports[i].second.data(), reports[i].second.size());
    pair.Set(1u, bytes);
    out.Set(static_cast<uint32_t>(i), pair);
  }
  return out;
}

// filehPages(fh) → Array<[pgoffset, state]>: every page in memory or being loaded, ascending.
Napi::Value FilehPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto pages = vm().presentPages(fhOf(info[0])->fileh);
  auto out = Napi::Array::New(env, pages.size());
  for (std::size_t i = 0; i < pages.size(); i++) {
    auto pair = Napi::Array::New(env, 2);
    pair.Set(0u, static_cast<double>(pages[i].first));
    pair.Set(1u, Napi::String::New(env, pageStateName(pages[i].second)));
    out.Set(static_cast<uint32_t>(i), pair);
  }
  return out;
}

// A mapping as JS holds it: shared by the External handle and the ArrayBuffer's finalizer,
// whichever comes last frees it; `unmapped` makes unmap idempotent.
struct MappingHandle {
  Vma* vma = nullptr;
  std::size_t length = 0;
  std::atomic<bool> unmapped{false};
  void unmap() {
    if (!unmapped.exchange(true)) vm().unmap(vma);
  }
};
using MappingRef = std::shared_ptr<MappingHandle>;

MappingRef& mappingOf(const Napi::Value& v) { return *v.As<Napi::External<MappingRef>>().Data(); }

Napi::Value FilehMmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FileHandle* h = fhOf(info[0]);
  std::uint64_t pgoffset = toIndex(info[1], "pgoffset");
  std::uint64_t pglen = toIndex(info[2], "pglen");
  Vma* vma = guarded(env, [&] { return vm().mmap(h->fileh, pgoffset, pglen); });
  auto mapping = std::make_shared<MappingHandle>();
  mapping->vma = vma;
  mapping->length = vma->end - vma->start;
  napi_value ab;
  auto* hint = new MappingRef(mapping);
  napi_status status = napi_create_external_arraybuffer(
      env, reinterpret_cast<void*>(vma->start), mapping->length,
      [](napi_env, void*, void* hint) {
        auto* ref = static_cast<MappingRef*>(hint);
        (*ref)->unmap();  // collected without an explicit unmap()
        delete ref;
      },
      hint, &ab);
  if (status != napi_ok) {
    delete hint;
    mapping->unmap();
    throw Napi::Error::New(env, "cannot create an ArrayBuffer of " +
                                    std::to_string(mapping->length) + " bytes over the mapping");
  }
  auto out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Value(env, ab));
  out.Set(1u, Napi::External<MappingRef>::New(env, new MappingRef(mapping),
                                               [](Napi::Env, MappingRef* ref) { delete ref; }));
  return out;
}

Napi::Value MappingUnmap(const Napi::CallbackInfo& info) {
  MappingRef& mapping = mappingOf(info[0]);
  if (mapping->unmapped.load()) return info.Env().Undefined();
  // Detach first: JS views over the buffer become empty instead of pointing at freed space.
  if (info[1].IsArrayBuffer()) {
    auto ab = info[1].As<Napi::ArrayBuffer>();
    if (!ab.IsDetached()) ab.Detach();
  }
  mapping->unmap();
  return info.Env().Undefined();
}

Napi::Value MappingBasePages(const Napi::CallbackInfo& info) {
  MappingRef& mapping = mappingOf(info[0]);
  if (mapping->unmapped.load()) throw Napi::Error::New(info.Env(), "mapping is unmapped");
  return Napi::Number::New(info.Env(), static_cast<double>(vm().vmaBasePages(mapping->vma)));
}

Napi::Value MappingIsLive(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !mappingOf(info[0])->unmapped.load());
}

Napi::Value MappingMapped(const Napi::CallbackInfo& info) {
  MappingRef& mapping = mappingOf(info[0]);
  if (mapping->unmapped.load()) throw Napi::Error::New(info.Env(), "mapping is unmapped");
  auto bits = vm().vmaMapped(mapping->vma);
  auto out = Napi::Array::New(info.Env(), bits.size());
  for (std::size_t i = 0; i < bits.size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Boolean::New(info.Env(), bits[i]));
  return out;
}

// Touches every page of [offset, offset+length) so the kernel may be handed that memory:
// a read loads it; a write (an atomic add of zero, which keeps concurrent writes) dirties it.
Napi::Value MappingPrefault(const Napi::CallbackInfo& info) {
  MappingRef& mapping = mappingOf(info[0]);
  if (mapping->unmapped.load()) throw Napi::Error::New(info.Env(), "mapping is unmapped");
  std::uint64_t offset = toIndex(info[1], "offset");
  std::uint64_t length = toIndex(info[2], "length");
  bool write = info[3].ToBoolean();
  if (offset > mapping->length || length > mapping->length - offset)
    throw Napi::RangeError::New(info.Env(), "prefault range is outside the mapping");
  if (length == 0) return info.Env().Undefined();
  const std::size_t pageSize = mapping->vma->fileh->ram->pageSize();
  auto* base = reinterpret_cast<char*>(mapping->vma->start);
  std::uint64_t first = offset / pageSize, last = (offset + length - 1) / pageSize;
  Virtmem::KeepMappedScope keepMapped;  // no page of the range is unmapped ahead of an eviction
  for (std::uint64_t pg = first; pg <= last; pg++) {
    char* p = base + pg * pageSize;
    if (write)
      __atomic_fetch_add(p, 0, __ATOMIC_RELAXED);
    else
      (void)*static_cast<volatile char*>(p);
  }
  return info.Env().Undefined();
}

Napi::Value FilehWriteout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FileHandle* h = fhOf(info[0]);
  int flags = info[1].As<Napi::Number>().Int32Value();
  Napi::Function store = info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  if ((flags & kWriteoutStore) && store.IsEmpty())
    throw Napi::TypeError::New(env, "dirtyWriteout(STORE) needs a storeblk function");
  guarded(env, [&] {
    vm().dirtyWriteout(h->fileh, flags, [&](std::uint64_t blk, const void* src, std::size_t len) {
      // A read-only view of the frame, detached right after: storeblk must not keep it.
      auto ab = Napi::ArrayBuffer::New(env, const_cast<void*>(src), len);
      auto view = Napi::Uint8Array::New(env, len, ab, 0);
      try {
        store.Call({Napi::Number::New(env, static_cast<double>(blk)), view});
      } catch (...) {
        ab.Detach();
        throw;
      }
      ab.Detach();
    });
  });
  return env.Undefined();
}

Napi::Value FilehDiscard(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] { vm().dirtyDiscard(fhOf(info[0])->fileh); });
  return info.Env().Undefined();
}

Napi::Value FilehInvalidate(const Napi::CallbackInfo& info) {
  FileHandle* h = fhOf(info[0]);
  std::uint64_t pg = toIndex(info[1], "pgoffset");
  guarded(info.Env(), [&] { vm().invalidatePage(h->fileh, pg); });
  return info.Env().Undefined();
}

Napi::Value FilehPageState(const Napi::CallbackInfo& info) {
  FileHandle* h = fhOf(info[0]);
  return Napi::String::New(info.Env(),
                           pageStateName(vm().pageState(h->fileh, toIndex(info[1], "pgoffset"))));
}

Napi::Value FilehDirtyPages(const Napi::CallbackInfo& info) {
  auto pages = vm().dirtyPages(fhOf(info[0])->fileh);
  auto out = Napi::Array::New(info.Env(), pages.size());
  for (std::size_t i = 0; i < pages.size(); i++) out.Set(static_cast<uint32_t>(i), static_cast<double>(pages[i]));
  return out;
}

// fileh.load(): queue an async load of one page for the loaders. 'started' means a loader will
// report it to JS (the loader posts the result); 'present'/'busy' need nothing queued.
Napi::Value FilehLoadAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FileHandle* h = fhOf(info[0]);
  std::uint64_t pg = toIndex(info[1], "pgoffset");
  double asyncId = info[2].As<Napi::Number>().DoubleValue();
  Virtmem::PendingLoad pending;
  // fileh.load() keeps its range: no page of it is taken for another (left-behind recycling).
  Virtmem::KeepMappedScope keepMapped;
  auto r = guarded(env, [&] { return vm().beginLoad(h->fileh, pg, &pending); });
  if (r == Virtmem::BeginLoad::Present) return Napi::String::New(env, "present");
  if (r == Virtmem::BeginLoad::Busy) return Napi::String::New(env, "busy");
  if (h->pattern || h->base) {
    // Native backend: fill it right here.
    char err[512] = "";
    bool ok = h->ops->loadblk(pg, pending.dest, h->fileh->ram->pageSize(), err, sizeof err, {});
    bool kept = vm().finishLoad(pending, ok);
    if (!ok) throw Napi::Error::New(env, err);
    return Napi::String::New(env, kept ? "present" : "invalidated");
  }
  auto* request = new LoadRequest();
  request->filehId = h->fileh->id;
  request->blk = pg;
  request->dest = pending.dest;
  request->len = h->fileh->ram->pageSize();
  request->async = true;
  request->asyncId = asyncId;
  request->pending = pending;
  LoaderPool::instance().submit(request);
  return Napi::String::New(env, "started");
}

// filehLoadHere(fh, pgoffset, fill: (dest: Uint8Array) => void) → 'loaded' | 'invalidated' |
// 'present' | 'busy': loads a page on this thread, with `fill` writing the block into a view of
// its frame (detached right after: it must not outlive the load). For a JS file whose owner
// can read the block itself while no loader worker serves yet (they take ~100 ms to start).
// A throw from `fill` drops the page (it loads again on access) and is rethrown.
Napi::Value FilehLoadHere(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FileHandle* h = fhOf(info[0]);
  std::uint64_t pg = toIndex(info[1], "pgoffset");
  Napi::Function fill = info[2].As<Napi::Function>();
  Virtmem::PendingLoad pending;
  Virtmem::KeepMappedScope keepMapped;  // as fileh.load: no page of the range is recycled
  auto r = guarded(env, [&] { return vm().beginLoad(h->fileh, pg, &pending); });
  if (r == Virtmem::BeginLoad::Present) return Napi::String::New(env, "present");
  if (r == Virtmem::BeginLoad::Busy) return Napi::String::New(env, "busy");
  // From here on the page is LOADING: every way out finishes the load (a page left loading
  // would have its faults and the handle's close wait for good).
  std::size_t len = h->fileh->ram->pageSize();
  Napi::ArrayBuffer ab;
  auto detach = [&ab]() noexcept {
    try {
      if (!ab.IsEmpty() && !ab.IsDetached()) ab.Detach();
    } catch (...) {
      // the environment is being torn down: no JS will touch the view again
    }
  };
  try {
    Virtmem::LoadingHereScope loadingHere(pending);  // a fault on this page here cannot wait for it
    ab = Napi::ArrayBuffer::New(env, pending.dest, len);
    fill.Call({Napi::Uint8Array::New(env, len, ab, 0)});
  } catch (...) {
    detach();
    vm().finishLoad(pending, false);
    throw;
  }
  detach();
  bool kept = vm().finishLoad(pending, true);
  return Napi::String::New(env, kept ? "loaded" : "invalidated");
}

// filehFrameRecord(fh, pgoffset, prefix: Uint8Array, n) → ArrayBuffer | undefined: a read-only
// record whose bytes are `prefix` followed by the first `n` bytes of dirty page `pgoffset`'s
// frame, without copying the page: one reservation of an OS page and the page size, the
// prefix at the end of its first (anonymous) OS page, the frame mapped right after it. The
// frame is the page's only while the page is dirty: the owner releases the record
// (frameRecordRelease: detached, unmapped) once the commit that stores it ended; one never
// released is unmapped when its ArrayBuffer is finalized (which Node does from the event loop
// only: a loop of commits that never returns to it would pile up mappings, hence the explicit
// release). undefined when the page is not dirty, or when the mappings cannot be made (the
// caller copies the page instead). JavaScript must never write into the record: it is mapped
// read-only, and a write there kills the process.
struct FrameRecordMapping {
  void* base;
  std::size_t span;
  bool unmapped;
};
std::mutex frameRecordsMutex;
std::map<void*, FrameRecordMapping*>& frameRecords() {  // by the address the ArrayBuffer starts at
  static auto* m = new std::map<void*, FrameRecordMapping*>();
  return *m;
}
// Records live at once, at most: each holds two memory mappings until released, and one big
// commit makes one per dirty page — past vm.max_map_count (65530 by default) everything that
// maps memory fails (V8, malloc, virtmem itself), not just the next record. Beyond the limit
// pages are copied. An eighth of the kernel's limit (8,191 by default: 16 GiB of 2 MiB pages).
std::size_t frameRecordsLimit() {
  static std::size_t limit = [] {
    std::size_t maxMaps = 65530;
    if (FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
      unsigned long v = 0;
      if (std::fscanf(f, "%lu", &v) == 1 && v > 0) maxMaps = v;
      std::fclose(f);
    }
    return maxMaps / 8;
  }();
  return limit;
}
std::size_t frameRecordsLimitOverride = 0;  // tests: frameRecordsSetLimit

Napi::Value FilehFrameRecord(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FileHandle* h = fhOf(info[0]);
  std::uint64_t pg = toIndex(info[1], "pgoffset");
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, "filehFrameRecord: the prefix must be a Uint8Array");
  auto prefix = info[2].As<Napi::Uint8Array>();
  std::size_t n = toIndex(info[3], "n");
  const std::size_t os = osPageSize();
  const std::size_t ps = h->fileh->ram->pageSize();
  const std::size_t head = prefix.ByteLength();
  if (head == 0 || head > os) throw Napi::RangeError::New(env, "filehFrameRecord: the prefix must be 1 byte to one OS page long");
  if (n > ps) throw Napi::RangeError::New(env, "filehFrameRecord: n is beyond the page");
  {
    std::lock_guard<std::mutex> g(frameRecordsMutex);
    const std::size_t limit = frameRecordsLimitOverride ? frameRecordsLimitOverride : frameRecordsLimit();
    if (frameRecords().size() >= limit) return env.Undefined();
  }
  const std::size_t span = os + ps;
  void* base = ::mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return env.Undefined();
  char* at = static_cast<char*>(base);
  bool mapped = ::mmap(at, os, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED;
  if (mapped) {
    std::memcpy(at + os - head, prefix.Data(), head);
    mapped = ::mprotect(at, os, PROT_READ) == 0;
  }
  try {
    if (mapped) mapped = guarded(env, [&] { return vm().mapDirtyFrame(h->fileh, pg, at + os); });
  } catch (...) {
    ::munmap(base, span);
    throw;  // a closed handle
  }
  if (!mapped) {
    ::munmap(base, span);
    return env.Undefined();
  }
  void* data = at + os - head;
  auto* mapping = new FrameRecordMapping{base, span, false};
  Napi::ArrayBuffer ab;
  try {
    ab = Napi::ArrayBuffer::New(
        env, data, head + n,
        [](Napi::Env, void* start, FrameRecordMapping* m) {
          {
            std::lock_guard<std::mutex> g(frameRecordsMutex);
            auto it = frameRecords().find(start);
            if (it != frameRecords().end() && it->second == m) frameRecords().erase(it);
          }
          if (!m->unmapped) ::munmap(m->base, m->span);
          delete m;
        },
        mapping);
  } catch (...) {
    // an environment that refuses external buffers: the page is copied instead
    ::munmap(base, span);
    delete mapping;
    return env.Undefined();
  }
  std::lock_guard<std::mutex> g(frameRecordsMutex);
  frameRecords()[data] = mapping;
  return ab;
}

// frameRecordsSetLimit(n): tests only — the most records live at once (0: the default).
Napi::Value FrameRecordsSetLimit(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> g(frameRecordsMutex);
  frameRecordsLimitOverride = toIndex(info[0], "limit");
  return info.Env().Undefined();
}

// frameRecordRelease(ab): a record of filehFrameRecord is done with: detached (views of it
// become empty) and unmapped now. Anything else is left alone.
Napi::Value FrameRecordRelease(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "frameRecordRelease: an ArrayBuffer is expected");
  auto ab = info[0].As<Napi::ArrayBuffer>();
  if (ab.IsDetached()) return env.Undefined();
  FrameRecordMapping* m = nullptr;
  void* data = ab.Data();
  {
    std::lock_guard<std::mutex> g(frameRecordsMutex);
    auto it = frameRecords().find(data);
    if (it == frameRecords().end()) return env.Undefined();
    m = it->second;
  }
  ab.Detach();  // first: should it throw, the record stays registered and mapped (its finalizer unmaps it)
  {
    std::lock_guard<std::mutex> g(frameRecordsMutex);
    frameRecords().erase(data);
  }
  ::munmap(m->base, m->span);
  m->unmapped = true;  // the finalizer frees the bookkeeping
  return env.Undefined();
}

// ---- pattern files (tests, benchmarks) ----------------------------------------------------

PatternFile* patternOf(const Napi::CallbackInfo& info) {
  FileHandle* h = fhOf(info[0]);
  if (!h->pattern) throw Napi::TypeError::New(info.Env(), "not a pattern file");
  return h->pattern;
}

Napi::Value PatternControl(const Napi::CallbackInfo& info) {
  PatternFile* p = patternOf(info);
  std::string what = info[1].As<Napi::String>();
  if (what == "seed") p->setSeed(info[2].As<Napi::Number>().Uint32Value());
  else if (what == "gate") p->setGateOpen(info[2].ToBoolean());
  else if (what == "fail") p->setFailing(info[2].ToBoolean());
  auto o = Napi::Object::New(info.Env());
  o.Set("loads", static_cast<double>(p->loads()));
  o.Set("waitingAtGate", static_cast<double>(p->loadsWaitingAtGate()));
  return o;
}

// ---- stress readers (tests) -----------------------------------------------------------------

// stressReadersStart(buffer, pageSize, expected: Uint8Array, threads): plain threads reading
// `buffer` (a mapping) at random, page p checked against expected[p], until stressReadersStop.
Napi::Value StressReadersStart(const Napi::CallbackInfo& info) {
  auto buffer = info[0].As<Napi::ArrayBuffer>();
  std::size_t pageSize = toIndex(info[1], "pageSize");
  auto expected = info[2].As<Napi::Uint8Array>();
  unsigned threads = info[3].As<Napi::Number>().Uint32Value();
  if (pageSize == 0 || expected.ElementLength() == 0 ||
      expected.ElementLength() * pageSize > buffer.ByteLength())
    throw Napi::RangeError::New(info.Env(), "stressReadersStart: pages beyond the buffer");
  std::vector<unsigned char> want(expected.Data(), expected.Data() + expected.ElementLength());
  auto* readers = new StressReaders(static_cast<const unsigned char*>(buffer.Data()), pageSize,
                                    std::move(want), threads);
  return Napi::External<StressReaders>::New(info.Env(), readers,
                                            [](Napi::Env, StressReaders* r) { delete r; });
}

Napi::Value StressReadersStop(const Napi::CallbackInfo& info) {
  StressReaders* r = info[0].As<Napi::External<StressReaders>>().Data();
  r->stop();
  auto o = Napi::Object::New(info.Env());
  o.Set("reads", static_cast<double>(r->reads()));
  o.Set("mismatches", static_cast<double>(r->mismatches()));
  o.Set("firstMismatch", r->firstMismatch());
  return o;
}

// ---- loader workers ------------------------------------------------------------------------

struct LoadJob {
  LoadRequest* request;
  Napi::Reference<Napi::ArrayBuffer> buffer;
};

const char kOrphanedLoad[] =
    "the loader worker serving it stopped (an uncaught exception in it, or it was terminated)";

// The state of the loader served by this thread (one per worker).
struct Loader {
  napi_env env = nullptr;
  uv_async_t wake{};
  Napi::FunctionReference handler;
  std::map<std::uint32_t, LoadJob> jobs;
  std::uint32_t nextJob = 1;
  napi_async_cleanup_hook_handle cleanupHook = nullptr;
  bool stopping = false;  // its handler could not be called: it takes no more requests
};
thread_local Loader* tlsLoader = nullptr;

// The handler is expected to report errors through completeLoad; a synchronous throw is
// treated as a failed load (as is a job that could not even be handed to it). Nothing may
// escape from here: this runs in a uv callback, where a C++ exception ends the process.
void failJob(Loader* loader, uv_async_t* wake, LoadRequest* request, std::uint32_t job, bool registered,
             const char* why) noexcept {
  if (request->async) {
    // Only a worker that is stopping (process.exit() in a loadblk, terminated) fails to call
    // its handler: the job is kept for the cleanup hook, which hands it to the pool (a loader
    // then reports a fileh.load failed: only JS can post its result). Failed here, its page
    // stayed LOADING for ever (close() waited for it) and fileh.load never settled.
    if (registered && loader->jobs.find(job) == loader->jobs.end()) return;  // completed already
    loader->stopping = true;
    try {
      if (!registered) loader->jobs.emplace(job, LoadJob{request, Napi::Reference<Napi::ArrayBuffer>()});
    } catch (...) {
      vm().finishLoad(request->pending, false);  // no memory left: at least the page is let go
      delete request;
    }
    return;
  }
  if (registered) {
    auto it = loader->jobs.find(job);
    if (it == loader->jobs.end()) return;  // completed already, by completeLoad
    try {
      it->second.buffer.Value().Detach();  // the frame view must not outlive the load
    } catch (...) {
      // the environment is being torn down: no JS will touch the view again
    }
    loader->jobs.erase(it);
  }
  std::snprintf(request->error, sizeof request->error, "loader handler threw: %s",
                why[0] != '\0' ? why : "(nothing: its worker is stopping)");
  request->ok = false;
  LoaderPool::instance().finished(wake, request);
  request->done.set();
}

void onLoaderWake(uv_async_t* wake) {
  Loader* loader = static_cast<Loader*>(wake->data);
  Napi::Env env(loader->env);
  Napi::HandleScope scope(env);
  while (!loader->stopping) {
    LoadRequest* request = LoaderPool::instance().take(wake);
    if (!request) break;
    std::uint32_t job = loader->nextJob++;
    bool registered = false;
    try {
      // Inside the try: with the worker being torn down, even creating the buffer throws.
      auto ab = Napi::ArrayBuffer::New(env, request->dest, request->len);
      loader->jobs.emplace(job, LoadJob{request, Napi::Persistent(ab)});
      registered = true;
      loader->handler.MakeCallback(
          env.Global(),
          {Napi::Number::New(env, static_cast<double>(request->filehId)),
           Napi::Number::New(env, static_cast<double>(request->blk)), Napi::Uint8Array::New(env, request->len, ab, 0),
           Napi::Number::New(env, job),
           request->async && request->asyncId >= 0 ? Napi::Number::New(env, request->asyncId) : env.Null(),
           // a fileh.load whose loader stopped under it: reported failed, not run again
           request->async && request->orphaned > 0 ? Napi::String::New(env, kOrphanedLoad) : env.Undefined()});
    } catch (const Napi::Error& e) {
      failJob(loader, wake, request, job, registered, e.Message().c_str());
    } catch (const std::exception& e) {  // std::bad_alloc from the job table, say
      failJob(loader, wake, request, job, registered, e.what());
    }
  }
}

void onLoaderCleanup(napi_async_cleanup_hook_handle handle, void* arg) {
  Loader* loader = static_cast<Loader*>(arg);
  // Jobs taken but not finished: the pool gives them to another loader or fails them; they were
  // put back in the queue unconditionally, where a fault's load waited forever once no loader
  // was left (the only one, by default on 2 CPUs) — and one that killed its loader killed the next.
  std::vector<LoadRequest*> taken;
  for (auto& entry : loader->jobs) taken.push_back(entry.second.request);
  loader->jobs.clear();
  for (LoadRequest* request : LoaderPool::instance().loaderStopped(&loader->wake, taken)) {
    vm().finishLoad(request->pending, false);  // readahead: the page is dropped, loaded again on use
    delete request;
  }
  loader->handler.Reset();
  loader->cleanupHook = handle;
  uv_close(reinterpret_cast<uv_handle_t*>(&loader->wake), [](uv_handle_t* h) {
    Loader* loader = static_cast<Loader*>(h->data);
    napi_remove_async_cleanup_hook(loader->cleanupHook);
    if (tlsLoader == loader) tlsLoader = nullptr;
    delete loader;
  });
}

Napi::Value ServeLoads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (tlsLoader) throw Napi::Error::New(env, "this thread already serves loads");
  auto* loader = new Loader();
  loader->env = env;
  loader->handler = Napi::Persistent(info[0].As<Napi::Function>());
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  uv_async_init(loop, &loader->wake, onLoaderWake);
  loader->wake.data = loader;
  napi_add_async_cleanup_hook(env, onLoaderCleanup, loader, nullptr);
  tlsLoader = loader;
  markLoaderThread();
  LoaderPool::instance().addLoader(&loader->wake, ::gettid());
  return env.Undefined();
}

// completeLoad(job, error|null) → 'loaded' | 'invalidated' | 'failed'
Napi::Value CompleteLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Loader* loader = tlsLoader;
  if (!loader) throw Napi::Error::New(env, "completeLoad outside a loader thread");
  std::uint32_t job = info[0].As<Napi::Number>().Uint32Value();
  auto it = loader->jobs.find(job);
  if (it == loader->jobs.end()) throw Napi::Error::New(env, "unknown or completed load job");
  LoadRequest* request = it->second.request;
  it->second.buffer.Value().Detach();  // the frame view must not outlive the load
  loader->jobs.erase(it);
  bool ok = !info[1].IsString();
  std::string error = ok ? std::string() : info[1].As<Napi::String>().Utf8Value();
  // completeLoad(job, null, report): keep the loader's report for the owner of the handle.
  if (ok && info.Length() > 2 && info[2].IsTypedArray()) {
    auto report = info[2].As<Napi::Uint8Array>();
    if (auto sh = sharedOf(request->filehId)) {
      std::lock_guard<std::mutex> g(sh->reportsMutex);
      sh->reports.emplace_back(request->blk,
                               std::string(reinterpret_cast<const char*>(report.Data()), report.ByteLength()));
    }
  }
  LoaderPool::instance().finished(&loader->wake, request);
  if (request->async) {
    bool kept = vm().finishLoad(request->pending, ok);
    delete request;
    return Napi::String::New(env, !ok ? "failed" : kept ? "loaded" : "invalidated");
  }
  std::snprintf(request->error, sizeof request->error, "%s", error.c_str());
  request->ok = ok;
  request->done.set();  // after this the faulting thread owns (and may free) the request
  return Napi::String::New(env, ok ? "loaded" : "failed");
}

// loaderStarting(): a loader worker is being started; loaderStartFailed(): it stopped before it
// served (see LoaderPool::starting).
Napi::Value LoaderStarting(const Napi::CallbackInfo& info) {
  LoaderPool::instance().starting();
  return info.Env().Undefined();
}

Napi::Value LoaderStartFailed(const Napi::CallbackInfo& info) {
  LoaderPool::instance().startFailed();
  return info.Env().Undefined();
}

Napi::Value LoaderCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(LoaderPool::instance().loaderCount()));
}

// ---- statistics ----------------------------------------------------------------------------

Napi::Value VirtmemStatsJs(const Napi::CallbackInfo& info) {
  VirtmemStats s = vm().stats();
  auto o = Napi::Object::New(info.Env());
  o.Set("faults", static_cast<double>(s.faults));
  o.Set("writeFaults", static_cast<double>(s.writeFaults));
  o.Set("loads", static_cast<double>(s.loads));
  o.Set("loadWaits", static_cast<double>(s.loadWaits));
  o.Set("loadsInvalidated", static_cast<double>(s.loadsInvalidated));
  o.Set("reclaimed", static_cast<double>(s.reclaimed));
  o.Set("stretches", static_cast<double>(s.stretches));
  o.Set("readaheads", static_cast<double>(s.readaheads));
  o.Set("holeRetries", static_cast<double>(s.holeRetries));
  o.Set("recycledLeftBehind", static_cast<double>(s.recycledLeftBehind));
  return o;
}

Napi::Value OsPageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(osPageSize()));
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  installPagefaultHandler();
  auto fn = [&](const char* name, Napi::Function::Callback cb) {
    exports.Set(name, Napi::Function::New(env, cb, name));
  };
  fn("osPageSize", OsPageSize);
  fn("ramCreate", RamCreate);
  fn("ramStats", RamStatsJs);
  fn("ramReclaim", RamReclaim);
  fn("ramDestroy", RamDestroy);
  fn("ramLru", RamLru);
  fn("filehOpen", FilehOpen);
  fn("filehId", FilehId);
  fn("filehSpec", FilehSpec);
  fn("filehLeaveBehind", FilehLeaveBehind);
  fn("filehClose", FilehClose);
  fn("filehMmap", FilehMmap);
  fn("filehWriteout", FilehWriteout);
  fn("filehDiscard", FilehDiscard);
  fn("filehInvalidate", FilehInvalidate);
  fn("filehPageState", FilehPageState);
  fn("filehDirtyPages", FilehDirtyPages);
  fn("filehLoadAsync", FilehLoadAsync);
  fn("filehLoadHere", FilehLoadHere);
  fn("filehFrameRecord", FilehFrameRecord);
  fn("frameRecordRelease", FrameRecordRelease);
  fn("frameRecordsSetLimit", FrameRecordsSetLimit);
  fn("filehSetSnapshot", FilehSetSnapshot);
  fn("filehSnapshot", FilehSnapshot);
  fn("filehTakeLoadReports", FilehTakeLoadReports);
  fn("filehPages", FilehPages);
  fn("patternControl", PatternControl);
  fn("mappingUnmap", MappingUnmap);
  fn("mappingIsLive", MappingIsLive);
  fn("mappingMapped", MappingMapped);
  fn("mappingBasePages", MappingBasePages);
  fn("mappingPrefault", MappingPrefault);
  fn("serveLoads", ServeLoads);
  fn("completeLoad", CompleteLoad);
  fn("loaderCount", LoaderCount);
  fn("loaderStarting", LoaderStarting);
  fn("loaderStartFailed", LoaderStartFailed);
  fn("virtmemStats", VirtmemStatsJs);
  fn("stressReadersStart", StressReadersStart);
  fn("stressReadersStop", StressReadersStop);
  exports.Set("abiVersion", Napi::Number::New(env, 3));
  exports.Set("WRITEOUT_STORE", Napi::Number::New(env, kWriteoutStore));
  exports.Set("WRITEOUT_MARKSTORED", Napi::Number::New(env, kWriteoutMarkStored));
  return exports;
}

}  // namespace wendelin

static Napi::Object InitVirtmem(Napi::Env env, Napi::Object exports) {
  return wendelin::Init(env, exports);
}

NODE_API_MODULE(virtmem, InitVirtmem)
