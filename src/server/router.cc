#include <algorithm>
#include <cctype>
#include <exception>
#include <map>
#include <optional>
#include <span>

#include <mann/core/log.h>
#include <mann/server/router.h>

namespace mann::server {
namespace {

// Splits what follows the leading '/' at every '/': "/a/b" -> {"a", "b"}, "/" -> {""},
// "/a/" -> {"a", ""}. Templates and paths are split alike, so they line up segment by segment.
std::vector<std::string_view> SplitSegments(std::string_view path) {
  std::vector<std::string_view> segments;
  path.remove_prefix(1);
  for (;;) {
    std::size_t slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return segments;
}

bool IsParamName(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front()))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

bool IsMethodToken(std::string_view method) {
  return !method.empty() &&
         std::all_of(method.begin(), method.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

// The origin-form path and the query of a request-target; absolute-form ("http://h/p?q", which
// HTTP/1.1 servers must accept) is reduced to its path. nullopt for anything else but "*".
struct SplitTarget {
  std::string_view path;
  std::string_view query;
};
std::optional<SplitTarget> Split(std::string_view target) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size() &&
        std::equal(scheme.begin(), scheme.end(), target.begin(), [](char a, char b) {
          return a == std::tolower(static_cast<unsigned char>(b));
        })) {
      std::string_view rest = target.substr(scheme.size());
      std::size_t start = rest.find_first_of("/?");
      target = start == std::string_view::npos ? std::string_view("/") : rest.substr(start);
      if (target.front() == '?') return SplitTarget{"/", target.substr(1)};
      break;
    }
  }
  if (target == "*") return SplitTarget{target, {}};
  if (target.empty() || target.front() != '/') return std::nullopt;
  target = target.substr(0, target.find('#'));
  std::size_t question = target.find('?');
  if (question == std::string_view::npos) return SplitTarget{target, {}};
  return SplitTarget{target.substr(0, question), target.substr(question + 1)};
}

// Whether a request of the route runs on the handler pool. A predicate that throws says yes:
// the pool is the safe side when it cannot tell.
bool BlockingFor(const RouteOptions& options, const Request& request) {
  if (options.blocking) return true;
  if (!options.blocking_when) return false;
  try {
    return options.blocking_when(request);
  } catch (...) {
    return true;
  }
}

}  // namespace

struct Router::Endpoint {
  struct Route {
    std::string method;
    Handler handler;
    RouteOptions options;
  };

  std::string path_template;
  std::vector<std::string> param_names;  // in path order
  std::vector<Route> routes;             // in registration order

  const Route* Find(std::string_view method) const {
    for (const auto& route : routes) {
      if (route.method == method) return &route;
    }
    return nullptr;
  }
  // The route answering `method`: its own, else GET's for HEAD; nullptr when neither exists.
  const Route* Select(std::string_view method) const {
    const Route* route = Find(method);
    if (route == nullptr && method == "HEAD") route = Find("GET");
    return route;
  }
};

struct Router::Impl {
  using Route = Endpoint::Route;
  // One segment position of the template trie.
  struct Node {
    std::map<std::string, std::unique_ptr<Node>, std::less<>> literals;
    std::unique_ptr<Node> param;  // a {name} segment, whatever the name
    std::unique_ptr<Endpoint> endpoint;
  };
  struct Match {
    const Endpoint* endpoint = nullptr;
    std::vector<std::string> values;  // decoded values of the endpoint's params
  };

  // Walks the trie; literals are tried before the parameter at each segment, and a dead end
  // backtracks, so "/m/search/x" still reaches "/m/{id}/x" when "/m/search" has no "x".
  static const Endpoint* Walk(const Node& node, std::span<const std::string> segments,
                              std::vector<std::string>& values) {
    if (segments.empty()) return node.endpoint.get();
    const std::string& segment = segments.front();
    if (auto it = node.literals.find(segment); it != node.literals.end()) {
      if (const Endpoint* found = Walk(*it->second, segments.subspan(1), values)) return found;
    }
    if (node.param && !segment.empty()) {
      values.push_back(segment);
      if (const Endpoint* found = Walk(*node.param, segments.subspan(1), values)) return found;
      values.pop_back();
    }
    return nullptr;
  }

