#include "sqlite_codec.h"

#include <bit>
#include <cstdint>
#include <cstring>

#include <boost/json.hpp>
#include <fmt/format.h>

namespace mann::store::internal {
namespace {

Status BadColumn(std::string_view column, std::string_view entry_id, std::string_view why) {
  return DataLossError(fmt::format(
      "entry {}: column {} is unreadable ({}); the database is damaged: restore a copy from a "
      "backup or move the file aside",
      entry_id, column, why));
}

std::uint32_t ToLittle(std::uint32_t v) {
  if constexpr (std::endian::native == std::endian::little) {
    return v;
  } else {
    return ((v & 0xffu) << 24) | ((v & 0xff00u) << 8) | ((v >> 8) & 0xff00u) | (v >> 24);
  }
}

}  // namespace

std::string EncodeStrings(const std::vector<std::string>& values) {
  boost::json::array array;
  array.reserve(values.size());
  for (const std::string& v : values) array.emplace_back(v);
  return boost::json::serialize(array);
}

std::string EncodeObject(const boost::json::object& object) {
  return boost::json::serialize(object);
}

std::vector<unsigned char> EncodeFloats(std::span<const float> values) {
  std::vector<unsigned char> bytes(values.size() * 4);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint32_t le = ToLittle(std::bit_cast<std::uint32_t>(values[i]));
    std::memcpy(bytes.data() + 4 * i, &le, 4);
  }
  return bytes;
}

Result<std::vector<std::string>> DecodeStrings(std::string_view json, std::string_view column,
                                               std::string_view entry_id) {
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(json, ec);
  if (ec) return BadColumn(column, entry_id, ec.message());
  if (!value.is_array()) return BadColumn(column, entry_id, "not a JSON array");
  std::vector<std::string> out;
  out.reserve(value.get_array().size());
  for (const boost::json::value& item : value.get_array()) {
    if (!item.is_string()) return BadColumn(column, entry_id, "array holds a non-string");
    out.emplace_back(item.get_string());
  }
  return out;
}

Result<boost::json::object> DecodeObject(std::string_view json, std::string_view column,
                                         std::string_view entry_id) {
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(json, ec);
  if (ec) return BadColumn(column, entry_id, ec.message());
  if (!value.is_object()) return BadColumn(column, entry_id, "not a JSON object");
  return std::move(value.get_object());
}

Result<std::vector<float>> DecodeFloats(std::span<const unsigned char> bytes,
                                        std::string_view entry_id) {
  if (bytes.size() % 4 != 0) {
    return BadColumn("embedding", entry_id,
                     fmt::format("{} bytes is not a whole number of float32 values", bytes.size()));
  }
  std::vector<float> out(bytes.size() / 4);
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::uint32_t le = 0;
    std::memcpy(&le, bytes.data() + 4 * i, 4);
    out[i] = std::bit_cast<float>(ToLittle(le));
  }
  return out;
}

}  // namespace mann::store::internal
