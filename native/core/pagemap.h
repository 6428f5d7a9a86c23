// PageMap: page offset → Page, per file handle.
//
// wendelin.core uses a radix tree here; an ordered map gives the same get/set/del/clear and
// in-order iteration (writeout stores pages in ascending order) with less code of our own.
#pragma once

#include <cstdint>
#include <map>

#include "core/page.h"

namespace wendelin {

class PageMap {
 public:
  Page* get(std::uint64_t pgoffset) const {
    auto it = map_.find(pgoffset);
    return it == map_.end() ? nullptr : it->second;
  }
  void set(std::uint64_t pgoffset, Page* page) { map_[pgoffset] = page; }
  // Removes the entry only if it still points to `page` (a newer page may have replaced it).
  void delIf(std::uint64_t pgoffset, Page* page) {
    auto it = map_.find(pgoffset);
    if (it != map_.end() && it->second == page) map_.erase(it);
  }
  void del(std::uint64_t pgoffset) { map_.erase(pgoffset); }
  void clear() { map_.clear(); }
  bool empty() const { return map_.empty(); }
  std::size_t size() const { return map_.size(); }

  // Pages with offsets in [lo, hi), ascending: as many steps as pages there, however wide the range.
  template <typename F>
  void forEachIn(std::uint64_t lo, std::uint64_t hi, F&& f) const {
    for (auto it = map_.lower_bound(lo); it != map_.end() && it->first < hi; ++it) f(it->first, it->second);
  }

  template <typename F>
  void forEach(F&& f) const {
    for (const auto& entry : map_) f(entry.first, entry.second);
  }

 private:
  std::map<std::uint64_t, Page*> map_;
};

}  // namespace wendelin
