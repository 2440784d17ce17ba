#pragma once

#include "outbox/dedupe/key_holds.hpp"

#include <string>
#include <string_view>

namespace outbox::consumer::detail {

/// Per-key ordering over the retry tiers. While a key has records parked in tiers, later records of that key
/// are parked behind them (unattempted), and a parked record runs only once it is the oldest of its key.
/// The entries live in key_holds (the dedupe store's database or Redis), so every instance of the group sees
/// them, and rebalances and restarts keep them.
///
///   holds[K] = [A (tier 2), B (tier 0, held), C (tier 0, held)]
///   D of K arrives          -> not the head: parked behind, holds[K] = [A, B, C, D]
///   B's copy comes due       -> not the head (A is): parked again into the same tier
///   A done or dead-lettered  -> removed; B is the head and runs when its copy comes due, then C, then D
class key_order {
 public:
  key_order(dedupe::key_holds& holds, std::string group);

  /// Whose turn it is for a record of a key.
  enum class turn {
    free,    ///< the key holds nothing: run
    first,   ///< `me` is the key's oldest entry: run, and resolve it afterwards
    behind,  ///< an earlier record of the key is parked: park `me` behind it
  };

  /// The turn of the record of `key` that first arrived at `me`. Throws outbox_error when the holds' backend
  /// fails (the caller waits and asks again).
  [[nodiscard]] turn turn_of(std::string_view topic, std::string_view key, dedupe::held_record me);
  /// Registers `me` before its copy goes to a tier (so a crash before the copy lands holds nothing wrongly:
  /// the record comes again and finds itself the head).
  void parked(std::string_view topic, std::string_view key, dedupe::held_record me);
  /// `me` is done, a duplicate or dead-lettered: the next entry of the key becomes the head.
  void resolved(std::string_view topic, std::string_view key, dedupe::held_record me);

 private:
  dedupe::key_holds& m_holds;
  std::string m_group;
};

}  // namespace outbox::consumer::detail
