#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <sys/stat.h>

#include <mann/cache/embedding_cache.h>
#include <mann/core/log.h>
#include <mann/encode/remote_encoder.h>
#include <mann/encode/use_lite_encoder.h>
#include <mann/index/fusion.h>
#include <mann/runtime/runtime.h>
#include <mann/store/postgres_store.h>
#include <mann/store/sqlite_store.h>
#include <mann/text/gloss.h>

namespace mann::runtime {
namespace {

namespace fs = std::filesystem;

Status DataDirError(const std::string& dir, const std::string& what) {
  return FailedPreconditionError(
      fmt::format("cannot use data directory {}: {}; set storage.data_dir (MANN_DATA_DIR or "
                  "--data-dir) to a writable directory",
                  dir, what));
}

// mkdir for one path component; an existing directory is fine.
Status MakeOne(const std::string& path, const std::string& dir) {
  if (::mkdir(path.c_str(), 0700) == 0) return Status::Ok();
  const int err = errno;
  struct stat st {};
  if (err == EEXIST && ::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::Ok();
    return DataDirError(dir, path + " exists and is not a directory");
  }
  return DataDirError(dir, fmt::format("mkdir {}: {}", path, std::strerror(err)));
}

}  // namespace

Status EnsureDataDir(const std::string& dir) {
  if (dir.empty()) return DataDirError("\"\"", "the path is empty");

  // Walk the components left to right, as `mkdir -p` does, so each missing parent gets 0700 too.
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    const std::string prefix = dir.substr(0, pos);
    if (prefix.empty() || prefix == "/") continue;
    MANN_RETURN_IF_ERROR(MakeOne(prefix, dir));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return DataDirError(dir, std::strerror(errno));
  }
  return Status::Ok();
}

std::string DatabasePath(const std::string& data_dir) {
  if (!data_dir.empty() && data_dir.back() == '/') return data_dir + "mann.db";
  return data_dir + "/mann.db";
}

Result<std::unique_ptr<store::Store>> OpenStore(const config::StorageConfig& storage) {
  if (storage.backend == "postgres") {
    store::PostgresOptions options;
    options.url = storage.postgres_url;
    if (storage.postgres_connect_timeout.count() > 0) {
      options.connect_timeout = storage.postgres_connect_timeout;
    }
    if (storage.postgres_statement_timeout.count() > 0) {
      options.statement_timeout = storage.postgres_statement_timeout;
    }
    MANN_ASSIGN_OR_RETURN(auto pg, store::PostgresStore::Open(options));
    return std::unique_ptr<store::Store>(std::move(pg));
  }
  if (storage.backend != "sqlite" && !storage.backend.empty()) {
    return InvalidArgumentError(fmt::format(
        "storage.backend must be one of: sqlite, postgres, got \"{}\"", storage.backend));
  }
  store::SqliteOptions options;
  options.path = DatabasePath(storage.data_dir);
  MANN_ASSIGN_OR_RETURN(auto sqlite, store::SqliteStore::Open(options));
  return std::unique_ptr<store::Store>(std::move(sqlite));
}

Result<BankOptions> BankOptionsFromConfig(const config::Config& config) {
  BankOptions o;
  o.memory_size = static_cast<std::size_t>(config.memory.memory_size);
  o.max_memory_capacity = static_cast<std::size_t>(config.memory.max_memory_capacity);
  o.update_threshold = config.memory.update_threshold;
  o.duplicate_threshold = config.memory.duplicate_threshold;

  const auto method = index::ParseFusionMethod(config.retrieval.fusion);
  if (!method) {
    return InvalidArgumentError(fmt::format(
        "retrieval.fusion must be one of: weighted_sum, rrf, got \"{}\"", config.retrieval.fusion));
  }
  o.fusion.method = *method;
  o.fusion.dense_weight = static_cast<float>(config.retrieval.dense_weight);
  o.fusion.lexical_weight = static_cast<float>(config.retrieval.lexical_weight);
  o.fusion.lexical_confidence = config.retrieval.lexical_confidence;
  o.recency_half_life_days = config.retrieval.recency_half_life_days;
  o.recency_weight = config.retrieval.recency_weight;
  o.importance_boost = config.retrieval.importance_boost;
  o.sharpening = config.retrieval.sharpening;
  MANN_RETURN_IF_ERROR(ValidateBankOptions(o));
  return o;
}

Status ConfigureLogging(const config::LogConfig& log) {
  log::LogOptions options;
  options.level = log.level.empty() ? std::string("info") : log.level;
  options.file = log.file;
  options.format = log.format.empty() ? std::string("text") : log.format;
  return log::Configure(options);
}

