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

}  // namespace mann::store
