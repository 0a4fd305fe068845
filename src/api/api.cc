#include <chrono>
#include <cmath>
#include <functional>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <mann/api/api.h>
#include <mann/api/validation.h>
#include <mann/cache/redis.h>
#include <mann/cache/result_cache.h>
#include <mann/core/entry_json.h>
#include <mann/core/log.h>
#include <mann/core/version.h>
#include <mann/monitor/alerts.h>
#include <mann/monitor/health.h>
#include <mann/security/principal.h>

namespace mann::api {
namespace {

namespace json = boost::json;
using server::Request;
using server::Response;

// Namespace statistics as the command line has them, with the API's name for utilization.
json::object ApiNamespaceStatsToJson(const NamespaceStats& s) {
  json::object o = NamespaceStatsToJson(s);
  o.erase("utilization");
  o["memory_utilization"] = s.utilization;
  return o;
}

// An entry as the command line's JSON has it (`mann memory get --json`), plus memory_id, the
// name the rest of the API uses for the id.
json::object ApiEntryToJson(const MemoryEntry& e) {
  json::object o = EntryToJson(e);
  o["memory_id"] = e.id;
  return o;
}

// A search hit in the shape of the original API's MemoryResponse.
json::object MemoryResponseToJson(const SearchHit& hit) {
  json::object o;
  o["memory_id"] = hit.entry.id;
  o["content"] = hit.entry.content;
  o["context"] = hit.entry.context;
  o["importance_weight"] = hit.entry.importance;
  o["usage_count"] = hit.entry.usage_count;
  o["tags"] = StringsToJson(hit.entry.tags);
  o["timestamp"] = FormatTimestamp(hit.entry.created_ms);
  o["similarity"] = hit.similarity;
  o["attention_weight"] = hit.attention;
  return o;
}

json::array HitsToJson(const std::vector<SearchHit>& hits) {
  json::array out;
  for (const SearchHit& hit : hits) out.push_back(MemoryResponseToJson(hit));
  return out;
}

constexpr WriteAction kActions[] = {WriteAction::kAdd, WriteAction::kUpdate, WriteAction::kDelete,
                                    WriteAction::kNoop};

// What the original API's clients read in `status` after POST /memories.
std::string_view WriteStatusName(WriteAction action) {
  switch (action) {
    case WriteAction::kAdd:
      return "created";
    case WriteAction::kUpdate:
      return "updated";
    case WriteAction::kDelete:
      return "deleted";
    case WriteAction::kNoop:
      break;
  }
  return "unchanged";
}

// One server-sent event: `event: NAME`, `data: JSON` on one line (serialized JSON holds no
// line break), and the blank line that ends it.
std::string ServerSentEvent(std::string_view name, const json::value& data) {
  return fmt::format("event: {}\ndata: {}\n\n", name, json::serialize(data));
}

Response MemoryNotFound(std::string_view id) {
  return server::NotFound(fmt::format("memory {} not found", id));
}

// The namespace of a request: `user_id` read by `in` (a validation error there joins the
// others), else the caller's default: its key's default namespace, or "default" on a server
// without keys. Returns the 403 to answer when the caller's key may not touch the namespace; a
// refusal comes before other validation errors, so that a caller learns nothing about a request
// it may not make.
std::optional<Response> ReadNamespace(FieldReader& in, const Request& request, std::string& ns) {
  const security::Principal* who = security::PrincipalOf(request);
  std::optional<std::string> named = in.String("user_id");
  if (!named) {
    ns = who != nullptr ? who->default_namespace : std::string(kDefaultNamespace);
    return std::nullopt;
  }
  ns = std::move(*named);
  if (Status st = ValidateNamespace(ns); !st.ok()) {
    in.AddError("user_id", st.message(), "value_error");
    return std::nullopt;
  }
  if (who != nullptr && !who->MayAccess(ns)) {
    return server::ErrorResponse(
        403, fmt::format("API key \"{}\" may not access namespace \"{}\"", who->key_name, ns));
  }
  return std::nullopt;
}

// The JSON body of a request, or the answer to give when there is none to read: 400 for
// malformed JSON, 422 for a missing body when one is required. An absent optional body reads as
// an empty object.
std::optional<Response> ReadBody(const Request& request, bool required, json::value& out) {
  if (request.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    if (required) {
      return server::ValidationError({{json::array{"body"}, "Field required", "missing"}});
    }
    out = json::object();
    return std::nullopt;
  }
  auto parsed = server::ParseJsonBody(request);
  if (!parsed.ok()) return server::BadRequest(parsed.status().message());
  out = std::move(*parsed);
  return std::nullopt;
}

// ---- The search cache's values ------------------------------------------------------------
//
// A value is the hits' ids, blank-separated, a line break, then the response body exactly as a
// miss answered it. The ids let a hit count as a read of its entries, as a search does.

std::string SearchCacheValue(const std::vector<SearchHit>& hits, std::string_view body) {
  std::string value;
  for (const SearchHit& hit : hits) {
    if (!value.empty()) value += ' ';
    value += hit.entry.id;
  }
  value += '\n';
  value += body;
  return value;
}

// The answer of a cached value, after bumping the usage of its hits; nullopt for a value of
// another shape (written by another version), which the caller treats as a miss.
std::optional<Response> CachedSearchAnswer(MemoryBank& bank, const std::string& ns,
                                           std::string_view value) {
  const std::size_t newline = value.find('\n');
  if (newline == std::string_view::npos) return std::nullopt;
  std::string_view ids = value.substr(0, newline);
  while (!ids.empty()) {
    const std::size_t blank = ids.find(' ');
    // An entry removed since is NotFound: the generation moved, so this cannot happen unless
    // the change came from elsewhere; a missing read is then the right bookkeeping.
    bank.Get(ns, std::string(ids.substr(0, blank)), /*touch=*/true).status().IgnoreError();
    ids = blank == std::string_view::npos ? std::string_view() : ids.substr(blank + 1);
  }
  Response response;
  response.body = std::string(value.substr(newline + 1));
  return response;
}

// A status from the bank for an operation on one id: NotFound becomes the API's 404 wording.
Response IdError(const Status& status, std::string_view id, std::string_view location) {
  if (status.code() == StatusCode::kNotFound) return MemoryNotFound(id);
  return ErrorFromStatus(status, location);
}

// /health?detail=1 runs the health checks, which may wait; plain /health never does.
bool HealthDetailRequested(const Request& request) {
  FieldReader in(request.query);
  return in.Bool("detail").value_or(false);
}

}  // namespace

Api::Api(runtime::Runtime& runtime, ApiOptions options)
    : runtime_(runtime), options_(std::move(options)), started_(std::chrono::steady_clock::now()) {}

Status Api::RegisterRoutes(server::Router& router) {
  using Member = Response (Api::*)(const Request&);
  struct Route {
    const char* method;
    const char* path;
    Member handler;
    bool json_body;
    // May wait seconds: run on the server's handler pool, not on an I/O thread, where it would
    // hold up every connection dealt to that thread (/health among them). /query waits on a
    // language model. /ready, writes and history wait on the store, which may take the whole
    // call bound of a stalled PostgreSQL; /metrics may too (the pager's outbox gauge). Reads
    // are served from memory but wait on the bank's lock, which a reload after a failed commit
    // holds while it reads the store. /openapi.json never waits, nor does /health, which
    // liveness probes must reach whatever the store does; its ?detail=1 runs the checks,
    // which may wait the health checker's budget, so that form goes to the pool.
    bool blocking = true;
    bool (*blocking_when)(const Request&) = nullptr;  // blocking for some requests only
  };
  const Route routes[] = {
      {"GET", "/health", &Api::Health, false, false, &HealthDetailRequested},
      {"GET", "/ready", &Api::Ready, false},
      {"GET", "/metrics", &Api::Metrics, false},
      {"GET", "/openapi.json", &Api::OpenApi, false, false},
      {"POST", "/memories", &Api::AddMemory, true},
      {"GET", "/memories", &Api::ListMemories, false},
      {"GET", "/memories/{id}", &Api::GetMemory, false},
      {"PUT", "/memories/{id}", &Api::UpdateMemory, true},
      {"DELETE", "/memories/{id}", &Api::DeleteMemory, false},
      {"GET", "/memories/{id}/history", &Api::MemoryHistory, false},
      {"POST", "/memories/{id}/forget", &Api::ForgetMemory, true},
      {"POST", "/search", &Api::Search, true},
      {"POST", "/query", &Api::Query, true},
      {"GET", "/statistics", &Api::Statistics, false},
      {"GET", "/alerts", &Api::Alerts, false},
  };
  for (const Route& r : routes) {
    MANN_RETURN_IF_ERROR(router.Add(
        r.method, r.path, [this, h = r.handler](const Request& req) { return (this->*h)(req); },
        {.json_body = r.json_body, .blocking = r.blocking, .blocking_when = r.blocking_when}));
  }
  return {};
}

Status Api::RegisterMetrics(metrics::Registry& registry) {
  // One sample per namespace from a fresh Stats(); the namespaces are the callers' own, so their
  // number is bounded by the bank, not by the traffic.
  auto per_namespace = [this](std::function<double(const NamespaceStats&)> get) {
    return [this, get = std::move(get)] {
      std::vector<metrics::Sample> out;
      for (const NamespaceStats& ns : runtime_.bank().Stats().namespaces) {
        out.push_back({{ns.ns}, get(ns)});
      }
      return out;
    };
  };
  struct Spec {
    bool counter;
    const char* name;
    const char* help;
    std::function<double(const NamespaceStats&)> get;
  };
  const Spec specs[] = {
      {false, "mann_memory_utilization", "Live entries over memory.memory_size, per namespace.",
       [](const NamespaceStats& s) { return s.utilization; }},
      {false, "mann_memories", "Live entries, per namespace.",
       [](const NamespaceStats& s) { return double(s.total_memories); }},
      {true, "mann_memory_reads_total", "Reads of entries (search hits and gets), per namespace.",
       [](const NamespaceStats& s) { return double(s.reads); }},
      {true, "mann_memory_writes_total", "Changes committed to entries, per namespace.",
       [](const NamespaceStats& s) { return double(s.writes); }},
      {true, "mann_memory_evictions_total",
       "Entries removed by the capacity policy, per namespace.",
       [](const NamespaceStats& s) { return double(s.evictions); }},
  };
  for (const Spec& s : specs) {
    if (s.counter) {
      MANN_ASSIGN_OR_RETURN(auto handle, registry.AddCounterCallback(s.name, s.help, {"namespace"},
                                                                     per_namespace(s.get)));
      metrics_.push_back(std::move(handle));
    } else {
      MANN_ASSIGN_OR_RETURN(auto handle, registry.AddGaugeCallback(s.name, s.help, {"namespace"},
                                                                   per_namespace(s.get)));
      metrics_.push_back(std::move(handle));
    }
  }
  MANN_ASSIGN_OR_RETURN(auto decisions,
                        registry.AddCounterCallback(
                            "mann_write_decisions_total",
                            "Write-head decisions since start, by action.", {"action"}, [this] {
                              const BankStats stats = runtime_.bank().Stats();
                              std::vector<metrics::Sample> out;
                              for (WriteAction a : kActions) {
                                out.push_back({{std::string(WriteActionName(a))},
                                               double(stats.write_decisions[static_cast<int>(a)])});
                              }
                              return out;
                            }));
  metrics_.push_back(std::move(decisions));
  return {};
}

std::mutex& Api::SessionLock(const std::string& session_id) {
  return session_locks_[std::hash<std::string>{}(session_id) % session_locks_.size()];
}

void Api::InvalidateSearchCache(const std::string& ns) {
  if (options_.search_cache != nullptr) options_.search_cache->InvalidateNamespace(ns);
}

// ---- Operations ------------------------------------------------------------------------------

Response Api::Health(const Request& request) {
  FieldReader in(request.query);
  const bool detail = in.Bool("detail").value_or(false);
  if (!in.ok()) return server::ValidationError(in.errors());

  // Counts held in memory only: liveness must not wait on the disk.
  const std::size_t count = runtime_.bank().TotalCount();
  const double size = double(runtime_.bank().options().memory_size);
  json::object o;
  o["status"] = "healthy";
  o["timestamp"] = FormatTimestamp(runtime_.clock().NowMs());
  o["memory_count"] = count;
  o["memory_utilization"] = double(count) / size;
  o["uptime"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  o["version"] = kVersion;
  if (detail) {
    // The checker bounds every check by its budget and never runs a stalled one twice, so this
    // answer comes within the budget however a check behaves. The top-level status stays the
    // process's liveness; the checks carry their own overall state.
    o["checks"] = monitor::ToJson(options_.health != nullptr ? options_.health->RunAll()
                                                             : monitor::HealthReport{});
  }
  return Response::Json(o);
}

Response Api::Ready(const Request&) {
  if (options_.draining && options_.draining()) {
    return server::ServiceUnavailable("shutting down: not accepting new work");
  }
  // A cheap query that goes all the way to the database.
  if (auto counters = runtime_.store().Counters(); !counters.ok()) {
    log::Get("api")->warn("readiness check failed: {}", counters.status().ToString());
    return server::ServiceUnavailable("storage unavailable: " + counters.status().message());
  }
  json::object o{{"status", "ready"}};
  // Without Redis the server still serves (degraded): readiness stays, and says so.
  if (options_.redis != nullptr) o["redis"] = options_.redis->up() ? "up" : "down";
  return Response::Json(o);
}

Response Api::Metrics(const Request&) {
  return server::MetricsResponse(options_.registry != nullptr ? *options_.registry
                                                              : metrics::Registry::Default());
}

Response Api::OpenApi(const Request&) { return Response::Json(OpenApiDocument()); }

// ---- Memories --------------------------------------------------------------------------------

Response Api::AddMemory(const Request& request) {
  json::value body;
  if (auto error = ReadBody(request, true, body)) return *error;
  FieldReader in(body, "body");
  AddRequest add;
  if (auto denied = ReadNamespace(in, request, add.ns)) return *denied;
  if (auto v = in.String("content", {.required = true, .min_length = 1})) add.content = *v;
  if (auto v = in.String("context")) add.context = *v;
  if (auto v = in.StringList("tags")) add.tags = *v;
  if (auto v = in.Number("importance_weight", {.min = kMinImportance, .max = kMaxImportance})) {
    add.importance = *v;
  }
  if (auto v = in.Object("metadata")) add.metadata = *v;
  if (!in.ok()) return server::ValidationError(in.errors());

  auto outcome = runtime_.bank().Add(add);
  // Also after a failure: a write that failed half-way may still have changed the namespace.
  if (!outcome.ok() || outcome->action != WriteAction::kNoop) InvalidateSearchCache(add.ns);
  if (!outcome.ok()) return ErrorFromStatus(outcome.status());
  json::object o;
  o["memory_id"] = outcome->memory_id;
  o["status"] = WriteStatusName(outcome->action);
  o["action"] = WriteActionName(outcome->action);
  o["similarity"] = outcome->similarity;
  o["reason"] = outcome->reason;
  o["version"] = outcome->version;
  o["evicted_ids"] = StringsToJson(outcome->evicted_ids);
  return Response::Json(o);
}

Response Api::ListMemories(const Request& request) {
  FieldReader in(request.query);
  ListQuery query;
  if (auto denied = ReadNamespace(in, request, query.ns)) return *denied;
  if (auto v = in.StringList("tag")) query.tags = *v;
  if (auto v = in.Integer("created_from", {.min = 0, .max = std::nullopt})) query.created_from = *v;
  if (auto v = in.Integer("created_until", {.min = 0, .max = std::nullopt}))
    query.created_until = *v;
  if (auto v = in.String("metadata_key")) query.metadata_key = *v;
  if (auto v = in.String("metadata_value")) {
    // A JSON value; text that is not JSON is taken as a string, as the command line does.
    boost::system::error_code ec;
    json::value parsed = json::parse(*v, ec);
    query.metadata_value = ec ? json::value(json::string(*v)) : std::move(parsed);
  }
  if (auto v = in.Integer("limit", {.min = 1, .max = 1000})) query.limit = std::size_t(*v);
  if (auto v = in.String("cursor")) query.cursor = *v;
  if (!in.ok()) return server::ValidationError(in.errors());

  auto page = runtime_.bank().List(query);
  if (!page.ok()) return ErrorFromStatus(page.status(), "query");
  json::array entries;
  for (const MemoryEntry& e : page->entries) entries.push_back(ApiEntryToJson(e));
  json::object o;
  o["memories"] = std::move(entries);
  o["next_cursor"] = page->next_cursor;
  return Response::Json(o);
}

Response Api::GetMemory(const Request& request) {
  FieldReader in(request.query);
  std::string ns;
  if (auto denied = ReadNamespace(in, request, ns)) return *denied;
  if (!in.ok()) return server::ValidationError(in.errors());
  const std::string id(request.PathParam("id"));
  // Looking at an entry is not recalling it: usage counts stay as they are.
  auto entry = runtime_.bank().Get(ns, id, /*touch=*/false);
  if (!entry.ok()) return IdError(entry.status(), id, "query");
  return Response::Json(ApiEntryToJson(*entry));
}

Response Api::UpdateMemory(const Request& request) {
  json::value body;
  if (auto error = ReadBody(request, true, body)) return *error;
  const std::string id(request.PathParam("id"));
  FieldReader in(body, "body");
  UpdateRequest update;
  if (auto denied = ReadNamespace(in, request, update.ns)) return *denied;
  update.id = id;
  if (auto v = in.String("memory_id"); v && *v != id) {
    in.AddError("memory_id",
                fmt::format("memory_id \"{}\" does not match the path's \"{}\"", *v, id),
                "value_error");
  }
  update.content = in.String("content", {.min_length = 1});
  update.context = in.String("context");
  update.tags = in.StringList("tags");
  update.metadata = in.Object("metadata");
  update.importance =
      in.Number("importance_weight", {.min = kMinImportance, .max = kMaxImportance});
  if (!in.ok()) return server::ValidationError(in.errors());

  auto outcome = runtime_.bank().Update(update);
  InvalidateSearchCache(update.ns);
  if (!outcome.ok()) return IdError(outcome.status(), id, "body");
  return Response::Json(
      json::object{{"memory_id", id}, {"status", "updated"}, {"version", outcome->version}});
}

Response Api::DeleteMemory(const Request& request) {
  FieldReader in(request.query);
  std::string ns;
  if (auto denied = ReadNamespace(in, request, ns)) return *denied;
  if (!in.ok()) return server::ValidationError(in.errors());
  const std::string id(request.PathParam("id"));
  const Status deleted = runtime_.bank().Delete(ns, id);
  InvalidateSearchCache(ns);
  if (!deleted.ok()) return IdError(deleted, id, "query");
  return Response::Json(json::object{{"memory_id", id}, {"status", "deleted"}});
}

Response Api::MemoryHistory(const Request& request) {
  FieldReader in(request.query);
  std::string ns;
  if (auto denied = ReadNamespace(in, request, ns)) return *denied;
  if (!in.ok()) return server::ValidationError(in.errors());
  const std::string id(request.PathParam("id"));
  auto history = runtime_.bank().History(ns, id);
  if (!history.ok()) return IdError(history.status(), id, "query");
  if (history->empty()) return MemoryNotFound(id);
  json::array rows;
  for (const HistoryRecord& h : *history) rows.push_back(HistoryToJson(h));
  return Response::Json(json::object{{"memory_id", id}, {"history", std::move(rows)}});
}

Response Api::ForgetMemory(const Request& request) {
  json::value body;
  if (auto error = ReadBody(request, false, body)) return *error;
  FieldReader in(body, "body");
  std::string ns;
  if (auto denied = ReadNamespace(in, request, ns)) return *denied;
  if (!in.ok()) return server::ValidationError(in.errors());
  const std::string id(request.PathParam("id"));
  const Status forgotten = runtime_.bank().Forget(ns, id);
  InvalidateSearchCache(ns);
  if (!forgotten.ok()) return IdError(forgotten, id, "body");
  return Response::Json(json::object{{"memory_id", id}, {"status", "forgotten"}});
}

// ---- Retrieval and chat ----------------------------------------------------------------------

Response Api::Search(const Request& request) {
  json::value body;
  if (auto error = ReadBody(request, true, body)) return *error;
  FieldReader in(body, "body");
  SearchRequest search;
  if (auto denied = ReadNamespace(in, request, search.ns)) return *denied;
  if (auto v = in.String("query", {.required = true, .min_length = 1})) search.query = *v;
  if (auto v = in.Integer("top_k", {.min = 1, .max = 50})) search.top_k = std::size_t(*v);
  if (auto v = in.Number("min_similarity", {.min = 0, .max = 1})) search.min_similarity = *v;
  if (!in.ok()) return server::ValidationError(in.errors());

  // Keyed on every field that decides the answer, as parsed: 0.5 and 0.50 are one request.
  cache::ResultCache::Ticket ticket;
  if (options_.search_cache != nullptr) {
    const std::string request_key = fmt::format("top_k={}\nmin_similarity={:.17g}\nquery={}",
                                                search.top_k, search.min_similarity, search.query);
    if (auto value = options_.search_cache->Lookup(search.ns, request_key, ticket)) {
      if (auto answer = CachedSearchAnswer(runtime_.bank(), search.ns, *value)) return *answer;
    }
  }

  auto hits = runtime_.bank().Search(search);
  if (!hits.ok()) return ErrorFromStatus(hits.status());
  Response response = Response::Json(HitsToJson(*hits));
  if (ticket.storable) {
    options_.search_cache->Store(ticket, SearchCacheValue(*hits, response.body));
  }
  return response;
}

Response Api::Query(const Request& request) {
  json::value body;
  if (auto error = ReadBody(request, true, body)) return *error;
  FieldReader in(body, "body");
  std::string ns;
  if (auto denied = ReadNamespace(in, request, ns)) return *denied;
  std::string text;
  if (auto v = in.String("input_text", {.required = true, .min_length = 1})) text = *v;
  const bool retrieve = in.Bool("retrieve_memories").value_or(true);
  const std::string session = in.String("session_id").value_or("");
  const bool stream = in.Bool("stream").value_or(false);
  if (!in.ok()) return server::ValidationError(in.errors());

  // The turn, and the answer made of it, alike for both forms of the reply.
  auto run_turn = [this, ns, session, text, retrieve](const chat::TextSink& on_text) {
    Result<chat::TurnResult> turn = [&] {
      if (session.empty()) return runtime_.chat().Turn(ns, session, text, retrieve, on_text);
      std::lock_guard lock(SessionLock(session));
      return runtime_.chat().Turn(ns, session, text, retrieve, on_text);
    }();
    if (turn.ok() && !turn->writes.empty()) InvalidateSearchCache(ns);
    return turn;
  };
  auto answer = [this](const chat::TurnResult& turn) {
    json::object o;
    o["output"] = turn.reply;
    o["memory_info"] = HitsToJson(turn.memories);
    o["processing_time"] = turn.processing_seconds;
    o["memory_utilization"] =
        double(runtime_.bank().TotalCount()) / double(runtime_.bank().options().memory_size);
    o["session_id"] = turn.session_id;
    return o;
  };

  if (!stream) {
    Result<chat::TurnResult> turn = run_turn({});
    if (!turn.ok()) return ErrorFromStatus(turn.status());
    return Response::Json(answer(*turn));
  }

  // Streamed: an unknown session is still a 404, found before the 200 is committed.
  if (!session.empty()) {
    if (Status known = runtime_.chat().ResumeSession(session, ns); !known.ok()) {
      return ErrorFromStatus(known);
    }
  }
  // The turn runs in the producer, on the server's handler pool, and each piece of the reply is
  // sent as a chunk event as the responder makes it. A client that leaves makes the writes
  // fail; the turn still runs to its end, so that its memory writes are not left half done.
  Response response = Response::Text("", 200, "text/event-stream; charset=utf-8");
  response.headers.Set("Cache-Control", "no-cache");
  response.producer = [run_turn, answer](server::BodyWriter& out) {
    Result<chat::TurnResult> turn = run_turn([&out](std::string_view piece) {
      out.Write(ServerSentEvent("chunk", json::object{{"text", piece}}));
    });
    if (turn.ok()) {
      out.Write(ServerSentEvent("done", answer(*turn)));
      return;
    }
    // The status line is sent already: the failure becomes the last event.
    Response error = ErrorFromStatus(turn.status());
    json::object data{{"status", error.status}};
    boost::system::error_code parse_error;
    json::value error_body = json::parse(error.body, parse_error);
    if (!parse_error && error_body.is_object() && error_body.as_object().contains("detail")) {
      data["detail"] = error_body.as_object().at("detail");
    }
    out.Write(ServerSentEvent("error", data));
  };
  return response;
}

Response Api::Statistics(const Request& request) {
  FieldReader in(request.query);
  std::string ns;
  if (auto denied = ReadNamespace(in, request, ns)) return *denied;
  if (!in.ok()) return server::ValidationError(in.errors());
  const BankStats stats = runtime_.bank().Stats();

  NamespaceStats mine;
  mine.ns = ns;
  for (const NamespaceStats& s : stats.namespaces) {
    if (s.ns == ns) mine = s;
  }
  json::object o = ApiNamespaceStatsToJson(mine);
  o["user_id"] = ns;
  o["memory_size"] = stats.memory_size;
  o["max_memory_capacity"] = stats.max_memory_capacity;
  // The whole bank's figures describe other tenants too: only a caller that may see every
  // namespace (an admin key, or a server without keys) gets them.
  const security::Principal* who = security::PrincipalOf(request);
  if (who == nullptr || who->admin) {
    json::object decisions;
    for (WriteAction a : kActions) {
      decisions[WriteActionName(a)] = stats.write_decisions[static_cast<int>(a)];
    }
    o["write_decisions"] = std::move(decisions);
    o["overall"] = ApiNamespaceStatsToJson(stats.overall);
    o["namespace_count"] = stats.namespaces.size();
  }
  return Response::Json(o);
}

// ---- Alerts -------------------------------------------------------------------------------------

Response Api::Alerts(const Request& request) {
  FieldReader in(request.query);
  const std::int64_t limit = in.Integer("limit", {.min = 1, .max = 1000}).value_or(50);
  if (!in.ok()) return server::ValidationError(in.errors());

  json::array active;
  json::array history;
  if (options_.alerts != nullptr) {
    for (const monitor::ActiveAlert& a : options_.alerts->Active()) {
      active.push_back(monitor::ToJson(a));
    }
    // The engine keeps its history oldest first; a reader wants the latest events on top.
    const std::vector<monitor::AlertEvent> events =
        options_.alerts->History(static_cast<std::size_t>(limit));
    for (auto it = events.rbegin(); it != events.rend(); ++it)
      history.push_back(monitor::ToJson(*it));
  }
  json::object o;
  o["enabled"] = options_.alerts != nullptr;
  o["active"] = std::move(active);
  o["history"] = std::move(history);
  return Response::Json(o);
}

}  // namespace mann::api
