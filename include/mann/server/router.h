// Router: maps (method, path) to the handler registered for it, behind a chain of middleware.
//
//   server::Router router;
//   MANN_RETURN_IF_ERROR(router.Add("GET", "/memories/{id}", [&](const server::Request& req) {
//     return server::Response::Json({{"memory_id", req.PathParam("id")}});
//   }));
//   router.Use([](server::Request& req, const server::Next& next) {
//     if (!req.Header("X-API-Key")) return server::ErrorResponse(401, "Not authenticated");
//     return next(req);  // on to the next middleware, then the handler
//   });
//
// Path templates are '/'-separated segments, each either literal text or a whole-segment
// parameter `{name}`: "/memories", "/memories/{id}", "/memories/{id}/history". A parameter
// matches one non-empty segment. Where a literal and a parameter could both match
// ("/memories/search" and "/memories/{id}"), the literal wins, whatever the registration order.
// Matching is exact: no trailing-slash folding, no dot-segment removal.
//
// Handle() runs one request through these stages:
//   1. resolve: the path is matched (setting Request::route and path_params) and the query
//      string decoded; nothing is answered yet, so middleware sees the outcome;
//   2. middleware, outermost (first registered) first: each gets the request and `next`, may
//      answer early (CORS preflight, trusted hosts, auth, rate limits) or call `next` and
//      adjust the response on its way out (CORS headers);
//   3. the end of the chain: 400 for a malformed query escape, 404 when no template matches the
//      path, 405 with Allow when one does but not for this method, 415 when the route takes JSON
//      and the Content-Type is another, else the handler.
// HEAD is answered by the GET route when there is no HEAD route (the server drops the body).
// OPTIONS has no automatic answer: middleware answers preflights; otherwise it is a method like
// any other (405 unless a route registers it).
//
// Failure: an exception escaping a handler or middleware is logged (logger "http", with the
// request id and route) and answered 500 with a generic detail; Handle() never throws.
//
// Thread-safety: Add and Use are not thread-safe and must all happen before the first Handle;
// from then on the router is read-only and Handle may run on any number of threads at once.
// Handlers and middleware must be safe to call concurrently.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/status.h>
#include <mann/server/http_message.h>

namespace mann::server {

// Answers one request. It runs on a server thread and may block briefly (the memory bank is
// synchronous); a handler that can wait for seconds must be registered with
// RouteOptions::blocking, else it holds an I/O thread and every connection dealt to it.
using Handler = std::function<Response(const Request&)>;

// Continues the chain after a middleware: the next middleware, or routing and the handler.
using Next = std::function<Response(Request&)>;
using Middleware = std::function<Response(Request&, const Next&)>;

struct RouteOptions {
  // The handler reads a JSON body: a request with a body (or a Content-Type) other than
  // application/json is answered 415 before the handler runs.
  bool json_body = false;
  // The handler may wait on something slow, such as a language model: the server runs it on
  // its handler pool (ServerOptions::handler_threads), so the I/O threads keep serving. Other
  // handlers run inline on the connection's I/O thread, which costs no hand-off.
  bool blocking = false;
  // Blocking only for the requests this says so of (a query parameter that asks for slow
  // work), asked after the path and query are decoded; ignored when `blocking` is set. One that
  // throws counts as yes.
  std::function<bool(const Request&)> blocking_when = {};
};

class Router {
  struct Endpoint;  // everything registered on one template; named by Resolved

 public:
  Router();
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Registers `handler` for `method` (an upper-case token such as "GET") on `path_template`.
  // InvalidArgument naming the template for a malformed one (not starting with '/', an empty
  // or unclosed {param}, a parameter name repeated, braces inside a literal) or a malformed
  // method; AlreadyExists when the method is taken on that template, or when the template
  // differs from a registered one only in parameter names ("/m/{id}" against "/m/{key}"), which
  // could never be told apart.
  Status Add(std::string_view method, std::string_view path_template, Handler handler,
             RouteOptions options = {});

  // Appends a middleware; the first added runs outermost.
  void Use(Middleware middleware);

  // What stage 1 found for a request; pass it to Handle(request, resolved) on any thread. Valid
  // while the router lives.
  class Resolved {
   public:
    // The route chosen for the request's method (GET for HEAD) is RouteOptions::blocking.
    bool blocking() const { return blocking_; }

   private:
    friend class Router;
    const Endpoint* endpoint_ = nullptr;
    std::optional<std::string> target_error_;  // the 400 detail for a malformed target
    bool blocking_ = false;
  };

  // Stage 1 alone: matches the path and decodes the query, setting request.path, route,
  // path_params and query, so a caller can decide where to run the rest. Never throws.
  Resolved Resolve(Request& request) const;
  // Stages 2 and 3 for a request Resolve() has seen. Never throws.
  Response Handle(Request& request, const Resolved& resolved) const;

  // Runs the request through the stages above and returns the response; sets request.route and
  // request.path_params. Never throws.
  Response Handle(Request& request) const { return Handle(request, Resolve(request)); }

  // True when some route is RouteOptions::blocking, i.e. the server needs its handler pool.
  bool HasBlockingRoutes() const;

  // The template that `path` (percent-encoded, without the query) matches, or empty. For labels
  // of requests answered before routing (e.g. 413 by Content-Length).
  std::string RouteOf(std::string_view path) const;

  // Every registered (method, template) pair, in registration order, e.g. to check an OpenAPI
  // document against the routes.
  std::vector<std::pair<std::string, std::string>> Routes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mann::server
