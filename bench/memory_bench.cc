// Benchmarks of the memory bank over a real SQLite file: add and search at 1k, 10k and 100k
// memories in one namespace, start-up with 100k memories, and durable adds arriving as a stream
// from several writers (group commit) against one writer at a time.
//
//   build/memory_bench --benchmark_min_time=2 --benchmark_counters_tabular=true
//
// Results and their commands are kept in docs/benchmarks.md.
#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <mann/core/id.h>
#include <mann/core/memory_bank.h>
#include <mann/encode/hashed_encoder.h>
#include <mann/store/sqlite_store.h>

namespace mann {
namespace {

namespace fs = std::filesystem;

// Synthetic conversational facts, English and Vietnamese, distinct by construction.
class Corpus {
 public:
  explicit Corpus(std::uint64_t seed) : rng_(seed) {}

  std::string Next() {
    static const char* kSubjects[] = {"I",   "My sister",  "My friend Nam", "Our team", "My boss",
                                      "Tôi", "Em gái tôi", "Bạn tôi",       "Anh Minh", "Chị Lan"};
    static const char* kVerbs[] = {"likes", "visited", "works at",   "bought", "talked about",
                                   "thích", "đã đến",  "làm việc ở", "đã mua", "nói về"};
    static const char* kObjects[] = {
        "Hanoi",           "the old bookshop", "a red bicycle",     "phở bò",  "the river market",
        "Đà Nẵng",         "cà phê sữa đá",    "the jazz club",     "Huế",     "a blue notebook",
        "the night train", "bánh mì",          "the mountain lake", "Sài Gòn", "a small garden"};
    std::uniform_int_distribution<int> s(0, 9), v(0, 9), o(0, 14), n(0, 99999);
    const int id = static_cast<int>(counter_++);
    return std::string(kSubjects[s(rng_)]) + " " + kVerbs[v(rng_)] + " " + kObjects[o(rng_)] +
           " on day " + std::to_string(id) + " with note " + std::to_string(n(rng_));
  }

