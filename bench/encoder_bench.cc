// Encoders side by side in one run: the USE-lite forward pass and the hashed n-gram encoder on the
// same sentences, so their ratio holds however busy the machine is.
//
//   build/encoder_bench --benchmark_min_time=1 [--model_dir=models/use-lite]
//
// The model comes from scripts/fetch-model.sh. Results are kept in docs/benchmarks.md.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <mann/encode/hashed_encoder.h>
#include <mann/encode/use_lite_encoder.h>

namespace mann::encode {
namespace {

std::string model_dir = "models/use-lite";

// A 20-word sentence: the size of a typical chat message.
const std::string kTwentyWords =
    "Last summer my sister and I took the night train from Hanoi to Hue and ate noodles at dawn";

const std::vector<std::string>& Mixed() {
  static const std::vector<std::string> sentences = {
      kTwentyWords,
      "I live in Hanoi.",
      "My favourite food is beef pho with lots of basil and lime.",
      "Remind me to call the dentist on Tuesday at 3pm.",
      "Our team ships the new release next Friday, if the tests pass.",
      "tôi thích phở bò",
      "The cat sleeps on the warm laptop every afternoon.",
      "What did I tell you about my brother's new job?",
  };
  return sentences;
}

UseLiteEncoder& Use(benchmark::State& state) {
  static auto loaded = UseLiteEncoder::Load(model_dir);
  if (!loaded.ok()) {
    state.SkipWithError(loaded.status().ToString().c_str());
    std::exit(1);  // a benchmark without its model measures nothing: fail loudly
  }
  return **loaded;
}

void BM_UseLiteTwentyWords(benchmark::State& state) {
  UseLiteEncoder& use = Use(state);
  for (auto _ : state) {
    auto v = use.Encode(kTwentyWords);
    benchmark::DoNotOptimize(v);
  }
  state.counters["sentences_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_UseLiteTwentyWords)->Unit(benchmark::kMillisecond);

void BM_UseLiteMixed(benchmark::State& state) {
  UseLiteEncoder& use = Use(state);
  std::vector<Vector> out;
  for (auto _ : state) {
    if (!use.EncodeBatch(Mixed(), &out).ok()) state.SkipWithError("encode failed");
  }
  state.counters["sentences_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * Mixed().size()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_UseLiteMixed)->Unit(benchmark::kMillisecond);

void BM_HashedMixed(benchmark::State& state) {
  HashedEncoder hashed;
  std::vector<Vector> out;
  for (auto _ : state) {
    if (!hashed.EncodeBatch(Mixed(), &out).ok()) state.SkipWithError("encode failed");
  }
  state.counters["sentences_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * Mixed().size()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_HashedMixed)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace mann::encode

int main(int argc, char** argv) {
  // --model_dir=DIR is ours; everything else goes to Google Benchmark.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--model_dir=", 12) == 0) {
      mann::encode::model_dir = argv[i] + 12;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
