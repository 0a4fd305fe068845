#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

#include <mann/encode/use_tokenizer.h>

namespace mann::encode {
namespace {

namespace json = boost::json;

// Ids 0-5 ("\ufffd", <s>, </s>, extra_token_id_1..3) are never matched in text; the reference
// inserts only the pieces from this id on.
constexpr std::size_t kReservedIds = 6;
constexpr char32_t kSeparator = U'\u2581';
constexpr int kSymbolBits = 21;  // every code point fits

std::uint64_t EdgeKey(std::int32_t parent, char32_t symbol) {
  return ((static_cast<std::uint64_t>(parent) << kSymbolBits) | symbol) + 1;
}

std::size_t EdgeSlot(std::uint64_t key, int shift) {
  return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ULL) >> shift);
}

// Code points of valid UTF-8 (Boost.JSON rejects invalid UTF-8 in strings).
std::vector<char32_t> DecodeUtf8(std::string_view s) {
  std::vector<char32_t> out;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(s.data());
  const auto length = static_cast<std::int32_t>(s.size());
  for (std::int32_t i = 0; i < length;) {
    UChar32 c;
    U8_NEXT_OR_FFFD(bytes, i, length, c);
    out.push_back(static_cast<char32_t>(c));
  }
  return out;
}

std::int32_t Utf16Length(const std::vector<char32_t>& symbols) {
  std::int32_t n = 0;
  for (char32_t c : symbols) n += c > 0xFFFF ? 2 : 1;
  return n;
}

std::string Describe(const json::value& v) {
  std::string s = json::serialize(v);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

}  // namespace

Result<UseTokenizer> UseTokenizer::FromVocabFile(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    return NotFoundError(fmt::format(
        "USE vocabulary {} does not exist; run scripts/fetch-model.sh to fetch the model", path));
  }
  if (std::filesystem::is_directory(status)) {
    return FailedPreconditionError(
        fmt::format("USE vocabulary {} is a directory, not vocab.json", path));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  if (in.is_open()) content << in.rdbuf();
  if (!in.is_open() || in.bad()) {
    return FailedPreconditionError(
        fmt::format("USE vocabulary {} could not be read: {}", path, std::strerror(errno)));
  }
  return FromVocabJson(content.str(), path);
}

Result<UseTokenizer> UseTokenizer::FromVocabJson(std::string_view text, const std::string& origin) {
  UErrorCode icu_status = U_ZERO_ERROR;
  const icu::Normalizer2* nfkc = icu::Normalizer2::getNFKCInstance(icu_status);
  if (U_FAILURE(icu_status) || nfkc == nullptr) {
    return FailedPreconditionError(
        fmt::format("ICU NFKC normalizer unavailable ({}); check the libicu data package",
                    u_errorName(icu_status)));
  }

  // The lattice compares sums with >=, so scores must be the doubles node parses. Boost 1.81
  // has no precise-parsing option, but its doubles equal the correctly rounded ones for all
  // 8000 shipped scores (checked against Python's float()).
  std::error_code ec;
  const json::value doc = json::parse(text, ec);
  if (ec) {
    return DataLossError(
        fmt::format("USE vocabulary {} is not valid JSON: {}", origin, ec.message()));
  }
  if (!doc.is_array() || doc.get_array().empty()) {
    return DataLossError(fmt::format(
        "USE vocabulary {} must be a non-empty JSON array of [piece, score-or-null] pairs",
        origin));
  }
  const json::array& entries = doc.get_array();

  UseTokenizer tokenizer;
  tokenizer.nfkc_ = nfkc;
  tokenizer.nodes_.emplace_back();  // the root
  tokenizer.backtrack_length_.reserve(entries.size());
  std::unordered_map<std::uint64_t, std::int32_t> edges;

  for (std::size_t id = 0; id < entries.size(); ++id) {
    const json::value& entry = entries[id];
    const json::array* pair = entry.if_array();
    if (pair == nullptr || pair->size() != 2 || !(*pair)[0].is_string() ||
        !((*pair)[1].is_number() || (*pair)[1].is_null())) {
      return DataLossError(fmt::format(
          "USE vocabulary {}: entry {} must be [piece, score-or-null] (a string and a number or "
          "null), got {}",
          origin, id, Describe(entry)));
    }
    if (id > static_cast<std::size_t>(INT32_MAX)) {
      return DataLossError(fmt::format("USE vocabulary {} has more than 2^31 entries", origin));
    }
    const std::vector<char32_t> symbols = DecodeUtf8((*pair)[0].get_string());
    // A null score acts as 0: the reference adds null to a number.
    const double score = (*pair)[1].is_null() ? 0.0 : (*pair)[1].to_number<double>();
    tokenizer.backtrack_length_.push_back(std::max(Utf16Length(symbols), 1));
    if (id < kReservedIds) continue;

    // Walk down, creating nodes; a later duplicate overwrites the earlier score and id.
    std::int32_t node = 0;
    for (char32_t symbol : symbols) {
      auto [it, added] = edges.try_emplace(EdgeKey(node, symbol),
                                           static_cast<std::int32_t>(tokenizer.nodes_.size()));
      if (added) tokenizer.nodes_.emplace_back();
      node = it->second;
    }
    if (node != 0) tokenizer.nodes_[node] = Node{score, static_cast<std::int32_t>(id)};
  }

  // Flatten the edges into a table at most half full.
  const std::size_t capacity = std::bit_ceil(std::max<std::size_t>(2 * edges.size(), 16));
  tokenizer.edge_shift_ = 64 - std::countr_zero(capacity);
  tokenizer.edge_keys_.assign(capacity, 0);
  tokenizer.edge_children_.assign(capacity, -1);
  for (const auto& [key, child] : edges) {
    std::size_t slot = EdgeSlot(key, tokenizer.edge_shift_);
    while (tokenizer.edge_keys_[slot] != 0) slot = (slot + 1) & (capacity - 1);
    tokenizer.edge_keys_[slot] = key;
    tokenizer.edge_children_[slot] = child;
  }
  return tokenizer;
}