  // The endpoint `path` matches, or nullptr; InvalidArgument for a malformed escape.
  Result<Match> Resolve(std::string_view path) const {
    Match match;
    if (path.empty() || path.front() != '/') return match;
    std::vector<std::string> segments;
    for (std::string_view raw : SplitSegments(path)) {
      auto decoded = PercentDecode(raw, false);
      if (!decoded.ok()) return decoded.status().WithContext("request path");
      segments.push_back(std::move(*decoded));
    }
    match.endpoint = Walk(root, segments, match.values);
    return match;
  }

  Response Terminal(Request& request, const Resolved& resolved) const;
  Response Chain(std::size_t index, Request& request, const Resolved& resolved) const;

  Node root;
  bool any_blocking = false;
  std::vector<std::pair<std::string, std::string>> registered;
  std::vector<Middleware> middleware;
  std::shared_ptr<spdlog::logger> log = log::Get("http");
};

Router::Router() : impl_(std::make_unique<Impl>()) {}
Router::~Router() = default;

Status Router::Add(std::string_view method, std::string_view path_template, Handler handler,
                   RouteOptions options) {
  std::string where = "route " + std::string(method) + " " + std::string(path_template);
  if (!IsMethodToken(method)) {
    return InvalidArgumentError(where + ": the method must be an upper-case token such as GET");
  }
  if (path_template.empty() || path_template.front() != '/') {
    return InvalidArgumentError(where + ": the path template must start with '/'");
  }
  if (!handler) return InvalidArgumentError(where + ": the handler is empty");

  // Walk (and grow) the trie along the template's segments.
  Impl::Node* node = &impl_->root;
  std::vector<std::string> param_names;
  for (std::string_view segment : SplitSegments(path_template)) {
    if (segment.starts_with('{')) {
      std::string_view name = segment.size() >= 2 && segment.ends_with('}')
                                  ? segment.substr(1, segment.size() - 2)
                                  : std::string_view();
      if (!IsParamName(name)) {
        return InvalidArgumentError(where + ": '" + std::string(segment) +
                                    "' is not a parameter: expected {name} with a name of "
                                    "letters, digits and '_'");
      }
      if (std::find(param_names.begin(), param_names.end(), name) != param_names.end()) {
        return InvalidArgumentError(where + ": the parameter {" + std::string(name) +
                                    "} appears twice");
      }
      param_names.emplace_back(name);
      if (!node->param) node->param = std::make_unique<Impl::Node>();
      node = node->param.get();
      continue;
    }
    if (segment.find_first_of("{}") != std::string_view::npos) {
      return InvalidArgumentError(where + ": '" + std::string(segment) +
                                  "' mixes text and braces; a parameter must be a whole segment");
    }
    auto& child = node->literals[std::string(segment)];
    if (!child) child = std::make_unique<Impl::Node>();
    node = child.get();
  }

  // Register the method on the template's endpoint.
  if (!node->endpoint) {
    node->endpoint = std::make_unique<Endpoint>();
    node->endpoint->path_template = std::string(path_template);
    node->endpoint->param_names = std::move(param_names);
  } else if (node->endpoint->path_template != path_template) {
    return AlreadyExistsError(where + ": it matches the same paths as the registered " +
                              node->endpoint->path_template);
  }
  if (node->endpoint->Find(method) != nullptr) {
    return AlreadyExistsError(where + ": already registered");
  }
  node->endpoint->routes.push_back({std::string(method), std::move(handler), options});
  impl_->any_blocking =
      impl_->any_blocking || options.blocking || static_cast<bool>(options.blocking_when);
  impl_->registered.emplace_back(std::string(method), std::string(path_template));
  return Status::Ok();
}

