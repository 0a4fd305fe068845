// The OpenAPI document of the REST API. Written by hand, apart from the routes' registration in
// api.cc, so that the test comparing the two is a real check.

#include <initializer_list>
#include <string>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <mann/api/api.h>
#include <mann/core/version.h>

namespace mann::api {
namespace {

namespace json = boost::json;

json::object Ref(std::string_view schema) {
  return {{"$ref", "#/components/schemas/" + std::string(schema)}};
}

json::object JsonContent(json::object schema) {
  return {{"application/json", {{"schema", std::move(schema)}}}};
}

json::object Reply(std::string_view description, json::object schema) {
  return {{"description", description}, {"content", JsonContent(std::move(schema))}};
}

json::object Error(std::string_view description) { return Reply(description, Ref("Error")); }

json::object Param(std::string_view name, std::string_view in, json::object schema,
                   std::string_view description, bool required = false) {
  return {{"name", name},
          {"in", in},
          {"required", required || in == "path"},
          {"description", description},
          {"schema", std::move(schema)}};
}

json::object IdParam() {
  return Param("id", "path", {{"type", "string"}}, "The memory's id (a UUID)", true);
}

json::object UserQuery() {
  return Param("user_id", "query", {{"type", "string"}, {"default", "default"}},
               "Namespace (user or tenant); \"default\" when absent");
}

// One operation: what it does, its parameters, its body schema (empty: none) and its answers.
json::object Operation(std::string_view summary, std::initializer_list<json::object> params,
                       std::string_view body_schema, json::object responses) {
  json::object op;
  op["summary"] = summary;
  if (params.size() > 0) {
    json::array list;
    for (const auto& p : params) list.push_back(p);
    op["parameters"] = std::move(list);
  }
  if (!body_schema.empty()) {
    op["requestBody"] = {{"required", true}, {"content", JsonContent(Ref(body_schema))}};
    responses["400"] = Error("Malformed JSON");
    responses["415"] = Error("Content-Type is not application/json");
    responses["422"] = Reply("Validation error, one item per bad field", Ref("ValidationError"));
  }
  op["responses"] = std::move(responses);
  return op;
}

json::object Str() { return {{"type", "string"}}; }
json::object Num() { return {{"type", "number"}}; }
json::object Int() { return {{"type", "integer"}}; }
json::object Strings() { return {{"type", "array"}, {"items", Str()}}; }

json::object Object(json::object properties, std::initializer_list<const char*> required = {}) {
  json::object o{{"type", "object"}, {"properties", std::move(properties)}};
  if (required.size() > 0) {
    json::array names;
    for (const char* r : required) names.emplace_back(r);
    o["required"] = std::move(names);
  }
  return o;
}

json::object Schemas() {
  json::object s;
  s["Error"] = Object({{"detail", json::object{}}}, {"detail"});
  s["FieldError"] = Object(
      {{"loc", {{"type", "array"}, {"items", json::object{}}}}, {"msg", Str()}, {"type", Str()}},
      {"loc", "msg", "type"});
  s["ValidationError"] =
      Object({{"detail", {{"type", "array"}, {"items", Ref("FieldError")}}}}, {"detail"});
  const json::object health_state = {{"type", "string"},
                                     {"enum", {"healthy", "degraded", "unhealthy"}}};
  s["Health"] = Object({{"status", Str()},
                        {"timestamp", Str()},
                        {"memory_count", Int()},
                        {"memory_utilization", Num()},
                        {"uptime", Num()},
                        {"version", Str()},
                        {"checks", Ref("HealthReport")}});
  s["HealthReport"] = Object({{"status", health_state},
                              {"checks",
                               {{"type", "array"},
                                {"items", Object({{"name", Str()},
                                                  {"status", health_state},
                                                  {"reason", Str()},
                                                  {"duration_seconds", Num()}},
                                                 {"name", "status", "reason"})}}}},
                             {"status", "checks"});
  const json::object level = {{"type", "string"},
                              {"enum", {"info", "warning", "error", "critical"}}};
  const json::object nullable_time = {{"type", "string"}, {"nullable", true}};
  const json::object nullable_number = {{"type", "number"}, {"nullable", true}};
  s["ActiveAlert"] = Object({{"dedup_key", Str()},
                             {"rule", Str()},
                             {"subject", Str()},
                             {"level", level},
                             {"state", {{"type", "string"}, {"enum", {"pending", "firing"}}}},
                             {"value", Num()},
                             {"threshold", Num()},
                             {"message", Str()},
                             {"started_at", Str()},
                             {"fired_at", nullable_time},
                             {"last_notified_at", nullable_time}},
                            {"dedup_key", "rule", "level", "state"});
  s["AlertEvent"] =
      Object({{"sequence", Int()},
              {"kind", {{"type", "string"}, {"enum", {"trigger", "renotify", "resolve"}}}},
              {"dedup_key", Str()},
              {"rule", Str()},
              {"subject", Str()},
              {"level", level},
              {"value", nullable_number},
              {"threshold", Num()},
              {"message", Str()},
              {"summary", Str()},
              {"started_at", Str()},
              {"at", Str()},
              {"withheld", {{"type", "boolean"}}},
              {"taken_over", {{"type", "boolean"}}}},
             {"sequence", "kind", "dedup_key", "level", "at"});
  s["Alerts"] = Object({{"enabled", {{"type", "boolean"}}},
                        {"active", {{"type", "array"}, {"items", Ref("ActiveAlert")}}},
                        {"history", {{"type", "array"}, {"items", Ref("AlertEvent")}}}},
                       {"enabled", "active", "history"});
  s["MemoryCreate"] = Object(
      {{"content", {{"type", "string"}, {"minLength", 1}}},
       {"context", {{"type", "string"}, {"default", ""}}},
       {"tags", Strings()},
       {"importance_weight", {{"type", "number"}, {"minimum", 0}, {"maximum", 3}, {"default", 1}}},
       {"metadata", {{"type", "object"}}},
       {"user_id", Str()}},
      {"content"});
  s["MemoryUpdate"] =
      Object({{"memory_id", Str()},
              {"content", {{"type", "string"}, {"minLength", 1}}},
              {"context", Str()},
              {"tags", Strings()},
              {"importance_weight", {{"type", "number"}, {"minimum", 0}, {"maximum", 3}}},
              {"metadata", {{"type", "object"}}},
              {"user_id", Str()}});
  s["NamespaceBody"] = Object({{"user_id", Str()}});
  s["WriteResult"] =
      Object({{"memory_id", Str()},
              {"status",
               {{"type", "string"},
                {"enum", {"created", "updated", "unchanged", "deleted", "forgotten"}}}},
              {"version", Int()}},
             {"memory_id", "status"});
  s["Memory"] = Object({{"memory_id", Str()},
                        {"id", Str()},
                        {"namespace", Str()},
                        {"content", Str()},
                        {"context", Str()},
                        {"tags", Strings()},
                        {"metadata", {{"type", "object"}}},
                        {"importance_weight", Num()},
                        {"usage_count", Int()},
                        {"created_at", Str()},
                        {"updated_at", Str()},
                        {"last_access_at", Str()},
                        {"version", Int()},
                        {"content_hash", Str()},
                        {"language", Str()}});
  s["MemoryPage"] =
      Object({{"memories", {{"type", "array"}, {"items", Ref("Memory")}}}, {"next_cursor", Str()}});
  s["History"] = Object(
      {{"memory_id", Str()}, {"history", {{"type", "array"}, {"items", {{"type", "object"}}}}}});
  s["SearchRequest"] = Object(
      {{"query", {{"type", "string"}, {"minLength", 1}}},
       {"top_k", {{"type", "integer"}, {"minimum", 1}, {"maximum", 50}, {"default", 5}}},
       {"min_similarity", {{"type", "number"}, {"minimum", 0}, {"maximum", 1}, {"default", 0}}},
       {"user_id", Str()}},
      {"query"});
  s["SearchHit"] = Object({{"memory_id", Str()},
                           {"content", Str()},
                           {"context", Str()},
                           {"importance_weight", Num()},
                           {"usage_count", Int()},
                           {"tags", Strings()},
                           {"timestamp", Str()},
                           {"similarity", Num()},
                           {"attention_weight", Num()}});
  s["QueryRequest"] = Object({{"input_text", {{"type", "string"}, {"minLength", 1}}},
                              {"retrieve_memories", {{"type", "boolean"}, {"default", true}}},
                              {"session_id", Str()},
                              {"user_id", Str()},
                              {"stream",
                               {{"type", "boolean"},
                                {"default", false},
                                {"description",
                                 "Answer text/event-stream: `chunk` events with {\"text\"} "
                                 "pieces of the reply in order, then one `done` event whose data "
                                 "is the QueryResponse"}}}},
                             {"input_text"});
  s["QueryResponse"] = Object({{"output", Str()},
                               {"memory_info", {{"type", "array"}, {"items", Ref("SearchHit")}}},
                               {"processing_time", Num()},
                               {"memory_utilization", Num()},
                               {"session_id", Str()}});
  s["Statistics"] = Object({{"user_id", Str()},
                            {"total_memories", Int()},
                            {"memory_utilization", Num()},
                            {"memory_size", Int()},
                            {"max_memory_capacity", Int()},
                            {"reads", Int()},
                            {"writes", Int()},
                            {"evictions", Int()},
                            {"write_decisions", {{"type", "object"}}},
                            {"overall", {{"type", "object"}}}});
  return s;
}

}  // namespace

json::value OpenApiDocument() {
  const json::object not_found = Error("No memory with this id in the namespace");
  const json::object unavailable = Error("The store failed; retry later");
  json::object paths;

  paths["/health"] = {
      {"get",
       Operation("Liveness and a summary of the bank; with detail, the health checks",
                 {Param("detail", "query", {{"type", "boolean"}, {"default", false}},
                        "Run the health checks (memory_bank, storage, system, pager) and add "
                        "their report as \"checks\"; each check is bounded by a time budget")},
                 "",
                 {{"200", Reply("Alive (whatever the checks say)", Ref("Health"))},
                  {"422", Reply("detail is not a boolean", Ref("ValidationError"))}})}};
  paths["/ready"] = {
      {"get", Operation("Readiness: the store answers and the server is not shutting down", {}, "",
                        {{"200", Reply("Ready", Object({{"status", Str()}}))},
                         {"503", Error("Draining or storage unavailable")}})}};
  paths["/metrics"] = {
      {"get", Operation("Prometheus metrics (text format 0.0.4)", {}, "",
                        {{"200",
                          {{"description", "The exposition"},
                           {"content", {{"text/plain", {{"schema", Str()}}}}}}}})}};
  paths["/openapi.json"] = {
      {"get", Operation("This document", {}, "",
                        {{"200", Reply("OpenAPI 3 document", {{"type", "object"}})}})}};

  paths["/memories"] = {
      {"post", Operation("Store a memory through the write head", {}, "MemoryCreate",
                         {{"200", Reply("What the write head did", Ref("WriteResult"))},
                          {"503", unavailable}})},
      {"get",
       Operation(
           "List memories, newest first, a page at a time",
           {UserQuery(),
            Param("tag", "query", Strings(), "Only memories with every tag given (repeatable)"),
            Param("created_from", "query", Int(), "Created at or after, ms since the epoch"),
            Param("created_until", "query", Int(), "Created before, ms since the epoch"),
            Param("metadata_key", "query", Str(), "Only memories whose metadata has this key"),
            Param("metadata_value", "query", Str(),
                  "... with this JSON value (text that is not JSON is a string)"),
            Param("limit", "query",
                  {{"type", "integer"}, {"minimum", 1}, {"maximum", 1000}, {"default", 50}},
                  "Page size"),
            Param("cursor", "query", Str(), "next_cursor of the previous page")},
           "",
           {{"200", Reply("A page", Ref("MemoryPage"))},
            {"422", Reply("Validation error", Ref("ValidationError"))}})}};
  paths["/memories/{id}"] = {
      {"get", Operation("One memory", {IdParam(), UserQuery()}, "",
                        {{"200", Reply("The memory", Ref("Memory"))}, {"404", not_found}})},
      {"put", Operation("Change a memory; the old version stays in its history", {IdParam()},
                        "MemoryUpdate",
                        {{"200", Reply("Updated", Ref("WriteResult"))}, {"404", not_found}})},
      {"delete", Operation("Remove a memory; its history stays", {IdParam(), UserQuery()}, "",
                           {{"200", Reply("Deleted", Ref("WriteResult"))}, {"404", not_found}})}};
  paths["/memories/{id}/history"] = {
      {"get", Operation("Every version of a memory, oldest first", {IdParam(), UserQuery()}, "",
                        {{"200", Reply("The history", Ref("History"))}, {"404", not_found}})}};
  json::object forget =
      Operation("Erase a memory and all its history for good", {IdParam()}, "NamespaceBody",
                {{"200", Reply("Forgotten", Ref("WriteResult"))}, {"404", not_found}});
  forget["requestBody"].as_object()["required"] = false;
  paths["/memories/{id}/forget"] = {{"post", std::move(forget)}};

  paths["/search"] = {
      {"post", Operation("Find memories by meaning and words, best first", {}, "SearchRequest",
                         {{"200", Reply("Hits", {{"type", "array"}, {"items", Ref("SearchHit")}})},
                          {"503", unavailable}})}};
  // With "stream": true the same answer comes as server-sent events.
  json::object query_reply = Reply("The reply", Ref("QueryResponse"));
  query_reply["content"].as_object()["text/event-stream"] = {
      {"schema",
       {{"type", "string"},
        {"description",
         "event: chunk / data: {\"text\": \"...\"} for each piece of the reply in order, "
         "then event: done / data: the QueryResponse object"}}}};
  paths["/query"] = {
      {"post", Operation("One chat turn: recall, reply, remember", {}, "QueryRequest",
                         {{"200", std::move(query_reply)},
                          {"404", Error("Unknown session_id")},
                          {"503", unavailable}})}};
  paths["/statistics"] = {
      {"get", Operation("Statistics of the namespace and the bank", {UserQuery()}, "",
                        {{"200", Reply("Statistics", Ref("Statistics"))}})}};

  paths["/alerts"] = {
      {"get",
       Operation("The monitor's active alerts and its latest alert events",
                 {Param("limit", "query",
                        {{"type", "integer"}, {"minimum", 1}, {"maximum", 1000}, {"default", 50}},
                        "Events of the history, newest first")},
                 "",
                 {{"200", Reply("Alerts; enabled is false when monitoring is off, with "
                                "empty lists",
                                Ref("Alerts"))},
                  {"422", Reply("Validation error", Ref("ValidationError"))}})}};

  // Probes and scrapes need no key; every other operation does when keys are configured, and
  // may meet the namespace check and the rate limits.
  for (auto& [path, item] : paths) {
    const bool open =
        path == "/health" || path == "/ready" || path == "/metrics" || path == "/openapi.json";
    for (auto& [method, op] : item.as_object()) {
      json::object& operation = op.as_object();
      if (open) {
        operation["security"] = json::array();
        continue;
      }
      json::object& responses = operation["responses"].as_object();
      responses["401"] = Error("No API key, or an unknown one (on a server with keys)");
      // Any valid key may read the alerts: they belong to the service, not to a namespace.
      if (path != "/alerts") responses["403"] = Error("The key may not touch this namespace");
      responses["429"] = Error("Over a rate limit; Retry-After says when to try again");
    }
  }

  json::object doc;
  doc["openapi"] = "3.0.3";
  doc["info"] = {{"title", "mann"},
                 {"version", kVersion},
                 {"description", "A chatbot with a long-term memory: memories, search, chat."}};
  doc["paths"] = std::move(paths);
  doc["components"] = {
      {"schemas", Schemas()},
      {"securitySchemes",
       {{"bearerAuth", {{"type", "http"}, {"scheme", "bearer"}}},
        {"apiKeyHeader", {{"type", "apiKey"}, {"in", "header"}, {"name", "X-API-Key"}}}}}};
  doc["security"] = json::array{json::object{{"bearerAuth", json::array()}},
                                json::object{{"apiKeyHeader", json::array()}}};
  return doc;
}

}  // namespace mann::api