std::int32_t UseTokenizer::Child(std::int32_t node, char32_t symbol) const {
  const std::uint64_t key = EdgeKey(node, symbol);
  const std::size_t mask = edge_keys_.size() - 1;
  for (std::size_t slot = EdgeSlot(key, edge_shift_);; slot = (slot + 1) & mask) {
    const std::uint64_t k = edge_keys_[slot];
    if (k == key) return edge_children_[slot];
    if (k == 0) return -1;
  }
}

void UseTokenizer::Prepare(std::string_view text, std::vector<char32_t>* symbols) const {
  symbols->clear();
  if (text.empty()) return;
  symbols->reserve(text.size() + 1);
  symbols->push_back(kSeparator);
  auto push = [symbols](char32_t c) { symbols->push_back(c == U' ' ? kSeparator : c); };

  // NFKC leaves ASCII unchanged, and most input is ASCII.
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
    for (char c : text) push(static_cast<char32_t>(c));
    return;
  }

  // fromUTF8 replaces each ill-formed sequence by U+FFFD, as node's UTF-8 decoder does. Texts
  // beyond 2 GiB, which ICU cannot take in one piece, are cut there.
  const auto length = static_cast<std::int32_t>(
      std::min<std::size_t>(text.size(), static_cast<std::size_t>(INT32_MAX)));
  const icu::UnicodeString decoded =
      icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), length));
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeString normalized = nfkc_->normalize(decoded, status);
  if (U_FAILURE(status)) normalized = decoded;  // only on allocation failure
  if (normalized.isEmpty()) {
    symbols->clear();
    return;
  }
  const char16_t* units = normalized.getBuffer();
  const std::int32_t n = normalized.length();
  for (std::int32_t i = 0; i < n;) {
    UChar32 c;
    U16_NEXT(units, i, n, c);
    push(static_cast<char32_t>(c));
  }
}

std::vector<std::int32_t> UseTokenizer::Encode(std::string_view text) const {
  std::vector<char32_t> symbols;
  Prepare(text, &symbols);
  const std::size_t n = symbols.size();
  if (n == 0) return {};

  // The lattice, relaxed start by start. The reference loops over end positions and, within
  // one, over starts in ascending order; relaxing forward applies the same updates to each
  // end in the same order, and best[start] is final before any edge leaves it. best == 0 means
  // "unset" in the reference, even when 0 is a real sum: kept on purpose.
  std::vector<double> best(n + 1, 0.0);
  std::vector<std::int32_t> words(n + 1, 0);
  auto relax = [&](std::size_t end, double score, std::int32_t id) {
    if (best[end] == 0.0 || score >= best[end]) {
      best[end] = score;
      words[end] = id;
    }
  };
  for (std::size_t start = 0; start < n; ++start) {
    bool matched = false;
    std::int32_t node = 0;
    for (std::size_t end = start; end < n; ++end) {
      node = Child(node, symbols[end]);
      if (node < 0) break;
      const Node& piece = nodes_[node];
      if (piece.id < 0) continue;
      matched = true;
      relax(end + 1, piece.score + best[start], piece.id);
    }
    // A symbol that starts no piece becomes a one-symbol unknown with score 0 and id 0.
    if (!matched) relax(start + 1, best[start], 0);
  }

  // Backtrack by each chosen piece's length (the reference's, see backtrack_length_), dropping
  // an unknown that directly follows another, then restore reading order.
  std::vector<std::int32_t> ids;
  bool previous_unknown = false;
  for (std::int64_t at = static_cast<std::int64_t>(n); at > 0;) {
    const std::int32_t id = words[static_cast<std::size_t>(at)];
    if (!(previous_unknown && id == 0)) ids.push_back(id);
    previous_unknown = id == 0;
    at -= backtrack_length_[static_cast<std::size_t>(id)];
  }
  std::reverse(ids.begin(), ids.end());
  return ids;
}

}  // namespace mann::encode
