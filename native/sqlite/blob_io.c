// sqlite_blob.node: SQLite's incremental blob I/O for @wendelin/zodb's SQLiteStorage, which
// better-sqlite3 does not expose. One shared object is both
//   - a SQLite loadable extension (entry point sqlite3_sqliteblob_init, the name SQLite derives
//     from the file's) adding SQL functions that read part of a blob value without reading the
//     rest of it, and one that writes into a blob value in place, and
//   - a Node-API module through which JS hands those functions the memory to read into or
//     write from.
// SQLite dlopen()s the same file Node loaded, so both see the same thread-local state.
//
// Why: a value spanning overflow pages is read whole (every page, copied twice, then into a
// JS Buffer) as soon as a statement names its column, even for substr(). sqlite3_blob_read
// reads only the pages of the range (the pages before it are visited for their next-page
// link only) and, for pages in the database file, straight into the destination. The other
// way, a bound blob is copied three times before it reaches the page cache (the bind, the
// row's record, the cells); a row inserted with zeroblob(n) and filled with sqlite3_blob_write
// costs a memset of its pages and one copy.
//
// SQL (all DIRECTONLY: not usable from views, triggers or schema):
//   wendelin_blob_range(table, column, rowid, offset, length) -> blob
//       bytes [offset, offset + length) of the value, fewer where it ends first.
//   wendelin_blob_read(table, column, rowid, offset, slot) -> integer
//       copies bytes [offset, ...) of the value into buffer `slot` (as many as fit, fewer
//       where the value ends first) and returns how many; an error when no buffer is set.
//   wendelin_blob_write(table, column, rowid, offset, slot) -> integer
//       copies buffer `slot` into the value at `offset` and returns its length; an error when
//       it does not fit (a blob's size is fixed when its row is written: insert zeroblob(n)).
// JS (Node-API):
//   setBuffers(Uint8Array[]) — the buffers (slots 0, 1, ...) of this thread's next statement;
//   clearBuffers() — forget them (before the arrays may be collected or moved).
// Buffers live in thread-local storage: each thread runs its own connection, and a statement
// runs on the thread that set them, synchronously, between the two calls.

#include <stdint.h>
#include <string.h>

#include <node_api.h>
#include <sqlite3ext.h>

SQLITE_EXTENSION_INIT1

#define MAX_BUFFERS 8

typedef struct {
  uint8_t* data;
  size_t length;
} Buffer;

static _Thread_local Buffer buffers[MAX_BUFFERS];
static _Thread_local int bufferCount;

// ---- SQL functions --------------------------------------------------------------------------

// Argument `i` if it is a whole number >= 0 (an INTEGER, or a REAL as better-sqlite3 binds
// JS numbers), else -1.
static sqlite3_int64 naturalArg(sqlite3_value** argv, int i) {
  switch (sqlite3_value_type(argv[i])) {
    case SQLITE_INTEGER: {
      sqlite3_int64 v = sqlite3_value_int64(argv[i]);
      return v < 0 ? -1 : v;
    }
    case SQLITE_FLOAT: {
      double d = sqlite3_value_double(argv[i]);
      if (!(d >= 0 && d <= 9007199254740991.0)) return -1;  // NaN too
      sqlite3_int64 v = (sqlite3_int64)d;
      return (double)v == d ? v : -1;
    }
    default:
      return -1;
  }
}

// Opens the blob named by the first three arguments (for writing too if `writable`); on
// failure sets the error and returns 0.
static sqlite3_blob* openBlob(sqlite3_context* ctx, sqlite3_value** argv, int writable) {
  const char* table = (const char*)sqlite3_value_text(argv[0]);
  const char* column = (const char*)sqlite3_value_text(argv[1]);
  sqlite3_int64 rowid = naturalArg(argv, 2);
  if (table == NULL || column == NULL || rowid < 0) {
    sqlite3_result_error(ctx, "wendelin_blob: table and column names and a rowid >= 0 expected", -1);
    return NULL;
  }
  sqlite3* db = sqlite3_context_db_handle(ctx);
  sqlite3_blob* blob = NULL;
  int rc = sqlite3_blob_open(db, "main", table, column, rowid, writable, &blob);
  if (rc != SQLITE_OK) {
    sqlite3_result_error(ctx, sqlite3_errmsg(db), -1);
    sqlite3_result_error_code(ctx, rc);
    if (blob != NULL) sqlite3_blob_close(blob);
    return NULL;
  }
  return blob;
}

