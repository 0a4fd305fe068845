// Runtime: the assembled core of one mann process, built from a validated Config.
//
// Open() wires the pieces every face of mann (the terminal chat, the memory commands, later the
// HTTP server) needs, in dependency order:
//
//   data dir (created 0700) -> store: SqliteStore <data_dir>/mann.db, or PostgresStore at
//     storage.postgres_url (storage.backend) -> Analyzer
//     -> encoders (the configured dense encoder, the hashed one) -> Router
//     -> MemoryBank -> GroundedResponder [-> LlmResponder, when llm.base_url is set] -> ChatEngine
//
// With a store shared by replicas (PostgreSQL) a ReplicaFollower then keeps the bank up to date
// with the other replicas' writes.
//
// and tears them down in the reverse order, so the bank flushes into a store that is still open
// and the engine never outlives the bank it reads. Nothing here touches the terminal: errors come
// back as a Status whose message names the directory or file involved.
//
// Thread-safety: the accessors may be called from any thread; the objects they return document
// their own guarantees (all of them are safe for concurrent use). The Runtime itself must outlive
// every reference handed out.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <mann/chat/chat_engine.h>
#include <mann/chat/llm_responder.h>
#include <mann/chat/responder.h>
#include <mann/config/config.h>
#include <mann/core/clock.h>
#include <mann/core/memory_bank.h>
#include <mann/core/status.h>
#include <mann/encode/hashed_encoder.h>
#include <mann/encode/router.h>
#include <mann/metrics/registry.h>
#include <mann/runtime/replica_follower.h>
#include <mann/store/store.h>
#include <mann/text/analyzer.h>

namespace mann::runtime {

// Creates `dir` and any missing parents with mode 0700 (existing directories keep their mode).
// FailedPrecondition naming the directory when it cannot be created or is not a directory.
Status EnsureDataDir(const std::string& dir);

// The database file inside a data directory.
std::string DatabasePath(const std::string& data_dir);

// Opens the store storage.backend names: SqliteStore at DatabasePath(storage.data_dir) (the
// directory must exist), or PostgresStore at storage.postgres_url.
Result<std::unique_ptr<store::Store>> OpenStore(const config::StorageConfig& storage);

// Translates the memory and retrieval settings; InvalidArgument naming the key for a fusion
// method that index::ParseFusionMethod does not know.
Result<BankOptions> BankOptionsFromConfig(const config::Config& config);

// The language-model responder the llm.* settings describe, falling back to `fallback` (which
// must outlive it). InvalidArgument naming the key for settings the client refuses.
Result<std::unique_ptr<chat::LlmResponder>> MakeLlmResponder(const config::LlmConfig& llm,
                                                             chat::Responder& fallback);

// Applies log.level and log.file to every logger of the process.
Status ConfigureLogging(const config::LogConfig& log);

// The sentence encoder's directory: encoder.model_dir when set; otherwise the first of
// <binary dir>/../models/use-lite and <binary dir>/../share/mann/models/use-lite that holds a
// model.json (the first when neither does, so the error names where it was looked for).
std::string ResolveModelDir(const config::EncoderConfig& encoder);

// What the dense encoding of this process is, for logs, `mann stats` and metrics.
struct EncoderStatus {
  std::string configured;       // encoder.kind
  std::string active;           // the kind in use: differs from configured after a fallback
  std::string fallback_reason;  // why the configured encoder is not in use; empty when it is
  std::string description;      // the router's Describe()
  bool fallback() const { return !fallback_reason.empty(); }
};

class Runtime {
 public:
  // Configures logging, creates the data directory and opens everything. `clock` must outlive
  // the Runtime. On failure nothing stays open.
  // `bank_open` is passed to MemoryBank::Open (progress of re-embedding, mann reindex).
  // An encoder that cannot start (model files missing or damaged, remote endpoint down) is not
  // an error: the runtime falls back (remote -> use-lite -> hashed), logs one warning and says
  // so in encoder_status().
  static Result<std::unique_ptr<Runtime>> Open(const config::Config& config,
                                               const Clock& clock = SystemClock::Instance(),
                                               OpenOptions bank_open = {});

  // Flushes queued bookkeeping, then closes in reverse order of opening.
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const config::Config& config() const { return config_; }
  // The SQLite file; for PostgreSQL the store's Describe() (the URL without password).
  const std::string& database_path() const { return database_path_; }
  const Clock& clock() const { return clock_; }

  store::Store& store() { return *store_; }
  const text::Analyzer& analyzer() const { return *analyzer_; }
  const encode::Router& router() const { return *router_; }
  // For a face that adds to the router after Open: `mann serve` puts the shared embedding tier
  // (Redis) behind its cache.
  encode::Router& mutable_router() { return *router_; }
  const EncoderStatus& encoder_status() const { return encoder_status_; }
  MemoryBank& bank() { return *bank_; }
  // Follows the other replicas' writes; nullptr unless the store is shared (PostgreSQL).
  ReplicaFollower* follower() { return follower_.get(); }
  chat::ChatEngine& chat() { return *engine_; }
  // The language-model responder, or nullptr when llm.base_url is empty.
  chat::LlmResponder* llm() { return llm_.get(); }

 private:
  Runtime(config::Config config, const Clock& clock);
  Status OpenEncoders();
  Status RegisterMetrics();

  config::Config config_;
  std::string database_path_;
  const Clock& clock_;

  // Declared in opening order: members are destroyed bottom-up, each before what it uses.
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<text::Analyzer> analyzer_;
  std::unique_ptr<encode::HashedEncoder> hashed_;
  std::unique_ptr<encode::Encoder> dense_;  // the sentence or remote encoder; null in fallback
  std::unique_ptr<encode::Router> router_;
  EncoderStatus encoder_status_;
  std::unique_ptr<MemoryBank> bank_;
  std::unique_ptr<ReplicaFollower> follower_;  // null unless store_->SharedByReplicas()
  std::unique_ptr<chat::GroundedResponder> responder_;
  std::unique_ptr<chat::LlmResponder> llm_;  // falls back to responder_
  std::unique_ptr<chat::ChatEngine> engine_;
  // Scrape-time metrics that read the members above; declared last, so removed first.
  std::vector<metrics::CallbackHandle> metrics_;
};

}  // namespace mann::runtime
