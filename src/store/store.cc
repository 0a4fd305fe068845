#include <fmt/format.h>

#include <mann/store/store.h>

namespace mann::store {
namespace {

constexpr OutboxState kOutboxStates[] = {OutboxState::kPending, OutboxState::kDelivered,
                                         OutboxState::kFailed, OutboxState::kDead};

}  // namespace

std::string_view OutboxStateName(OutboxState state) {
  switch (state) {
    case OutboxState::kPending:
      return "pending";
    case OutboxState::kDelivered:
      return "delivered";
    case OutboxState::kFailed:
      return "failed";
    case OutboxState::kDead:
      return "dead";
  }
  return "pending";  // unreachable: every enumerator is handled above
}

std::optional<OutboxState> ParseOutboxState(std::string_view name) {
  for (OutboxState state : kOutboxStates) {
    if (OutboxStateName(state) == name) return state;
  }
  return std::nullopt;
}

Status ValidateMutation(const Mutation& m) {
  for (const StoredEntry& s : m.upserts) {
    if (s.entry.id.empty()) return InvalidArgumentError("upsert: entry id must not be empty");
    if (s.entry.ns.empty()) {
      return InvalidArgumentError(
          fmt::format("upsert {}: namespace must not be empty", s.entry.id));
    }
  }
  for (const HistoryRecord& h : m.history) {
    if (h.entry_id.empty()) return InvalidArgumentError("history: entry_id must not be empty");
  }
  for (const CounterDelta& c : m.counters) {
    if (c.ns.empty()) return InvalidArgumentError("counters: namespace must not be empty");
  }
  return Status::Ok();
}

}  // namespace mann::store
