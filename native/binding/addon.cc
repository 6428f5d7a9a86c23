// The `virtmem` addon: a thin node-addon-api face over the C++ core in native/core.
// Each export converts arguments, calls the core and converts the result; no policy lives here.
#include <napi.h>

#include "core/os.h"

namespace {

Napi::Value OsPageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(wendelin::osPageSize()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("osPageSize", Napi::Function::New(env, OsPageSize, "osPageSize"));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace

NODE_API_MODULE(virtmem, Init)
