// How far simulated reduced precision (int8 and bf16 products, UseLitePrecisionSimulation)
// moves the sentence encoder's vectors from the reference's, on the golden inputs.
//
// For each variant (which products are rounded, and how) the program loads a simulated encoder,
// embeds the token ids of every golden record that has a reference vector, and reports the worst
// and median cosine to that vector, how many inputs fall below the golden tests' bound (0.9999),
// and the three worst inputs with their token counts. The figures are deterministic for a given
// build, kernel and golden file; docs/design/use-lite.md ("Reduced precision, measured") holds
// them and says what they mean.
//
//   build/precision_bench [--model_dir models/use-lite]
//                         [--golden tests/golden/use_lite_vectors.jsonl]
//                         [--kernel auto] [--json]
//
// Not a Google Benchmark program: it measures accuracy, not time, so it has its own main(). The
// build links it against benchmark::benchmark like every bench/*_bench.cc; nothing of that
// library is used. It takes about 10 s (one model load and 66 passes per variant).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <mann/core/status.h>
#include <mann/encode/use_lite_encoder.h>

namespace mann::precision {
namespace {

namespace json = boost::json;
using encode::UseLiteEncoder;
using encode::UseLiteKernel;
using encode::Vector;
using Sim = encode::UseLitePrecisionSimulation;

// The golden tests' bound: every input's cosine to the reference at least this.
constexpr double kMinCosine = 0.9999;
// How many of the worst inputs each row names.
constexpr std::size_t kWorstShown = 3;

// One line of the golden file (see scripts/use-reference/make-golden-vectors.mjs); `vector` is
// empty where the reference threw.
struct Golden {
  std::string text;
  std::vector<std::int32_t> ids;
  std::vector<float> vector;
};

// Reads the golden file as the encoder's tests do; a bad line is an error naming the line and
// the field.
Result<std::vector<Golden>> ReadGolden(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError(fmt::format("cannot open the golden file {}", path));
  std::vector<Golden> out;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string where = fmt::format("{} line {}", path, number);
    boost::system::error_code ec;
    const json::value value = json::parse(line, ec);
    if (ec || !value.is_object()) return InvalidArgumentError(where + ": not a JSON object");
    const json::object& o = value.as_object();
    Golden g;
    const json::value* text = o.if_contains("text");
    if (text == nullptr || !text->is_string()) {
      return InvalidArgumentError(where + ": \"text\" must be a string");
    }
    g.text = std::string(text->as_string());
    const json::value* ids = o.if_contains("token_ids");
    if (ids == nullptr || !ids->is_array()) {
      return InvalidArgumentError(where + ": \"token_ids\" must be an array of integers");
    }
    for (const json::value& id : ids->as_array()) {
      if (!id.is_int64()) {
        return InvalidArgumentError(where + ": \"token_ids\" must be an array of integers");
      }
      g.ids.push_back(static_cast<std::int32_t>(id.as_int64()));
    }
    const json::value* vector = o.if_contains("vector");
    if (vector == nullptr || !(vector->is_null() || vector->is_array())) {
      return InvalidArgumentError(where + ": \"vector\" must be an array of numbers or null");
    }
    if (vector->is_array()) {
      for (const json::value& x : vector->as_array()) {
        if (!x.is_number()) {
          return InvalidArgumentError(where + ": \"vector\" must be an array of numbers or null");
        }
        g.vector.push_back(static_cast<float>(x.to_number<double>()));
      }
    }
    out.push_back(std::move(g));
  }
  return out;
}

double Cosine(const Vector& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

struct Variant {
  std::string name;
  std::uint32_t products;
  Sim::Weights weights;
  int weight_bits;
  Sim::Activations activations;
  int activation_bits;
  int weight_group = 0;  // rows per weight scale; 0 for one scale per column
};

// The variants of docs/design/use-lite.md's table, in its order: (a)-(c) int8 products on more
// and more of the pass, (d) rounded weights alone, (e) bf16 weights, the s16 kernel's 11 bits,
// finer weight scales, then one product at a time and the least sensitive ones together.
std::vector<Variant> Variants() {
  constexpr std::uint32_t kFfn =
      Sim::kLayer0FfnIn | Sim::kLayer0FfnOut | Sim::kLayer1FfnIn | Sim::kLayer1FfnOut;
  constexpr std::uint32_t kAttention =
      Sim::kLayer0Qkv | Sim::kLayer0AttentionOut | Sim::kLayer1Qkv | Sim::kLayer1AttentionOut;
  constexpr std::uint32_t kAllButHead = Sim::kAllProducts & ~Sim::kHead;
  const Sim::Weights kInt = Sim::Weights::kInt;
  const Sim::Weights kBf16 = Sim::Weights::kBfloat16;
  const Sim::Activations kSym = Sim::Activations::kSymmetric;
  const Sim::Activations kAsym = Sim::Activations::kAsymmetric;
  const Sim::Activations kExact = Sim::Activations::kExact;

  std::vector<Variant> variants;
  const std::pair<std::string, std::uint32_t> sets[] = {
      {"a FFN", kFfn}, {"b FFN+attn", kFfn | kAttention}, {"c all but head", kAllButHead}};
  for (const auto& [set, products] : sets) {
    variants.push_back({set + ": w s8, x s8 sym", products, kInt, 8, kSym, 8});
    variants.push_back({set + ": w s8, x u8 asym", products, kInt, 8, kAsym, 8});
    variants.push_back({set + ": w s7, x u8 asym", products, kInt, 7, kAsym, 8});
    variants.push_back({set + ": w s8, x u7 asym", products, kInt, 8, kAsym, 7});
  }
  variants.push_back({"d FFN: w s8 only", kFfn, kInt, 8, kExact, 8});
  variants.push_back({"d FFN+attn: w s8 only", kFfn | kAttention, kInt, 8, kExact, 8});
  variants.push_back({"d all but head: w s8 only", kAllButHead, kInt, 8, kExact, 8});
  variants.push_back({"d all but head: w s7 only", kAllButHead, kInt, 7, kExact, 8});
  variants.push_back({"d all: w s8 only", Sim::kAllProducts, kInt, 8, kExact, 8});
  variants.push_back({"e all but head: w bf16 only", kAllButHead, kBf16, 8, kExact, 8});
  variants.push_back({"e all: w bf16 only", Sim::kAllProducts, kBf16, 8, kExact, 8});
  variants.push_back({"s16 kernel, all but head: w 11, x 11 sym", kAllButHead, kInt, 11, kSym, 11});
  // What finer weight scales buy: one scale per 64 or 32 rows of a column.
  variants.push_back(
      {"c all but head: w s8 /64 rows, x u8 asym", kAllButHead, kInt, 8, kAsym, 8, 64});
  variants.push_back(
      {"c all but head: w s8 /32 rows, x u8 asym", kAllButHead, kInt, 8, kAsym, 8, 32});
  variants.push_back({"a FFN: w s8 /32 rows, x u8 asym", kFfn, kInt, 8, kAsym, 8, 32});
  variants.push_back({"d all but head: w s8 /32 rows only", kAllButHead, kInt, 8, kExact, 8, 32});
  // Which products hurt most: one at a time, w s8 and x u8 asymmetric.
  const std::pair<std::string, std::uint32_t> singles[] = {
      {"L0 qkv", Sim::kLayer0Qkv},
      {"L0 attn out", Sim::kLayer0AttentionOut},
      {"L0 residual", Sim::kLayer0Residual},
      {"L0 FFN in", Sim::kLayer0FfnIn},
      {"L0 FFN out", Sim::kLayer0FfnOut},
      {"L1 qkv", Sim::kLayer1Qkv},
      {"L1 attn out", Sim::kLayer1AttentionOut},
      {"L1 FFN in", Sim::kLayer1FfnIn},
      {"L1 FFN out", Sim::kLayer1FfnOut},
      {"head", Sim::kHead}};
  for (const auto& [name, product] : singles) {
    variants.push_back({"only " + name + ": w s8, x u8 asym", product, kInt, 8, kAsym, 8});
  }
  // The least sensitive products together: do their errors add up?
  variants.push_back({"L1 attn out + L0 FFN out: w s8, x u8 asym",
                      Sim::kLayer1AttentionOut | Sim::kLayer0FfnOut, kInt, 8, kAsym, 8});
  variants.push_back(
      {"the four least sensitive: w s8, x u8 asym",
       Sim::kLayer1AttentionOut | Sim::kLayer0FfnOut | Sim::kLayer1FfnIn | Sim::kLayer1Qkv, kInt, 8,
       kAsym, 8});
  return variants;
}

struct Row {
  std::string name;
  // Every input's cosine to its reference vector, worst first.
  std::vector<std::pair<double, const Golden*>> cosines;

  double Worst() const { return cosines.front().first; }
  double Median() const {
    const std::size_t n = cosines.size();
    return (cosines[(n - 1) / 2].first + cosines[n / 2].first) / 2;
  }
  std::size_t Below() const {
    return std::count_if(cosines.begin(), cosines.end(),
                         [](const auto& c) { return c.first < kMinCosine; });
  }
};

Result<Row> Measure(const Variant& variant, const std::string& model_dir, UseLiteKernel kernel,
                    const std::vector<Golden>& golden) {
  Sim simulation;
  simulation.products = variant.products;
  simulation.weights = variant.weights;
  simulation.weight_bits = variant.weight_bits;
  simulation.activations = variant.activations;
  simulation.activation_bits = variant.activation_bits;
  simulation.weight_group = variant.weight_group;
  Result<std::unique_ptr<UseLiteEncoder>> encoder =
      UseLiteEncoder::Load(model_dir, kernel, simulation);
  if (!encoder.ok()) return encoder.status().WithContext(variant.name);
  Row row{variant.name, {}};
  for (const Golden& g : golden) {
    if (g.vector.empty()) continue;
    Result<Vector> v = (*encoder)->EmbedTokens(g.ids);
    if (!v.ok())
      return v.status().WithContext(fmt::format("{}, text \"{}\"", variant.name, g.text));
    row.cosines.emplace_back(Cosine(*v, g.vector), &g);
  }
  std::stable_sort(row.cosines.begin(), row.cosines.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  // The default pass is within 1e-11 of cosine 1, so a variant this close rounded nothing and
  // measures nothing; one far below is no longer the same model, which means a broken hook.
  if (row.Worst() >= 1.0 - 1e-9) {
    return InternalError(variant.name + ": the simulation rounded nothing");
  }
  if (row.Worst() <= 0.95) {
    return InternalError(fmt::format("{}: worst cosine {:.6f}, not the same model any more",
                                     variant.name, row.Worst()));
  }
  return row;
}

// Short and on one line, for a table cell: at most 24 bytes (never splitting a UTF-8 sequence),
// with newlines, tabs and the table's '|' escaped.
std::string Excerpt(const std::string& text) {
  std::size_t cut = std::min<std::size_t>(24, text.size());
  while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) ++cut;
  std::string out;
  for (char c : text.substr(0, cut)) {
    out += c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '|' ? "\\|" : std::string(1, c);
  }
  return out;
}

std::size_t TokensUsed(const Golden& g) {
  return std::min(g.ids.size(), UseLiteEncoder::kMaxTokens);
}

void PrintMarkdown(const std::vector<Row>& rows) {
  std::printf(
      "| variant | worst cosine | median cosine | inputs < 0.9999 | worst inputs (tokens) |\n"
      "| --- | ---: | ---: | ---: | --- |\n");
  for (const Row& row : rows) {
    std::string worst;
    for (std::size_t i = 0; i < kWorstShown && i < row.cosines.size(); ++i) {
      const Golden& g = *row.cosines[i].second;
      worst += fmt::format("{}\"{}\" ({})", i ? "; " : "", Excerpt(g.text), TokensUsed(g));
    }
    std::printf("%s\n",
                fmt::format("| {} | {:.6f} | {:.6f} | {} of {} | {} |", row.name, row.Worst(),
                            row.Median(), row.Below(), row.cosines.size(), worst)
                    .c_str());
  }
}

void PrintJson(const std::vector<Row>& rows, const std::string& golden_path, UseLiteKernel kernel) {
  json::array variants;
  for (const Row& row : rows) {
    json::array worst;
    for (std::size_t i = 0; i < kWorstShown && i < row.cosines.size(); ++i) {
      const Golden& g = *row.cosines[i].second;
      worst.push_back(json::object{
          {"text", g.text}, {"tokens", TokensUsed(g)}, {"cosine", row.cosines[i].first}});
    }
    variants.push_back(json::object{{"variant", row.name},
                                    {"worst_cosine", row.Worst()},
                                    {"median_cosine", row.Median()},
                                    {"inputs_below_bound", row.Below()},
                                    {"inputs", row.cosines.size()},
                                    {"worst_inputs", std::move(worst)}});
  }
  const json::object report{{"golden", golden_path},
                            {"kernel", std::string(encode::UseLiteKernelName(kernel))},
                            {"bound", kMinCosine},
                            {"variants", std::move(variants)}};
  std::printf("%s\n", json::serialize(report).c_str());
}

int Run(int argc, char** argv) {
  CLI::App app{"Simulated reduced precision of the USE-lite encoder against the reference"};
  std::string model_dir = "models/use-lite";
  std::string golden_path = "tests/golden/use_lite_vectors.jsonl";
  std::string kernel_name = "auto";
  bool as_json = false;
  app.add_option("--model_dir", model_dir, "the sentence encoder's files")->capture_default_str();
  app.add_option("--golden", golden_path, "reference vectors (JSON lines)")->capture_default_str();
  app.add_option("--kernel", kernel_name, "matrix kernel: auto, portable, avx2, avx512")
      ->capture_default_str();
  app.add_flag("--json", as_json, "print one JSON object instead of the markdown table");
  CLI11_PARSE(app, argc, argv);

  Result<UseLiteKernel> kernel = encode::ParseUseLiteKernel(kernel_name);
  if (!kernel.ok()) {
    std::fprintf(stderr, "precision_bench: --kernel: %s\n", kernel.status().ToString().c_str());
    return 2;
  }
  Result<std::vector<Golden>> golden = ReadGolden(golden_path);
  if (!golden.ok()) {
    std::fprintf(stderr, "precision_bench: %s\n", golden.status().ToString().c_str());
    return 2;
  }
  if (std::none_of(golden->begin(), golden->end(),
                   [](const Golden& g) { return !g.vector.empty(); })) {
    std::fprintf(stderr, "precision_bench: %s has no record with a reference vector\n",
                 golden_path.c_str());
    return 2;
  }
  // Resolves kAuto to the kernel actually run, for the report, and checks the model once.
  Result<std::unique_ptr<UseLiteEncoder>> plain = UseLiteEncoder::Load(model_dir, *kernel);
  if (!plain.ok()) {
    std::fprintf(stderr, "precision_bench: %s\n", plain.status().ToString().c_str());
    return 2;
  }
  const UseLiteKernel used = (*plain)->kernel();
  plain->reset();

  std::vector<Row> rows;
  for (const Variant& variant : Variants()) {
    Result<Row> row = Measure(variant, model_dir, used, *golden);
    if (!row.ok()) {
      std::fprintf(stderr, "precision_bench: %s\n", row.status().ToString().c_str());
      return 1;
    }
    rows.push_back(std::move(*row));
  }
  if (as_json) {
    PrintJson(rows, golden_path, used);
  } else {
    std::printf("Kernel `%s`; %zu inputs of %s have a reference vector.\n\n",
                std::string(encode::UseLiteKernelName(used)).c_str(), rows.front().cosines.size(),
                golden_path.c_str());
    PrintMarkdown(rows);
  }
  return 0;
}

}  // namespace
}  // namespace mann::precision

int main(int argc, char** argv) { return mann::precision::Run(argc, argv); }
