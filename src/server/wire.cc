#include "wire.h"

#include <algorithm>
#include <utility>

#include <boost/beast/core/string.hpp>

namespace mann::server::internal {

bool IsSaneRequestId(std::string_view id) {
  return !id.empty() && id.size() <= 128 &&
         std::all_of(id.begin(), id.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

std::string RequestIdOf(const boost::beast::http::request_header<>& header, IdGenerator& ids) {
  // The first field of that name in the order ToRequest keeps, as Headers::Get finds it.
  for (const auto& field : header) {
    if (boost::beast::iequals(field.name_string(), "X-Request-ID")) {
      return IsSaneRequestId(field.value()) ? std::string(field.value()) : ids.Next();
    }
  }
  return ids.Next();
}

Request ToRequest(const boost::beast::http::request_header<>& header, std::string body,
                  std::string client_address, std::string request_id) {
  Request request;
  request.method = std::string(header.method_string());
  request.target = std::string(header.target());
  request.version = static_cast<int>(header.version());
  request.client_address = std::move(client_address);
  for (const auto& field : header) {
    request.headers.Add(std::string(field.name_string()), std::string(field.value()));
  }
  request.body = std::move(body);
  request.request_id = std::move(request_id);
  return request;
}

}  // namespace mann::server::internal