// How many bytes of [offset, offset + length) lie within `blob`. Any offset and length >= 0
// will do (a value is under 2 GiB: what lies past its end is simply not there, as for substr).
static sqlite3_int64 clippedLength(sqlite3_blob* blob, sqlite3_int64 offset, sqlite3_int64 length) {
  sqlite3_int64 size = sqlite3_blob_bytes(blob);
  return offset >= size ? 0 : (length < size - offset ? length : size - offset);
}

// Reads [offset, offset + length) of `blob`, clipped to its end, into `dest`; closes it.
// Returns the bytes read, or -1 with the error set.
static sqlite3_int64 readClipped(sqlite3_context* ctx, sqlite3_blob* blob, sqlite3_int64 offset, sqlite3_int64 length, void* dest) {
  sqlite3_int64 n = clippedLength(blob, offset, length);
  int rc = n > 0 ? sqlite3_blob_read(blob, dest, (int)n, (int)offset) : SQLITE_OK;
  sqlite3_blob_close(blob);
  if (rc != SQLITE_OK) {
    sqlite3_result_error_code(ctx, rc);
    return -1;
  }
  return n;
}

static void blobRange(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  (void)argc;
  sqlite3_int64 offset = naturalArg(argv, 3), length = naturalArg(argv, 4);
  if (offset < 0 || length < 0) {
    sqlite3_result_error(ctx, "wendelin_blob_range: offset and length must be integers >= 0", -1);
    return;
  }
  sqlite3_blob* blob = openBlob(ctx, argv, 0);
  if (blob == NULL) return;
  sqlite3_int64 n = clippedLength(blob, offset, length);
  void* buf = sqlite3_malloc64(n > 0 ? (sqlite3_uint64)n : 1);
  if (buf == NULL) {
    sqlite3_blob_close(blob);
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (readClipped(ctx, blob, offset, n, buf) < 0) {
    sqlite3_free(buf);
    return;
  }
  sqlite3_result_blob64(ctx, buf, (sqlite3_uint64)n, sqlite3_free);
}

// The arguments wendelin_blob_read and wendelin_blob_write share: the blob (arguments 0-2),
// opened for writing too if `writable`, an offset >= 0 (argument 3) and a buffer slot set on
// this thread (argument 4). NULL, with the error set (named after `fn`), when one is wrong.
static sqlite3_blob* openWithBuffer(sqlite3_context* ctx, sqlite3_value** argv, const char* fn, int writable, sqlite3_int64* offset, const Buffer** buffer) {
  char error[128];
  *offset = naturalArg(argv, 3);
  if (*offset < 0) {
    sqlite3_snprintf(sizeof error, error, "%s: offset must be an integer >= 0", fn);
    sqlite3_result_error(ctx, error, -1);
    return NULL;
  }
  sqlite3_int64 slot = naturalArg(argv, 4);
  if (slot < 0 || slot >= bufferCount) {
    sqlite3_snprintf(sizeof error, error, "%s: no such buffer on this thread (setBuffers first)", fn);
    sqlite3_result_error(ctx, error, -1);
    return NULL;
  }
  *buffer = &buffers[slot];
  return openBlob(ctx, argv, writable);
}

static void blobRead(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  (void)argc;
  sqlite3_int64 offset;
  const Buffer* b;
  sqlite3_blob* blob = openWithBuffer(ctx, argv, "wendelin_blob_read", 0, &offset, &b);
  if (blob == NULL) return;
  sqlite3_int64 n = readClipped(ctx, blob, offset, (sqlite3_int64)b->length, b->data);
  if (n >= 0) sqlite3_result_int64(ctx, n);
}

static void blobWrite(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  (void)argc;
  sqlite3_int64 offset;
  const Buffer* b;
  sqlite3_blob* blob = openWithBuffer(ctx, argv, "wendelin_blob_write", 1, &offset, &b);
  if (blob == NULL) return;
  sqlite3_int64 size = sqlite3_blob_bytes(blob);
  if ((sqlite3_int64)b->length > size || offset > size - (sqlite3_int64)b->length) {
    sqlite3_blob_close(blob);
    sqlite3_result_error(ctx, "wendelin_blob_write: the buffer does not fit in the value at that offset", -1);
    return;
  }
  int rc = b->length > 0 ? sqlite3_blob_write(blob, b->data, (int)b->length, (int)offset) : SQLITE_OK;
  int closed = sqlite3_blob_close(blob);
  if (rc == SQLITE_OK) rc = closed;
  if (rc != SQLITE_OK) {
    sqlite3* db = sqlite3_context_db_handle(ctx);
    sqlite3_result_error(ctx, sqlite3_errmsg(db), -1);
    sqlite3_result_error_code(ctx, rc);
    return;
  }
  sqlite3_result_int64(ctx, (sqlite3_int64)b->length);
}

#ifdef _WIN32
__declspec(dllexport)
#else
__attribute__((visibility("default")))
#endif
int sqlite3_sqliteblob_init(sqlite3* db, char** errorMessage, const sqlite3_api_routines* api) {
  (void)errorMessage;
  SQLITE_EXTENSION_INIT2(api);
  const int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  int rc = sqlite3_create_function_v2(db, "wendelin_blob_range", 5, flags, NULL, blobRange, NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_create_function_v2(db, "wendelin_blob_read", 5, flags, NULL, blobRead, NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_create_function_v2(db, "wendelin_blob_write", 5, flags, NULL, blobWrite, NULL, NULL, NULL);
  return rc;
}

// ---- Node-API -------------------------------------------------------------------------------

static napi_value throwError(napi_env env, const char* message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

static napi_value setBuffers(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value list;
  if (napi_get_cb_info(env, info, &argc, &list, NULL, NULL) != napi_ok || argc < 1) return throwError(env, "setBuffers: an array of Uint8Array expected");
  bool isArray = false;
  uint32_t count = 0;
  if (napi_is_array(env, list, &isArray) != napi_ok || !isArray || napi_get_array_length(env, list, &count) != napi_ok)
    return throwError(env, "setBuffers: an array of Uint8Array expected");
  if (count > MAX_BUFFERS) return throwError(env, "setBuffers: at most 8 buffers");
  bufferCount = 0;  // nothing usable until every one is checked
  Buffer found[MAX_BUFFERS];
  for (uint32_t i = 0; i < count; i++) {
    napi_value item;
    bool isTyped = false;
    napi_typedarray_type type;
    size_t length = 0;
    void* data = NULL;
    if (napi_get_element(env, list, i, &item) != napi_ok || napi_is_typedarray(env, item, &isTyped) != napi_ok || !isTyped ||
        napi_get_typedarray_info(env, item, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array)
      return throwError(env, "setBuffers: every buffer must be a Uint8Array");
    if (data == NULL && length > 0) return throwError(env, "setBuffers: a buffer is detached");
    found[i].data = (uint8_t*)data;
    found[i].length = length;
  }
  memcpy(buffers, found, sizeof(Buffer) * count);
  bufferCount = (int)count;
  return NULL;
}

static napi_value clearBuffers(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  memset(buffers, 0, sizeof buffers);
  bufferCount = 0;
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"setBuffers", NULL, setBuffers, NULL, NULL, NULL, napi_default, NULL},
      {"clearBuffers", NULL, clearBuffers, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
