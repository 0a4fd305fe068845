#include <mann/core/entry.h>

namespace mann {

std::string_view WriteActionName(WriteAction action) {
  switch (action) {
    case WriteAction::kAdd:
      return "ADD";
    case WriteAction::kUpdate:
      return "UPDATE";
    case WriteAction::kDelete:
      return "DELETE";
    case WriteAction::kNoop:
      return "NOOP";
  }
  return "NOOP";
}

std::string_view HistoryActionName(HistoryAction action) {
  switch (action) {
    case HistoryAction::kCreate:
      return "create";
    case HistoryAction::kUpdate:
      return "update";
    case HistoryAction::kDelete:
      return "delete";
    case HistoryAction::kEvict:
      return "evict";
    case HistoryAction::kNoop:
      return "noop";
  }
  return "noop";
}

std::optional<HistoryAction> ParseHistoryAction(std::string_view name) {
  for (auto a : {HistoryAction::kCreate, HistoryAction::kUpdate, HistoryAction::kDelete,
                 HistoryAction::kEvict, HistoryAction::kNoop}) {
    if (HistoryActionName(a) == name) return a;
  }
  return std::nullopt;
}

}  // namespace mann