 private:
  std::mt19937_64 rng_;
  std::uint64_t counter_ = 0;
};

BankOptions BigBank() {
  BankOptions o;
  o.memory_size = 100'000;
  o.max_memory_capacity = 1'000'000;
  return o;
}

fs::path FreshDir(const std::string& name) {
  fs::path dir =
      fs::temp_directory_path() / ("mann_bench_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A database with `n` memories written straight through the store in large batches, which is
// how it would look after a long life of single adds.
struct PrefillCache {
  ~PrefillCache() {
    for (const auto& [n, dir] : dirs) fs::remove_all(dir);
  }
  std::map<std::size_t, fs::path> dirs;
};

fs::path Prefilled(std::size_t n) {
  static PrefillCache cache;
  if (auto it = cache.dirs.find(n); it != cache.dirs.end()) return it->second;
  fs::path dir = FreshDir("prefill_" + std::to_string(n));
  auto store = store::SqliteStore::Open({.path = (dir / "mann.db").string()});
  if (!store.ok()) throw std::runtime_error(store.status().ToString());
  text::Analyzer analyzer;
  encode::HashedEncoder encoder;
  FakeClock clock;
  IdGenerator ids(clock, 42);
  Corpus corpus(7);
  store::Mutation m;
  for (std::size_t i = 0; i < n; ++i) {
    store::StoredEntry se;
    se.entry.id = ids.Next();
    se.entry.ns = "default";
    se.entry.content = corpus.Next();
    se.entry.content_hash = text::ContentKey(se.entry.content);
    se.entry.created_ms = se.entry.updated_ms = se.entry.last_access_ms = clock.NowMs();
    se.terms = analyzer.Terms(se.entry.content);
    se.encoder_id = encoder.Id();
    se.embedding = *encoder.Encode(se.entry.content);
    m.upserts.push_back(std::move(se));
    if (m.upserts.size() == 2000 || i + 1 == n) {
      if (auto st = (*store)->Commit(std::move(m)); !st.ok())
        throw std::runtime_error(st.ToString());
      m = {};
    }
  }
  cache.dirs[n] = dir;
  return dir;
}

// A bank opened over a copy of the prefilled database, so adds do not leak between runs.
struct Fixture {
  explicit Fixture(std::size_t n, const std::string& name) {
    dir = FreshDir(name);
    fs::copy_file(Prefilled(n) / "mann.db", dir / "mann.db");
    store = std::move(store::SqliteStore::Open({.path = (dir / "mann.db").string()})).value();
    bank =
        std::move(MemoryBank::Open(BigBank(), *store, encoder, analyzer, SystemClock::Instance()))
            .value();
  }
  ~Fixture() {
    bank.reset();
    store.reset();
    fs::remove_all(dir);
  }
  fs::path dir;
  text::Analyzer analyzer;
  encode::HashedEncoder encoder;
  std::unique_ptr<store::SqliteStore> store;
  std::unique_ptr<MemoryBank> bank;
};

void BM_Search(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  Fixture f(n, "search");
  Corpus queries(99);
  std::vector<std::string> qs;
  for (int i = 0; i < 256; ++i) qs.push_back(queries.Next().substr(0, 40));
  std::size_t i = 0;
  for (auto _ : state) {
    SearchRequest r;
    r.query = qs[i++ % qs.size()];
    r.top_k = 5;
    auto hits = f.bank->Search(r);
    if (!hits.ok()) state.SkipWithError(hits.status().ToString().c_str());
    benchmark::DoNotOptimize(hits);
  }
  state.counters["memories"] = static_cast<double>(n);
}
BENCHMARK(BM_Search)->Arg(1'000)->Arg(10'000)->Arg(100'000)->Unit(benchmark::kMicrosecond);

void BM_Add(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  Fixture f(n, "add");
  Corpus corpus(1234);
  for (auto _ : state) {
    AddRequest r;
    r.content = corpus.Next();
    auto out = f.bank->Add(r);
    if (!out.ok()) state.SkipWithError(out.status().ToString().c_str());
  }
  state.counters["memories"] = static_cast<double>(n);
  state.counters["adds_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Add)->Arg(1'000)->Arg(10'000)->Arg(100'000)->Unit(benchmark::kMicrosecond);

// Durable adds from `threads` concurrent writers; with more than one, commits are grouped.
void BM_StreamedAdds(benchmark::State& state) {
  const int writers = static_cast<int>(state.range(0));
  Fixture f(1'000, "stream");
  constexpr int kPerWriter = 500;
  std::atomic<int> seed{0};
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&] {
        Corpus corpus(1000 + static_cast<std::uint64_t>(seed.fetch_add(1)));
        for (int i = 0; i < kPerWriter; ++i) {
          AddRequest r;
          r.content = corpus.Next() + " writer " + std::to_string(seed.load());
          f.bank->Add(r).IgnoreError();
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  state.counters["writers"] = writers;
  state.counters["adds_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * writers * kPerWriter, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_StreamedAdds)->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Startup(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const fs::path db = Prefilled(n) / "mann.db";
  text::Analyzer analyzer;
  encode::HashedEncoder encoder;
  for (auto _ : state) {
    auto store = store::SqliteStore::Open({.path = db.string()});
    auto bank = MemoryBank::Open(BigBank(), **store, encoder, analyzer, SystemClock::Instance());
    if (!bank.ok()) state.SkipWithError(bank.status().ToString().c_str());
    benchmark::DoNotOptimize(bank);
    // Tearing the bank down is not part of a start-up.
    state.PauseTiming();
    bank = InternalError("released");
    store = InternalError("released");
    state.ResumeTiming();
  }
  state.counters["memories"] = static_cast<double>(n);
}
BENCHMARK(BM_Startup)->Arg(100'000)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace mann

BENCHMARK_MAIN();