std::string ResolveModelDir(const config::EncoderConfig& encoder) {
  if (!encoder.model_dir.empty()) return encoder.model_dir;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const fs::path base = ec ? fs::path(".") : exe.parent_path().parent_path();
  const fs::path candidates[] = {base / "models" / "use-lite",
                                 base / "share" / "mann" / "models" / "use-lite"};
  for (const fs::path& dir : candidates) {
    if (fs::exists(dir / "model.json", ec)) return dir.string();
  }
  return candidates[0].string();
}

Status Runtime::OpenEncoders() {
  const config::EncoderConfig& c = config_.encoder;
  auto logger = log::Get("encoder");

  encode::HashedEncoderOptions hashed_options;
  if (c.dimension > 0) hashed_options.dimension = static_cast<std::size_t>(c.dimension);
  auto hashed = encode::HashedEncoder::Create(hashed_options);
  if (!hashed.ok()) return hashed.status().WithContext("encoder.dimension");
  hashed_ = std::make_unique<encode::HashedEncoder>(std::move(hashed).value());

  encoder_status_.configured = c.kind.empty() ? std::string("hashed") : c.kind;
  std::vector<std::string> reasons;  // of each encoder that could not start, in order tried
  std::string kind = encoder_status_.configured;

  if (kind == "remote") {
    encode::RemoteEncoderOptions remote;
    remote.base_url = c.url;
    remote.model = c.model;
    remote.api_key = c.api_key;
    remote.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(c.timeout);
    auto created = encode::RemoteEncoder::Create(remote);
    if (created.ok()) {
      dense_ = std::move(created).value();
    } else {
      reasons.push_back(created.status().message());  // names the endpoint already
      kind = "use-lite";
    }
  }
  if (kind == "use-lite") {
    const std::string dir = ResolveModelDir(c);
    auto loaded = encode::UseLiteEncoder::Load(dir);
    if (loaded.ok()) {
      dense_ = std::move(loaded).value();
    } else {
      reasons.push_back(fmt::format("sentence encoder: {}", loaded.status().message()));
      kind = "hashed";
    }
  }

  // cache.enabled (MANN_ENABLE_CACHING) switches every cache off, the embeddings' included.
  const std::size_t cache =
      config_.cache.enabled ? static_cast<std::size_t>(std::max(0, c.cache_size)) : 0;
  if (kind == "remote") {
    router_ = encode::Router::Single(*dense_, cache);
  } else if (kind == "use-lite") {
    const text::Glosser* gloss = c.gloss_vietnamese ? &text::Glosser::BuiltIn() : nullptr;
    router_ = encode::Router::Sentence(*dense_, gloss, *hashed_, cache);
  } else {
    router_ = encode::Router::Single(*hashed_, cache);
  }
  encoder_status_.active = kind;
  encoder_status_.description = router_->Describe();
  if (!reasons.empty()) {
    std::string joined;
    for (const std::string& r : reasons) joined += (joined.empty() ? "" : "; ") + r;
    encoder_status_.fallback_reason = joined;
    // One line, at warning level: the service works, with poorer recall by meaning.
    logger->warn("encoder.kind={} is unavailable ({}); falling back to {}",
                 encoder_status_.configured, joined, encoder_status_.description);
  } else {
    logger->debug("encoders: {}", encoder_status_.description);
  }
  return Status::Ok();
}

Result<std::unique_ptr<chat::LlmResponder>> MakeLlmResponder(const config::LlmConfig& llm,
                                                             chat::Responder& fallback) {
  llm::ClientOptions client;
  client.base_url = llm.base_url;
  client.model = llm.model;
  client.api_key = llm.api_key;
  client.connect_timeout = llm.connect_timeout;
  client.timeout = llm.timeout;
  client.temperature = llm.temperature;
  MANN_ASSIGN_OR_RETURN(auto chat_client, llm::ChatClient::Create(std::move(client)));
  chat::LlmResponderOptions options;
  options.max_prompt_tokens = static_cast<std::size_t>(llm.max_prompt_tokens);
  options.breaker.failure_threshold = static_cast<int>(llm.breaker_failures);
  options.breaker.open_duration = llm.breaker_open_duration;
  log::Get("runtime")->info(
      "chat replies through the model endpoint={} model={} "
      "memory_decisions={}",
      chat_client->display_url(), llm.model, llm.memory_decisions);
  return chat::LlmResponder::Create(std::move(chat_client), fallback, options);
}

