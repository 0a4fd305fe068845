// Encoders side by side in one run: the USE-lite forward pass and the hashed n-gram encoder on the
// same sentences, so their ratio holds however busy the machine is.
//
//   build/encoder_bench --benchmark_min_time=1 [--model_dir=models/use-lite] [--kernel=NAME]
//                       [--sentences=FILE]
//
// --kernel picks the USE-lite matrix kernel (auto, portable, avx2, avx512; default auto, the
// widest the CPU runs). --sentences=FILE (one sentence a line) adds three benchmarks on that
// file, which bench/encoder_vs_reference.sh sets beside the JavaScript reference:
//   BM_UseLiteFileSingle      every sentence encoded alone, one Encode() each;
//   BM_UseLiteFileBatch       EncodeBatch() on consecutive slices of 32 sentences;
//   BM_UseLiteFileTwentyWords the sentences of exactly 20 words, one Encode() each.
// One iteration is one pass over its sentences; the `sentences` counter says how many.
//
// Everything runs on the calling thread. The model comes from scripts/fetch-model.sh. Results
// are kept in docs/benchmarks.md.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <mann/encode/hashed_encoder.h>
#include <mann/encode/use_lite_encoder.h>
#include <mann/encode/use_tokenizer.h>

namespace mann::encode {
namespace {

std::string model_dir = "models/use-lite";
UseLiteKernel kernel = UseLiteKernel::kAuto;
constexpr std::size_t kFileBatch = 32;

// A 20-word sentence: the size of a typical chat message.
const std::string kTwentyWords =
    "Last summer my sister and I took the slow night train from Hanoi to Hue and ate noodles at "
    "dawn";

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

int Words(const std::string& s) {
  std::istringstream in(s);
  std::string word;
  int n = 0;
  while (in >> word) ++n;
  return n;
}

// A benchmark without its model measures nothing: fail loudly.
[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "encoder_bench: " << message << "\n";
  std::exit(1);
}

UseLiteEncoder& Use() {
  static auto loaded = UseLiteEncoder::Load(model_dir, kernel);
  if (!loaded.ok()) Fail(loaded.status().ToString());
  return **loaded;
}

void SetRates(benchmark::State& state, std::size_t sentences_per_iteration) {
  const auto n = static_cast<double>(sentences_per_iteration);
  state.counters["sentences"] = n;
  state.counters["sentences_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * n, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(UseLiteKernelName(Use().kernel())));
}

void BM_UseLiteTwentyWords(benchmark::State& state) {
  UseLiteEncoder& use = Use();
  for (auto _ : state) {
    auto v = use.Encode(kTwentyWords);
    benchmark::DoNotOptimize(v);
  }
  SetRates(state, 1);
}
BENCHMARK(BM_UseLiteTwentyWords)->Unit(benchmark::kMillisecond);

// The 8 sentences in one EncodeBatch() call (one group).
void BM_UseLiteMixed(benchmark::State& state) {
  UseLiteEncoder& use = Use();
  std::vector<Vector> out;
  for (auto _ : state) {
    if (!use.EncodeBatch(Mixed(), &out).ok()) state.SkipWithError("encode failed");
  }
  SetRates(state, Mixed().size());
}
BENCHMARK(BM_UseLiteMixed)->Unit(benchmark::kMillisecond);

// The same 8 sentences one Encode() at a time.
void BM_UseLiteMixedOneByOne(benchmark::State& state) {
  UseLiteEncoder& use = Use();
  for (auto _ : state) {
    for (const std::string& s : Mixed()) {
      auto v = use.Encode(s);
      benchmark::DoNotOptimize(v);
    }
  }
  SetRates(state, Mixed().size());
}
BENCHMARK(BM_UseLiteMixedOneByOne)->Unit(benchmark::kMillisecond);

// The tokenizer alone, to show its share of an Encode().
void BM_UseTokenizerMixed(benchmark::State& state) {
  static auto tokenizer = UseTokenizer::FromVocabFile(model_dir + "/vocab.json");
  if (!tokenizer.ok()) Fail(tokenizer.status().ToString());
  for (auto _ : state) {
    for (const std::string& s : Mixed()) {
      auto ids = tokenizer->Encode(s);
      benchmark::DoNotOptimize(ids);
    }
  }
  state.counters["sentences_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * Mixed().size()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_UseTokenizerMixed)->Unit(benchmark::kMicrosecond);

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

// --sentences=FILE.

void EncodeEachAlone(benchmark::State& state, const std::vector<std::string>& sentences) {
  UseLiteEncoder& use = Use();
  for (auto _ : state) {
    for (const std::string& s : sentences) {
      auto v = use.Encode(s);
      benchmark::DoNotOptimize(v);
    }
  }
  SetRates(state, sentences.size());
}

void EncodeInBatches(benchmark::State& state, const std::vector<std::string>& sentences) {
  UseLiteEncoder& use = Use();
  std::vector<Vector> out;
  for (auto _ : state) {
    for (std::size_t i = 0; i < sentences.size(); i += kFileBatch) {
      const std::size_t n = std::min(kFileBatch, sentences.size() - i);
      if (!use.EncodeBatch(std::span(sentences).subspan(i, n), &out).ok()) {
        state.SkipWithError("encode failed");
      }
    }
  }
  SetRates(state, sentences.size());
}

void RegisterFileBenchmarks(const std::string& path) {
  std::ifstream in(path);
  if (!in) Fail("cannot read --sentences file " + path);
  static std::vector<std::string> all, twenty;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (Words(line) == 0) continue;
    all.push_back(line);
    if (Words(line) == 20) twenty.push_back(line);
  }
  if (all.empty()) Fail(path + " has no sentences");
  benchmark::RegisterBenchmark("BM_UseLiteFileSingle", [](benchmark::State& s) {
    EncodeEachAlone(s, all);
  })->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_UseLiteFileBatch", [](benchmark::State& s) {
    EncodeInBatches(s, all);
  })->Unit(benchmark::kMillisecond);
  if (!twenty.empty()) {
    benchmark::RegisterBenchmark("BM_UseLiteFileTwentyWords", [](benchmark::State& s) {
      EncodeEachAlone(s, twenty);
    })->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace mann::encode

int main(int argc, char** argv) {
  // --model_dir, --kernel and --sentences are ours; everything else goes to Google Benchmark.
  std::vector<char*> rest;
  std::string sentences;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--model_dir=", 12) == 0) {
      mann::encode::model_dir = argv[i] + 12;
    } else if (std::strncmp(argv[i], "--kernel=", 9) == 0) {
      auto parsed = mann::encode::ParseUseLiteKernel(argv[i] + 9);
      if (!parsed.ok()) mann::encode::Fail(parsed.status().ToString());
      mann::encode::kernel = *parsed;
    } else if (std::strncmp(argv[i], "--sentences=", 12) == 0) {
      sentences = argv[i] + 12;
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (!sentences.empty()) mann::encode::RegisterFileBenchmarks(sentences);
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
