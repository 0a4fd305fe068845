// RemoteEncoder: an Encoder backed by any OpenAI-compatible embeddings endpoint (Ollama,
// llama.cpp server, vLLM, hosted APIs), spoken to over HTTP(S) with libcurl.
//
//   RemoteEncoderOptions options;
//   options.base_url = "http://127.0.0.1:11434/v1";
//   options.model = "nomic-embed-text";
//   MANN_ASSIGN_OR_RETURN(auto encoder, RemoteEncoder::Create(options));
//
// Each request is `POST {base_url}/embeddings` with `{"model": ..., "input": [texts...]}` and,
// when an API key is set, `Authorization: Bearer <key>`. Texts go out in chunks of at most
// max_batch; the vectors of the answer are placed by their `index` (servers may reorder them) and
// L2-normalized here, since not every model returns unit vectors.
//
// Text that is empty or only ASCII whitespace is never sent (many servers reject it); it gets
// the zero vector, as the Encoder contract allows for featureless text.
//
// No retries happen inside the encoder: a failed EncodeBatch() fails as a whole, and the caller
// decides whether an Unavailable error is worth another attempt.
//
// Errors of EncodeBatch() (and of the probe in Create()) name the endpoint URL, with any
// user:password part removed, and never contain the API key (it is scrubbed from every message,
// including server text that echoes it):
//   Unavailable       could not connect ("connection refused"), could not resolve the host,
//                     timed out ("timed out after N ms"), TLS or transfer failure; HTTP 408, 429
//                     and 5xx (the status code is named)
//   PermissionDenied  HTTP 401 or 403
//   InvalidArgument   any other HTTP status outside 2xx (redirects are not followed), with the
//                     status and up to 200 bytes of the server's error message
//   DataLoss          a 2xx answer that is not JSON, lacks `data`, holds the wrong number of
//                     vectors, a duplicate or out-of-range index, a vector of the wrong dimension
//                     or a non-finite number, or is larger than max_response_bytes
//
// Thread-safety: immutable after Create() except for an internal pool of curl handles (guarded
// by a mutex); EncodeBatch() may run concurrently, each call on its own handle. Pooled handles
// keep their connections alive between calls.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/status.h>
#include <mann/encode/encoder.h>

namespace mann::encode {

struct RemoteEncoderOptions {
  // The API root that `/embeddings` is appended to, e.g. "http://127.0.0.1:11434/v1" (Ollama)
  // or "https://api.openai.com/v1". A trailing '/' is allowed; a query string is kept.
  std::string base_url;
  std::string model;    // sent as "model"; also names the encoder in Id()
  std::string api_key;  // empty: no Authorization header
  // 0: learn the dimension from the probe in Create(); otherwise the probe must return it.
  std::size_t dimension = 0;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds timeout{10000};  // one whole request, connection included
  std::size_t max_batch = 64;                // texts per request
  // A larger answer is refused, so a broken server cannot exhaust memory. 64 MiB holds a batch
  // of 64 vectors of 4096 numbers printed at full precision several times over.
  std::size_t max_response_bytes = std::size_t{64} << 20;
};

class RemoteEncoder final : public Encoder {
 public:
  // InvalidArgument naming the option unless base_url is an http:// or https:// URL with a host,
  // model is non-empty, api_key holds no control characters (it goes into a header), timeouts
  // are positive, and max_batch and max_response_bytes are at least 1.
  static Status Validate(const RemoteEncoderOptions& options);

  // Validates, then sends one short probe text to learn the dimension (or check it when
  // options.dimension is set). The probe's errors come back as they are (see above), except
  // that a dimension differing from options.dimension is InvalidArgument naming both.
  static Result<std::unique_ptr<RemoteEncoder>> Create(RemoteEncoderOptions options);

  ~RemoteEncoder() override;
  RemoteEncoder(const RemoteEncoder&) = delete;
  RemoteEncoder& operator=(const RemoteEncoder&) = delete;

  // "remote-<model>-d<dimension>", with every character of the model outside [A-Za-z0-9._-]
  // replaced by '_' ("remote-library_bge-m3_latest-d1024").
  std::string Id() const override;
  std::size_t Dimension() const override { return dimension_; }
  // Errors as listed above; on error *out is left empty.
  Status EncodeBatch(std::span<const std::string> texts, std::vector<Vector>* out) const override;

  // The endpoint requests go to, without credentials: "http://127.0.0.1:11434/v1/embeddings".
  const std::string& endpoint() const { return display_url_; }

 private:
  struct Handle;  // a curl easy handle
  struct HandleDeleter {
    void operator()(Handle* handle) const;
  };
  using HandlePtr = std::unique_ptr<Handle, HandleDeleter>;

  RemoteEncoder(RemoteEncoderOptions options, std::string url, std::string display_url,
                bool bypass_proxy);

  // Sends texts[0..n) (all non-blank, n <= max_batch) in one request; on success out holds n
  // vectors of `expected_dimension` numbers each, or of any one length when it is 0.
  Status EncodeChunk(Handle& handle, std::span<const std::string_view> texts,
                     std::size_t expected_dimension, std::vector<Vector>* out) const;

  // One POST of `body` (a request for `text_count` texts); the 2xx answer's body, or the error.
  Result<std::string> Post(Handle& handle, const std::string& body, std::size_t text_count) const;
  // The Status for a failed transfer (`code` is the CURLcode) or a non-2xx answer.
  Status TransferError(Handle& handle, int code, std::string_view detail) const;
  Status HttpError(long http_status, std::string_view body) const;
  // Checks and unpacks an answer for `count` texts into `count` unit vectors.
  Status ParseAnswer(std::string_view answer, std::size_t count, std::size_t expected_dimension,
                     std::vector<Vector>* out) const;

  Result<HandlePtr> TakeHandle() const;
  void ReturnHandle(HandlePtr handle) const;

  // A Status whose message starts with "remote encoder POST <url>: " and never holds the key.
  Status Error(StatusCode code, std::string_view detail) const;

  RemoteEncoderOptions options_;
  std::string url_;            // what curl is given; may carry user:password
  std::string display_url_;    // url_ without credentials, for messages and logs
  bool bypass_proxy_ = false;  // a loopback host: never reached through a proxy
  std::size_t dimension_ = 0;

  mutable std::mutex pool_mu_;
  mutable std::vector<HandlePtr> idle_handles_;  // guarded by pool_mu_
};

}  // namespace mann::encode