Status Runtime::RegisterMetrics() {
  metrics::Registry& registry = metrics::Registry::Default();
  MANN_ASSIGN_OR_RETURN(
      auto fallback,
      registry.AddGaugeCallback(
          "mann_encoder_fallback",
          "1 when the configured dense encoder (label configured) could not start and a "
          "stand-in serves; 0 otherwise.",
          {"configured"}, [this] {
            return std::vector<metrics::Sample>{
                {{encoder_status_.configured}, encoder_status_.fallback() ? 1.0 : 0.0}};
          }));
  metrics_.push_back(std::move(fallback));
  if (router_->cache() != nullptr) {
    // mann_cache_requests_total{cache="embedding"}, beside the search cache's and the shared
    // embedding tier's series (cache="embedding_shared", mann serve with Redis).
    MANN_ASSIGN_OR_RETURN(auto local,
                          cache::RegisterLocalEmbeddingMetrics(*router_->cache(), registry));
    metrics_.push_back(std::move(local));
  }
  return Status::Ok();
}

Runtime::Runtime(config::Config config, const Clock& clock)
    : config_(std::move(config)), clock_(clock) {}

Runtime::~Runtime() {
  if (bank_) {
    Status flushed = bank_->Flush();
    if (!flushed.ok())
      log::Get("runtime")->warn("flush at shutdown failed: {}", flushed.ToString());
  }
}

Result<std::unique_ptr<Runtime>> Runtime::Open(const config::Config& config, const Clock& clock,
                                               OpenOptions bank_open) {
  MANN_RETURN_IF_ERROR(ConfigureLogging(config.log));
  std::unique_ptr<Runtime> rt(new Runtime(config, clock));

  // Storage first: everything else is rebuilt from it. The data directory is made for both
  // backends: it also holds the chat history and is where the disk probe looks.
  MANN_RETURN_IF_ERROR(EnsureDataDir(config.storage.data_dir));
  MANN_ASSIGN_OR_RETURN(rt->store_, OpenStore(config.storage));
  rt->database_path_ = config.storage.backend == "postgres" ? rt->store_->Describe()
                                                            : DatabasePath(config.storage.data_dir);
  // Read before the bank loads, so a write another replica commits during the load is not
  // missed by the follower (it is applied a second time instead, which is harmless).
  std::int64_t follow_from = 0;
  if (rt->store_->SharedByReplicas()) {
    MANN_ASSIGN_OR_RETURN(follow_from, rt->store_->LastChangeSeq());
  }

  // Text analysis and the dense encoders.
  rt->analyzer_ = std::make_unique<text::Analyzer>();
  MANN_RETURN_IF_ERROR(rt->OpenEncoders());

  // The bank loads every stored entry; the chat engine sits on top of it.
  MANN_ASSIGN_OR_RETURN(BankOptions bank_options, BankOptionsFromConfig(config));
  // In a fallback the stored vectors belong to the configured encoder: vectors re-made for the
  // stand-in stay in memory, so the configured encoder finds its own again once it is back.
  if (rt->encoder_status_.fallback()) bank_open.write_back = false;
  MANN_ASSIGN_OR_RETURN(rt->bank_, MemoryBank::Open(bank_options, *rt->store_, *rt->router_,
                                                    *rt->analyzer_, clock, std::move(bank_open)));
  if (rt->store_->SharedByReplicas()) {
    MANN_ASSIGN_OR_RETURN(rt->follower_,
                          ReplicaFollower::Start(*rt->store_, *rt->bank_, follow_from));
  }
  rt->responder_ = std::make_unique<chat::GroundedResponder>();
  chat::Responder* responder = rt->responder_.get();
  if (!config.llm.base_url.empty()) {
    MANN_ASSIGN_OR_RETURN(rt->llm_, MakeLlmResponder(config.llm, *rt->responder_));
    responder = rt->llm_.get();
  }
  chat::ChatOptions chat_options;
  chat_options.min_relevance = config.chat.min_relevance;
  rt->engine_ =
      std::make_unique<chat::ChatEngine>(*rt->bank_, *rt->store_, *responder, clock, chat_options);
  if (rt->llm_ != nullptr && config.llm.memory_decisions) {
    rt->engine_->SetMemoryDecider(rt->llm_.get());
  }

  MANN_RETURN_IF_ERROR(rt->RegisterMetrics());
  log::Get("runtime")->debug("runtime opened store={} memories={}", rt->store_->Describe(),
                             rt->bank_->TotalCount());
  return rt;
}

}  // namespace mann::runtime
