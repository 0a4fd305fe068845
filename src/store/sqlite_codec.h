// Column encodings of the SQLite store, private to the store module.
//
// Tags, terms and metadata are JSON text (Boost.JSON); embeddings are little-endian float32
// blobs. Decoders return DataLoss naming the entry, since a bad value means the file was damaged
// or written by something other than mann.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include <mann/core/status.h>

namespace mann::store::internal {

std::string EncodeStrings(const std::vector<std::string>& values);
std::string EncodeObject(const boost::json::object& object);
std::vector<unsigned char> EncodeFloats(std::span<const float> values);

// `column` and `entry_id` only name the culprit in the error message.
Result<std::vector<std::string>> DecodeStrings(std::string_view json, std::string_view column,
                                               std::string_view entry_id);
Result<boost::json::object> DecodeObject(std::string_view json, std::string_view column,
                                         std::string_view entry_id);
Result<std::vector<float>> DecodeFloats(std::span<const unsigned char> bytes,
                                        std::string_view entry_id);

}  // namespace mann::store::internal
