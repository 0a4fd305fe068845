#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/metrics/registry.h>
#include <mann/server/http_message.h>

namespace mann::server {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

json::value BodyOf(const Response& response) { return json::parse(response.body); }

TEST(HttpMessage, PercentDecodeHandlesEscapesAndPlus) {
  struct Case {
    std::string_view in;
    bool plus_as_space;
    std::string_view want;
  };
  const Case cases[] = {
      {"a%20b", false, "a b"},   {"a+b", false, "a+b"},        {"a+b", true, "a b"},
      {"%2Fx%2f", false, "/x/"}, {"caf%C3%A9", false, "café"}, {"", false, ""},
      {"100%25", true, "100%"},  {"%41%42", false, "AB"},
  };
  for (const auto& c : cases) {
    auto got = PercentDecode(c.in, c.plus_as_space);
    ASSERT_TRUE(got.ok()) << c.in << ": " << got.status().ToString();
    EXPECT_EQ(*got, c.want) << c.in;
  }
}

TEST(HttpMessage, PercentDecodeRejectsMalformedEscapesNamingTheOffset) {
  for (std::string_view bad : {"%", "a%2", "%zz", "ab%g1"}) {
    auto got = PercentDecode(bad, false);
    ASSERT_FALSE(got.ok()) << bad;
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(got.status().message(), HasSubstr("offset " + std::to_string(bad.find('%'))));
  }
}

TEST(HttpMessage, ParseQueryDecodesRepeatsAndBareNames) {
  auto query = ParseQuery("user_id=u%201&tag=a&tag=b+c&&flag&empty=");
  ASSERT_TRUE(query.ok()) << query.status().ToString();
  EXPECT_EQ(query->Get("user_id"), "u 1");
  EXPECT_THAT(query->GetAll("tag"), ::testing::ElementsAre("a", "b c"));
  EXPECT_EQ(query->Get("flag"), "");
  EXPECT_EQ(query->Get("empty"), "");
  EXPECT_FALSE(query->Get("missing").has_value());
  EXPECT_EQ(query->items().size(), 5u);
}

TEST(HttpMessage, ParseQueryNamesTheParameterWithABadEscape) {
  auto query = ParseQuery("ok=1&top_k=%G5");
  ASSERT_FALSE(query.ok());
  EXPECT_THAT(query.status().message(), HasSubstr("query parameter 'top_k'"));
}

TEST(HttpMessage, HeadersCompareNamesCaseInsensitively) {
  Headers headers;
  headers.Add("Content-Type", "application/json");
  headers.Add("X-Tag", "a");
  headers.Add("x-tag", "b");
  EXPECT_EQ(headers.Get("content-type"), "application/json");
  EXPECT_EQ(headers.Get("X-TAG"), "a");
  headers.Set("X-Tag", "c");
  EXPECT_EQ(headers.Get("x-tag"), "c");
  EXPECT_EQ(headers.fields().size(), 2u);
  headers.Remove("CONTENT-TYPE");
  EXPECT_FALSE(headers.Has("Content-Type"));
}

TEST(HttpMessage, ErrorBodiesAreJsonWithDetail) {
  struct Case {
    Response response;
    int status;
    std::string_view detail_part;
  };
  const Case cases[] = {
      {NotFound(), 404, "Not Found"},
      {BadRequest("malformed JSON"), 400, "malformed JSON"},
      {PayloadTooLarge(1024), 413, "1024 bytes"},
      {UnsupportedMediaType("text/plain"), 415, "text/plain"},
      {UnsupportedMediaType(""), 415, "no Content-Type"},
      {RequestHeaderFieldsTooLarge(16384), 431, "16384 bytes"},
      {InternalServerError(), 500, "Internal Server Error"},
      {ServiceUnavailable(), 503, "Service Unavailable"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(c.response.status, c.status);
    EXPECT_EQ(c.response.content_type, "application/json");
    json::value body = BodyOf(c.response);
    ASSERT_TRUE(body.is_object()) << c.response.body;
    EXPECT_THAT(std::string(body.at("detail").as_string()), HasSubstr(c.detail_part));
  }
}

TEST(HttpMessage, JsonBodiesStayUtf8WhenTheyQuoteBytesThatAreNot) {
  // A Content-Type header whose bytes are not UTF-8 is quoted back in the 415's detail.
  Response response = UnsupportedMediaType(
      "application/json\xFA\xF5"
      "Content-Length: 91");
  json::value body = BodyOf(response);  // fails unless the body parses as JSON
  ASSERT_TRUE(body.is_object()) << response.body;
  EXPECT_EQ(std::string(body.at("detail").as_string()),
            "unsupported media type: got Content-Type 'application/json\xEF\xBF\xBD\xEF\xBF\xBD"
            "Content-Length: 91', expected application/json");
  // Text that is UTF-8 already is written unchanged.
  const std::string hanoi = "Hà Nội";
  EXPECT_EQ(Response::Json(json::object{{"detail", hanoi}}).body, "{\"detail\":\"" + hanoi + "\"}");
}

TEST(HttpMessage, MethodNotAllowedListsTheMethodsInAllow) {
  Response response = MethodNotAllowed({"GET", "HEAD", "PUT"});
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(response.headers.Get("Allow"), "GET, HEAD, PUT");
  EXPECT_EQ(BodyOf(response).at("detail"), "Method Not Allowed");
}

TEST(HttpMessage, ValidationErrorHasTheFastApiShape) {
  Response response = ValidationError({
      {{"body", "content"}, "field required", "missing"},
      {{"body", "tags", 2}, "str type expected", "type_error.str"},
  });
  EXPECT_EQ(response.status, 422);
  json::value want = json::parse(R"({"detail": [
      {"loc": ["body", "content"], "msg": "field required", "type": "missing"},
      {"loc": ["body", "tags", 2], "msg": "str type expected", "type": "type_error.str"}]})");
  EXPECT_EQ(BodyOf(response), want);
}

