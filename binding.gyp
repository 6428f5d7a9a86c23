{
  "targets": [
    {
      "target_name": "virtmem",
      "sources": [
        "native/core/os.cc",
        "native/core/ram.cc",
        "native/core/virtmem.cc",
        "native/core/pagefault.cc",
        "native/core/pattern_file.cc",
        "native/binding/loader_pool.cc",
        "native/binding/addon.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["OS!='linux'", { "sources": [] }]
      ]
    },
    {
      "target_name": "sqlite_blob",
      "sources": ["native/sqlite/blob_io.c"],
      "include_dirs": [
        "<!(node -p \"require('path').join(require('path').dirname(require.resolve('better-sqlite3/package.json', { paths: ['packages/zodb'] })), 'deps', 'sqlite3')\")"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-fvisibility=hidden"],
      "cflags_c": ["-std=c11", "-O2", "-Wall", "-Wextra"],
      "conditions": [
        ["OS!='linux'", { "sources": [] }]
      ]
    }
  ]
}