void Router::Use(Middleware middleware) { impl_->middleware.push_back(std::move(middleware)); }

std::vector<std::pair<std::string, std::string>> Router::Routes() const {
  return impl_->registered;
}

std::string Router::RouteOf(std::string_view path) const {
  auto match = impl_->Resolve(path);
  if (!match.ok() || match->endpoint == nullptr) return {};
  return match->endpoint->path_template;
}

Response Router::Impl::Terminal(Request& request, const Resolved& resolved) const {
  if (resolved.target_error_) return BadRequest(*resolved.target_error_);
  if (resolved.endpoint_ == nullptr) return NotFound();
  const Endpoint& endpoint = *resolved.endpoint_;

  // Pick the route (again: middleware may have rewritten the method).
  const Route* route = endpoint.Select(request.method);
  if (route == nullptr) {
    std::vector<std::string> allowed;
    for (const auto& r : endpoint.routes) {
      allowed.push_back(r.method);
      if (r.method == "GET" && endpoint.Find("HEAD") == nullptr) allowed.emplace_back("HEAD");
    }
    return MethodNotAllowed(allowed);
  }

  if (route->options.json_body) {
    auto content_type = request.Header("Content-Type");
    bool acceptable = content_type ? IsJsonContentType(*content_type) : request.body.empty();
    if (!acceptable) return UnsupportedMediaType(content_type.value_or(""));
  }

  try {
    return route->handler(request);
  } catch (const std::exception& e) {
    log->error("handler failed request_id={} method={} route={} error={}", request.request_id,
               request.method, request.route, e.what());
  } catch (...) {
    log->error("handler failed request_id={} method={} route={} error=unknown exception",
               request.request_id, request.method, request.route);
  }
  return InternalServerError();
}

Response Router::Impl::Chain(std::size_t index, Request& request, const Resolved& resolved) const {
  if (index == middleware.size()) return Terminal(request, resolved);
  Next next = [this, index, &resolved](Request& r) { return Chain(index + 1, r, resolved); };
  return middleware[index](request, next);
}

Router::Resolved Router::Resolve(Request& request) const {
  // Errors are only noted here; they are answered at the chain's end, after the middleware.
  Resolved resolved;
  request.route.clear();
  request.path_params.clear();
  auto split = Split(request.target);
  if (!split) {
    request.path = request.target;
    resolved.target_error_ =
        "malformed request target '" + request.target + "': expected a path starting with '/'";
    return resolved;
  }
  request.path = std::string(split->path);
  auto query = ParseQuery(split->query);
  if (query.ok()) {
    request.query = std::move(*query);
  } else {
    resolved.target_error_ = query.status().message();
  }
  auto match = impl_->Resolve(request.path);
  if (!match.ok()) {
    resolved.target_error_ = match.status().message();
  } else if (match->endpoint != nullptr) {
    resolved.endpoint_ = match->endpoint;
    request.route = match->endpoint->path_template;
    for (std::size_t i = 0; i < match->values.size(); ++i) {
      request.path_params[match->endpoint->param_names[i]] = std::move(match->values[i]);
    }
    const Endpoint::Route* route = match->endpoint->Select(request.method);
    resolved.blocking_ = route != nullptr && BlockingFor(route->options, request);
  }
  return resolved;
}

bool Router::HasBlockingRoutes() const { return impl_->any_blocking; }

Response Router::Handle(Request& request, const Resolved& resolved) const {
  try {
    return impl_->Chain(0, request, resolved);
  } catch (const std::exception& e) {
    impl_->log->error("middleware failed request_id={} method={} route={} error={}",
                      request.request_id, request.method, request.route, e.what());
  } catch (...) {
    impl_->log->error("middleware failed request_id={} method={} route={} error=unknown exception",
                      request.request_id, request.method, request.route);
  }
  return InternalServerError();
}

}  // namespace mann::server