TEST(HttpMessage, ParseJsonBodyReportsTheParserMessageAndOffset) {
  Request request;
  request.body = R"({"content": "x",})";
  auto parsed = ParseJsonBody(request);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status().message(), HasSubstr("malformed JSON in request body at offset"));
  EXPECT_THAT(parsed.status().message(), HasSubstr("syntax error"));

  request.body = R"({"a": 1} trailing)";
  EXPECT_THAT(ParseJsonBody(request).status().message(), HasSubstr("extra data"));
  request.body = "";
  EXPECT_THAT(ParseJsonBody(request).status().message(), HasSubstr("body is empty"));

  request.body = R"({"content": "x", "tags": ["a"]})";
  auto ok = ParseJsonBody(request);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->at("content"), "x");
}

TEST(HttpMessage, JsonContentTypeAcceptsParametersAndCase) {
  EXPECT_TRUE(IsJsonContentType("application/json"));
  EXPECT_TRUE(IsJsonContentType("application/json; charset=utf-8"));
  EXPECT_TRUE(IsJsonContentType("Application/JSON;charset=UTF-8"));
  EXPECT_TRUE(IsJsonContentType(" application/json "));
  EXPECT_FALSE(IsJsonContentType("text/plain"));
  EXPECT_FALSE(IsJsonContentType("application/jsonx"));
  EXPECT_FALSE(IsJsonContentType("application/x-www-form-urlencoded"));
  EXPECT_FALSE(IsJsonContentType(""));
}

TEST(HttpMessage, MetricsResponseServesTheRegistryWithItsContentType) {
  metrics::Registry registry;
  auto counter = registry.AddCounter("mann_test_events_total", "Events seen by the test.");
  ASSERT_TRUE(counter.ok());
  (*counter)->WithLabels().Inc(3);
  Response response = MetricsResponse(registry);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, metrics::kContentType);
  EXPECT_EQ(response.body, registry.Render());
  EXPECT_THAT(response.body, HasSubstr("mann_test_events_total 3\n"));
}

}  // namespace
}  // namespace mann::server
