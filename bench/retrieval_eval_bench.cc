// Retrieval quality of the read head on a hand-written evaluation set (bench/data/).
//
// Every fact of the set is stored in a fresh bank (one namespace per language, write head off so
// nothing merges), then every question is searched (top 5, no usage bump) under five rankings:
// lexical only, dense only, the default weighted sum (lexical weight scaled by its confidence),
// the plain weighted sum, and reciprocal rank fusion. Recency and importance
// are switched off so only the similarity ranks. A question is answered when its own fact comes
// back; the program reports hit@1, hit@5 and MRR (cut off at rank 5) for all questions, each
// language, and the paraphrase and word-overlap halves of the set.
//
//   build/retrieval_eval_bench [--data bench/data/retrieval_eval.jsonl] [--encoder use-lite]
//                              [--json] [--strict] [--min_hit5 0.9] [--require_fusion_gain]
//
// Not a Google Benchmark program: it measures quality, not time, so it has its own main(). The
// build links it against benchmark::benchmark like every bench/*_bench.cc; nothing of that
// library is used. Results and their command are kept in docs/benchmarks.md.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <mann/core/clock.h>
#include <mann/core/log.h>
#include <mann/core/memory_bank.h>
#include <mann/encode/hashed_encoder.h>
#include <mann/encode/router.h>
#include <mann/encode/use_lite_encoder.h>
#include <mann/index/fusion.h>
#include <mann/store/sqlite_store.h>
#include <mann/text/analyzer.h>
#include <mann/text/gloss.h>

namespace mann::eval {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::size_t kTopK = 5;
// The set is meant to prove paraphrase recall; below this share of low-overlap questions it
// would mostly measure word matching again.
constexpr double kMinLowOverlapShare = 1.0 / 3.0;
// A question is low-overlap when it shares at most this many content words with its fact.
constexpr std::size_t kMaxSharedForParaphrase = 1;
constexpr std::size_t kMaxReportedErrors = 25;

// ---- the evaluation set --------------------------------------------------------------------

struct Fact {
  std::string id;
  std::string lang;  // "en" or "vi"
  std::string text;
  int line = 0;
};

struct Question {
  std::string fact;  // id of the fact that answers it
  std::string lang;
  std::string text;
  bool paraphrase = false;  // as labelled in the file
  int line = 0;
  std::size_t shared = 0;  // content words shared with the fact, computed on load
  std::vector<std::string> shared_words;
};

struct EvalSet {
  std::vector<Fact> facts;
  std::vector<Question> questions;
};

// Collects problems with their line numbers so one run reports all of them, not the first.
class Problems {
 public:
  explicit Problems(std::string path) : path_(std::move(path)) {}
  void Add(int line, std::string what) {
    ++count_;
    if (lines_.size() < kMaxReportedErrors) {
      lines_.push_back(fmt::format("{}:{}: {}", path_, line, what));
    }
  }
  bool empty() const { return count_ == 0; }
  Status ToStatus() const {
    std::string m = fmt::format("{} problem(s) in the evaluation set:", count_);
    for (const auto& l : lines_) m += "\n  " + l;
    if (count_ > lines_.size()) m += fmt::format("\n  ... and {} more", count_ - lines_.size());
    return InvalidArgumentError(std::move(m));
  }

 private:
  std::string path_;
  std::vector<std::string> lines_;
  std::size_t count_ = 0;
};

// Reads one required string member; empty strings are refused too.
bool RequireString(const json::object& o, std::string_view key, int line, Problems& problems,
                   std::string* out) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_string() || v->as_string().empty()) {
    problems.Add(line, fmt::format("\"{}\" must be a non-empty string", key));
    return false;
  }
  *out = std::string(v->as_string());
  return true;
}

bool RequireLang(const json::object& o, int line, Problems& problems, std::string* out) {
  if (!RequireString(o, "lang", line, problems, out)) return false;
  if (*out != "en" && *out != "vi") {
    problems.Add(line, fmt::format("\"lang\" must be \"en\" or \"vi\", got \"{}\"", *out));
    out->clear();
    return false;
  }
  return true;
}

void RejectUnknownKeys(const json::object& o, std::initializer_list<std::string_view> known,
                       int line, Problems& problems) {
  for (const auto& [key, value] : o) {
    if (std::find(known.begin(), known.end(), std::string_view(key)) == known.end()) {
      problems.Add(line, fmt::format("unknown key \"{}\"", std::string_view(key)));
    }
  }
}

// A record whose id parsed is kept even when other fields failed, so the cross-line checks
// still report on it; any problem fails the load anyway.
void ParseFact(const json::object& o, int line, Problems& problems, EvalSet& set) {
  RejectUnknownKeys(o, {"type", "id", "lang", "text"}, line, problems);
  Fact f;
  f.line = line;
  RequireLang(o, line, problems, &f.lang);
  RequireString(o, "text", line, problems, &f.text);
  if (RequireString(o, "id", line, problems, &f.id)) set.facts.push_back(std::move(f));
}

void ParseQuestion(const json::object& o, int line, Problems& problems, EvalSet& set) {
  RejectUnknownKeys(o, {"type", "fact", "lang", "paraphrase", "text"}, line, problems);
  Question q;
  q.line = line;
  RequireLang(o, line, problems, &q.lang);
  RequireString(o, "text", line, problems, &q.text);
  const json::value* p = o.if_contains("paraphrase");
  if (p == nullptr || !p->is_bool()) {
    problems.Add(line, "\"paraphrase\" must be true or false");
  } else {
    q.paraphrase = p->as_bool();
  }
  if (RequireString(o, "fact", line, problems, &q.fact)) set.questions.push_back(std::move(q));
}

// Cross-line rules: ids unique, every question names a fact of its own language, every fact
// has a question.
void CheckReferences(const EvalSet& set, Problems& problems) {
  std::unordered_map<std::string, const Fact*> by_id;
  for (const Fact& f : set.facts) {
    auto [it, inserted] = by_id.try_emplace(f.id, &f);
    if (!inserted) {
      problems.Add(f.line,
                   fmt::format("fact id \"{}\" already used on line {}", f.id, it->second->line));
    }
  }
  std::unordered_set<std::string> asked;
  for (const Question& q : set.questions) {
    auto it = by_id.find(q.fact);
    if (it == by_id.end()) {
      problems.Add(q.line, fmt::format("question names fact \"{}\", which is not defined", q.fact));
      continue;
    }
    // An empty language was reported on its own line already.
    if (!q.lang.empty() && !it->second->lang.empty() && it->second->lang != q.lang) {
      problems.Add(q.line, fmt::format("question is \"{}\" but fact \"{}\" (line {}) is \"{}\"",
                                       q.lang, q.fact, it->second->line, it->second->lang));
    }
    asked.insert(q.fact);
  }
  for (const Fact& f : set.facts) {
    if (!asked.contains(f.id)) {
      problems.Add(f.line, fmt::format("fact \"{}\" has no question", f.id));
    }
  }
}

Result<EvalSet> LoadEvalSet(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return NotFoundError(fmt::format(
        "cannot open evaluation set {}: run from the repository root or pass --data PATH", path));
  }
  EvalSet set;
  Problems problems(path);
  std::string text;
  int line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (!text::IsValidUtf8(text)) {
      problems.Add(line, "not valid UTF-8");
      continue;
    }
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec) {
      problems.Add(line, fmt::format("not valid JSON: {}", ec.message()));
      continue;
    }
    if (!v.is_object()) {
      problems.Add(line, "each line must be a JSON object");
      continue;
    }
    const json::object& o = v.as_object();
    const json::value* type = o.if_contains("type");
    if (type != nullptr && type->is_string() && type->as_string() == "fact") {
      ParseFact(o, line, problems, set);
    } else if (type != nullptr && type->is_string() && type->as_string() == "question") {
      ParseQuestion(o, line, problems, set);
    } else {
      problems.Add(line, "\"type\" must be \"fact\" or \"question\"");
    }
  }
  if (set.facts.empty() && problems.empty()) problems.Add(line, "no facts in the file");
  CheckReferences(set, problems);
  if (!problems.empty()) return problems.ToStatus();
  return set;
}

// ---- word overlap --------------------------------------------------------------------------

// Function words that text::Analyzer keeps (its stop list is short on purpose, see analyzer.cc)
// but that carry no content for the overlap rule: pronouns and auxiliaries found in nearly every
// fact and question. Folded forms, one list per language ("so" is a function word in English and
// "sợ", afraid, in Vietnamese). Used only here, never in retrieval.
bool IsEvalFunctionWord(const std::string& folded, const std::string& lang) {
  static const std::unordered_set<std::string> english = {
      "have", "has",   "had",  "we",  "our",   "us",  "she",  "he", "her",
      "his",  "their", "they", "not", "don't", "can", "will", "so", "about"};
  // toi = tôi (I), minh = mình (I, informal), co = có (have), khong = không (not), da = đã,
  // dang = đang, se = sẽ (tense markers), duoc = được, rat = rất (very), nay = này (this).
  static const std::unordered_set<std::string> vietnamese = {
      "toi", "minh", "co", "khong", "da", "dang", "se", "duoc", "rat", "nay"};
  return (lang == "vi" ? vietnamese : english).contains(folded);
}

// The content words of `text` as the analyzer sees them: folded unigram terms (stemmed for
// English), without the Vietnamese syllable bigrams and the accented duplicates, which would
// count one shared word two or three times.
std::set<std::string> ContentWords(const text::Analyzer& analyzer, const std::string& text,
                                   const std::string& lang) {
  std::set<std::string> out;
  for (std::string& term : analyzer.Terms(text, text::ParseLanguageCode(lang))) {
    if (term.find('_') != std::string::npos) continue;
    if (text::FoldForSearch(term) != term) continue;
    if (IsEvalFunctionWord(term, lang)) continue;
    out.insert(std::move(term));
  }
  return out;
}

struct OverlapCheck {
  std::size_t low_overlap = 0;  // questions sharing at most kMaxSharedForParaphrase words
  std::size_t labelled_paraphrase = 0;
  std::vector<const Question*> mislabelled;  // label and measure disagree
};

OverlapCheck MeasureOverlap(const text::Analyzer& analyzer, EvalSet& set) {
  std::unordered_map<std::string, std::set<std::string>> fact_words;
  for (const Fact& f : set.facts) fact_words[f.id] = ContentWords(analyzer, f.text, f.lang);
  OverlapCheck check;
  for (Question& q : set.questions) {
    const std::set<std::string>& fw = fact_words.at(q.fact);
    for (const std::string& w : ContentWords(analyzer, q.text, q.lang)) {
      if (fw.contains(w)) q.shared_words.push_back(w);
    }
    q.shared = q.shared_words.size();
    const bool low = q.shared <= kMaxSharedForParaphrase;
    check.low_overlap += low ? 1 : 0;
    check.labelled_paraphrase += q.paraphrase ? 1 : 0;
    if (low != q.paraphrase) check.mislabelled.push_back(&q);
  }
  return check;
}

// ---- encoders --------------------------------------------------------------------------------

const std::vector<std::string>& KnownEncoders() {
  static const std::vector<std::string> names = {"hashed", "use-lite", "use-lite-nogloss"};
  return names;
}

// The encoders a bank is opened with, and the router over them, kept alive together.
struct Encoders {
  std::vector<std::unique_ptr<encode::Encoder>> owned;
  std::unique_ptr<encode::Router> router;
};

// The dense encoders by name, as the runtime chooses them for encoder.kind: "use-lite" is the
// default deployment (English and glossed Vietnamese through the sentence encoder, other
// scripts hashed); "use-lite-nogloss" sends Vietnamese to the hashed encoder instead.
Result<Encoders> MakeEncoders(const std::string& name, const std::string& model_dir,
                              encode::UseLiteKernel kernel) {
  Encoders e;
  MANN_ASSIGN_OR_RETURN(encode::HashedEncoder hashed,
                        encode::HashedEncoder::Create(encode::HashedEncoderOptions{}));
  e.owned.push_back(std::make_unique<encode::HashedEncoder>(std::move(hashed)));
  if (name == "hashed") {
    e.router = encode::Router::Single(*e.owned[0]);
    return e;
  }
  if (name == "use-lite" || name == "use-lite-nogloss") {
    MANN_ASSIGN_OR_RETURN(auto sentence, encode::UseLiteEncoder::Load(model_dir, kernel));
    e.owned.push_back(std::move(sentence));
    const text::Glosser* gloss = name == "use-lite" ? &text::Glosser::BuiltIn() : nullptr;
    e.router = encode::Router::Sentence(*e.owned[1], gloss, *e.owned[0]);
    return e;
  }
  std::string known;
  for (const std::string& n : KnownEncoders()) known += (known.empty() ? "" : ", ") + n;
  return InvalidArgumentError(
      fmt::format("unknown encoder \"{}\": known encoders are {}", name, known));
}

// ---- rankings and scores -------------------------------------------------------------------

// The ranking the runtime uses by default (retrieval.fusion, its weights, and lexical_confidence;
// "plain sum" is the same without lexical_confidence).
constexpr std::string_view kDefaultMethod = "weighted sum 0.5/0.5";

struct Method {
  std::string name;
  BankOptions options;
};

// The five rankings of the report, then a weighted and a plain sum for each extra dense weight
// asked for (--dense_weights), the lexical weight being 1 minus it.
std::vector<Method> Methods(const std::vector<float>& extra_dense_weights) {
  BankOptions base;
  base.recency_weight = 0.0;    // every fact is stored at once; age must not rank
  base.importance_boost = 0.0;  // all facts have importance 1 anyway; keep it out on purpose
  auto with = [&](index::FusionMethod m, float dense, float lexical, bool confidence) {
    BankOptions o = base;
    o.fusion.method = m;
    o.fusion.dense_weight = dense;
    o.fusion.lexical_weight = lexical;
    o.fusion.lexical_confidence = confidence;
    return o;
  };
  using index::FusionMethod;
  std::vector<Method> methods = {
      // Scaling by confidence would change a single list's similarities, never its order.
      {"lexical only", with(FusionMethod::kWeightedSum, 0.0f, 1.0f, false)},
      {"dense only", with(FusionMethod::kWeightedSum, 1.0f, 0.0f, false)},
      {std::string(kDefaultMethod), with(FusionMethod::kWeightedSum, 0.5f, 0.5f, true)},
      {"plain sum 0.5/0.5", with(FusionMethod::kWeightedSum, 0.5f, 0.5f, false)},
      {"rrf k=60", with(FusionMethod::kReciprocalRank, 0.5f, 0.5f, false)},
  };
  for (float w : extra_dense_weights) {
    methods.push_back({fmt::format("weighted sum {:g}/{:g}", w, 1.0f - w),
                       with(FusionMethod::kWeightedSum, w, 1.0f - w, true)});
    methods.push_back({fmt::format("plain sum {:g}/{:g}", w, 1.0f - w),
                       with(FusionMethod::kWeightedSum, w, 1.0f - w, false)});
  }
  return methods;
}

enum Slice { kAll, kEnglish, kVietnamese, kParaphrase, kOverlap, kSliceCount };
constexpr const char* kSliceNames[kSliceCount] = {"all", "en", "vi", "paraphrase",
                                                  "lexical-overlap"};

struct Tally {
  std::size_t questions = 0;
  std::size_t hit1 = 0;
  std::size_t hit5 = 0;
  double reciprocal_rank_sum = 0;

  void Add(std::size_t rank) {  // 1-based; 0 when the fact was not in the top k
    ++questions;
    hit1 += rank == 1 ? 1 : 0;
    hit5 += rank >= 1 && rank <= kTopK ? 1 : 0;
    reciprocal_rank_sum += rank == 0 ? 0.0 : 1.0 / static_cast<double>(rank);
  }
  double Rate(std::size_t n) const {
    return questions == 0 ? 0.0 : static_cast<double>(n) / static_cast<double>(questions);
  }
  double Mrr() const {
    return questions == 0 ? 0.0 : reciprocal_rank_sum / static_cast<double>(questions);
  }
};

struct MethodResult {
  std::string method;
  Tally slices[kSliceCount];
  // For choosing chat.min_relevance: the similarity of the right memory when it came first, and
  // that of the best wrong memory of every question (what the bot would quote if the right one
  // had never been stored).
  std::vector<double> right_first;
  std::vector<double> best_wrong;
};

std::string NamespaceFor(const std::string& lang) { return "eval-" + lang; }

// A temporary directory removed on destruction.
class TempDir {
 public:
  static Result<TempDir> Create() {
    std::string pattern = (fs::temp_directory_path() / "mann_retrieval_eval_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      return FailedPreconditionError(
          fmt::format("cannot create a temporary directory from {}: set TMPDIR", pattern));
    }
    return TempDir(pattern);
  }
  TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  explicit TempDir(fs::path p) : path_(std::move(p)) {}
  fs::path path_;
};

struct Evaluation {
  std::string encoder_id;
  std::vector<MethodResult> results;
};

// Stores every fact once, then reopens the bank over the same store for each ranking.
void PrintMiss(const EvalSet& set, const Question& q, const std::vector<SearchHit>& hits,
               const std::unordered_map<std::string, std::string>& fact_of_memory) {
  std::string fact_text;
  for (const Fact& f : set.facts) {
    if (f.id == q.fact) fact_text = f.text;
  }
  fmt::print(stderr, "miss line {} [{}{}] {}\n  wanted {}: {}\n", q.line, q.lang,
             q.paraphrase ? ", paraphrase" : "", q.text, q.fact, fact_text);
  for (std::size_t i = 0; i < std::min<std::size_t>(hits.size(), 3); ++i) {
    const auto it = fact_of_memory.find(hits[i].entry.id);
    fmt::print(stderr, "  got {} dense={:.3f} lexical={:.3f}: {}\n",
               it == fact_of_memory.end() ? "?" : it->second, hits[i].dense, hits[i].lexical,
               hits[i].entry.content);
  }
}

// With `misses` set, each question the method of that name misses is printed to stderr with
// what came first instead, and the scores of both: the way to see why a ranking fails.
Result<Evaluation> Evaluate(const EvalSet& set, const encode::Router& router,
                            const text::Analyzer& analyzer, const std::string& misses,
                            const std::vector<float>& extra_dense_weights) {
  MANN_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create());
  MANN_ASSIGN_OR_RETURN(auto store,
                        store::SqliteStore::Open({.path = (dir.path() / "eval.db").string()}));
  const FakeClock clock;
  const std::vector<Method> methods = Methods(extra_dense_weights);

  std::unordered_map<std::string, std::string> fact_of_memory;
  {
    MANN_ASSIGN_OR_RETURN(
        auto bank, MemoryBank::Open(methods.front().options, *store, router, analyzer, clock));
    for (const Fact& f : set.facts) {
      AddRequest add;
      add.ns = NamespaceFor(f.lang);
      add.content = f.text;
      add.source = "retrieval_eval";
      add.use_write_head = false;  // two similar facts must stay two memories
      Result<WriteOutcome> outcome = bank->Add(add);
      if (!outcome.ok()) {
        return outcome.status().WithContext(fmt::format("storing fact {} (line {})", f.id, f.line));
      }
      fact_of_memory[outcome->memory_id] = f.id;
    }
    MANN_RETURN_IF_ERROR(bank->Flush());
  }

  Evaluation eval;
  eval.encoder_id = router.Describe();
  for (const Method& method : methods) {
    MANN_ASSIGN_OR_RETURN(auto bank,
                          MemoryBank::Open(method.options, *store, router, analyzer, clock));
    MethodResult r;
    r.method = method.name;
    for (const Question& q : set.questions) {
      SearchRequest search;
      search.ns = NamespaceFor(q.lang);
      search.query = q.text;
      search.top_k = kTopK;
      search.touch = false;
      Result<std::vector<SearchHit>> hits = bank->Search(search);
      if (!hits.ok()) {
        return hits.status().WithContext(
            fmt::format("searching question on line {} with {}", q.line, method.name));
      }
      std::size_t rank = 0;
      for (std::size_t i = 0; i < hits->size(); ++i) {
        auto it = fact_of_memory.find((*hits)[i].entry.id);
        if (it != fact_of_memory.end() && it->second == q.fact) {
          rank = i + 1;
          break;
        }
      }
      if (rank == 0 && method.name == misses) PrintMiss(set, q, *hits, fact_of_memory);
      if (rank == 1) r.right_first.push_back((*hits)[0].similarity);
      double wrong = 0;
      for (const SearchHit& h : *hits) {
        auto it = fact_of_memory.find(h.entry.id);
        if (it == fact_of_memory.end() || it->second != q.fact) {
          wrong = h.similarity;
          break;
        }
      }
      r.best_wrong.push_back(wrong);
      r.slices[kAll].Add(rank);
      r.slices[q.lang == "en" ? kEnglish : kVietnamese].Add(rank);
      r.slices[q.paraphrase ? kParaphrase : kOverlap].Add(rank);
    }
    eval.results.push_back(std::move(r));
  }
  return eval;
}

// ---- output --------------------------------------------------------------------------------

struct Report {
  std::string data_path;
  const EvalSet* set = nullptr;
  const OverlapCheck* check = nullptr;
  const Evaluation* eval = nullptr;
};

double LowOverlapShare(const Report& r) {
  return static_cast<double>(r.check->low_overlap) / static_cast<double>(r.set->questions.size());
}

double Share(const std::vector<double>& values, double threshold) {
  if (values.empty()) return 0;
  std::size_t n = 0;
  for (double v : values) n += v >= threshold ? 1 : 0;
  return static_cast<double>(n) / static_cast<double>(values.size());
}

// How a relevance threshold on the default ranking would sort right answers from wrong ones.
void PrintRelevance(const Report& r) {
  for (const MethodResult& m : r.eval->results) {
    if (m.method != kDefaultMethod) continue;
    fmt::print(
        "\nRelevance thresholds for {} (chat.min_relevance): share of right first answers "
        "kept, and of best wrong answers let through.\n\n",
        m.method);
    fmt::print("| threshold | right kept | wrong through |\n| ---: | ---: | ---: |\n");
    for (double t : {0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40}) {
      fmt::print("| {:.2f} | {:.3f} | {:.3f} |\n", t, Share(m.right_first, t),
                 Share(m.best_wrong, t));
    }
  }
}

void PrintMarkdown(const Report& r) {
  std::size_t vi_facts = 0, vi_questions = 0;
  for (const Fact& f : r.set->facts) vi_facts += f.lang == "vi" ? 1 : 0;
  for (const Question& q : r.set->questions) vi_questions += q.lang == "vi" ? 1 : 0;
  fmt::print("Retrieval quality, encoder {}, set {}\n\n", r.eval->encoder_id, r.data_path);
  fmt::print("{} facts ({} Vietnamese), {} questions ({} Vietnamese), top {}.\n",
             r.set->facts.size(), vi_facts, r.set->questions.size(), vi_questions, kTopK);
  fmt::print(
      "Overlap check: {} questions labelled paraphrase; {} ({:.1f}%) share at most {} content "
      "word with their fact; {} labels disagree with the measure.\n\n",
      r.check->labelled_paraphrase, r.check->low_overlap, 100.0 * LowOverlapShare(r),
      kMaxSharedForParaphrase, r.check->mislabelled.size());
  fmt::print("| method | questions | hit@1 | hit@5 | MRR |\n| --- | ---: | ---: | ---: | ---: |\n");
  for (int s = 0; s < kSliceCount; ++s) {
    for (const MethodResult& m : r.eval->results) {
      const Tally& t = m.slices[s];
      fmt::print("| {}, {} | {} | {:.3f} | {:.3f} | {:.3f} |\n", m.method, kSliceNames[s],
                 t.questions, t.Rate(t.hit1), t.Rate(t.hit5), t.Mrr());
    }
  }
  PrintRelevance(r);
}

void PrintJson(const Report& r) {
  json::object out;
  out["encoder"] = r.eval->encoder_id;
  out["data"] = r.data_path;
  out["top_k"] = kTopK;
  out["facts"] = r.set->facts.size();
  out["questions"] = r.set->questions.size();
  json::object overlap;
  overlap["max_shared_words"] = kMaxSharedForParaphrase;
  overlap["labelled_paraphrase"] = r.check->labelled_paraphrase;
  overlap["low_overlap"] = r.check->low_overlap;
  overlap["low_overlap_share"] = LowOverlapShare(r);
  json::array mislabelled;
  for (const Question* q : r.check->mislabelled) mislabelled.push_back(q->line);
  overlap["mislabelled_lines"] = std::move(mislabelled);
  out["overlap_check"] = std::move(overlap);
  json::array results;
  for (const MethodResult& m : r.eval->results) {
    for (int s = 0; s < kSliceCount; ++s) {
      const Tally& t = m.slices[s];
      results.push_back(json::object{{"method", m.method},
                                     {"slice", kSliceNames[s]},
                                     {"questions", t.questions},
                                     {"hit_at_1", t.Rate(t.hit1)},
                                     {"hit_at_5", t.Rate(t.hit5)},
                                     {"mrr", t.Mrr()}});
    }
  }
  out["results"] = std::move(results);
  std::cout << json::serialize(out) << "\n";
}

// Label disagreements are warnings by default (a change to the analyzer's stop list can move a
// borderline question) and errors under --strict.
bool ReportOverlapProblems(const Report& r, bool strict) {
  for (const Question* q : r.check->mislabelled) {
    std::string words;
    for (const std::string& w : q->shared_words) words += (words.empty() ? "" : " ") + w;
    std::fprintf(stderr, "%s:%d: %s: labelled paraphrase=%s but shares %zu content word(s) [%s]\n",
                 r.data_path.c_str(), q->line, strict ? "error" : "warning",
                 q->paraphrase ? "true" : "false", q->shared, words.c_str());
  }
  const bool enough = LowOverlapShare(r) >= kMinLowOverlapShare;
  if (!enough) {
    std::fprintf(stderr, "%s: %s: only %.1f%% of questions are low-overlap; the set needs %.1f%%\n",
                 r.data_path.c_str(), strict ? "error" : "warning", 100.0 * LowOverlapShare(r),
                 100.0 * kMinLowOverlapShare);
  }
  return r.check->mislabelled.empty() && enough;
}

// A ranking's hits at 5 over every question, or -1 when it was not run.
long HitsAt5(const Evaluation& eval, std::string_view method) {
  for (const MethodResult& m : eval.results) {
    if (m.method == method) return static_cast<long>(m.slices[kAll].hit5);
  }
  return -1;
}

int Run(int argc, char** argv) {
  CLI::App app{"Retrieval quality of the mann read head on the evaluation set"};
  std::string data_path = "bench/data/retrieval_eval.jsonl";
  std::string encoder_name = "use-lite";  // the product's default encoder.kind
  bool as_json = false;
  bool strict = false;
  app.add_option("--data", data_path, "evaluation set (JSON lines)")->capture_default_str();
  std::string model_dir = "models/use-lite";
  app.add_option("--encoder", encoder_name, "dense encoders: hashed, use-lite, use-lite-nogloss")
      ->capture_default_str();
  app.add_option("--model_dir", model_dir, "the sentence encoder's files")->capture_default_str();
  std::string kernel_name = "auto";
  app.add_option("--kernel", kernel_name,
                 "the sentence encoder's matrix kernel: auto, portable, avx2, avx512 (their "
                 "vectors differ in the last bits; this shows whether any ranking moves)")
      ->capture_default_str();
  std::vector<float> extra_dense_weights;
  app.add_option("--dense_weights", extra_dense_weights,
                 "also report the weighted sum at these dense weights (lexical = 1 - dense)")
      ->delimiter(',')
      ->check(CLI::Range(0.0f, 1.0f));
  std::string misses;
  app.add_option("--misses", misses,
                 "print to stderr the questions this method misses, e.g. \"weighted sum 0.5/0.5\"");
  app.add_flag("--json", as_json, "print one JSON object instead of the markdown table");
  app.add_flag("--strict", strict,
               "fail when a paraphrase label disagrees with the measured overlap, or when fewer "
               "than a third of the questions are low-overlap");
  bool require_fusion_gain = false;
  app.add_flag("--require_fusion_gain", require_fusion_gain,
               "fail unless the default ranking finds more facts in its top 5 than lexical only "
               "and than dense only");
  double min_hit5 = 0.0;
  app.add_option("--min_hit5", min_hit5,
                 "fail when the default ranking's hit@5 over every question is below this (a "
                 "regression floor for the test suite)")
      ->check(CLI::Range(0.0, 1.0));
  CLI11_PARSE(app, argc, argv);

  // The bank logs one line per open; the report is what matters here.
  log::LogOptions quiet;
  quiet.level = "warn";
  log::Configure(quiet).IgnoreError();

  Result<EvalSet> set = LoadEvalSet(data_path);
  if (!set.ok()) {
    std::fprintf(stderr, "retrieval_eval: %s\n", set.status().ToString().c_str());
    return 2;
  }
  const Result<encode::UseLiteKernel> kernel = encode::ParseUseLiteKernel(kernel_name);
  if (!kernel.ok()) {
    std::fprintf(stderr, "retrieval_eval: --kernel: %s\n", kernel.status().ToString().c_str());
    return 2;
  }
  Result<Encoders> encoders = MakeEncoders(encoder_name, model_dir, *kernel);
  if (!encoders.ok()) {
    std::fprintf(stderr, "retrieval_eval: %s\n", encoders.status().ToString().c_str());
    return 2;
  }
  const text::Analyzer analyzer;
  const OverlapCheck check = MeasureOverlap(analyzer, *set);
  Report report{data_path, &*set, &check, nullptr};
  const bool overlap_ok = ReportOverlapProblems(report, strict);

  Result<Evaluation> eval =
      Evaluate(*set, *encoders->router, analyzer, misses, extra_dense_weights);
  if (!eval.ok()) {
    std::fprintf(stderr, "retrieval_eval: %s\n", eval.status().ToString().c_str());
    return 1;
  }
  report.eval = &*eval;
  if (as_json) {
    PrintJson(report);
  } else {
    PrintMarkdown(report);
  }
  const std::string default_name(kDefaultMethod);
  const long fused = HitsAt5(*eval, kDefaultMethod);
  const double hit5 = static_cast<double>(fused) / static_cast<double>(set->questions.size());
  if (hit5 < min_hit5) {
    std::fprintf(stderr, "retrieval_eval: %s hit@5 is %.3f, under the floor --min_hit5=%.3f\n",
                 default_name.c_str(), hit5, min_hit5);
    return 1;
  }
  for (std::string_view single : {"lexical only", "dense only"}) {
    const long alone = HitsAt5(*eval, single);
    if (require_fusion_gain && fused <= alone) {
      std::fprintf(stderr,
                   "retrieval_eval: %s finds %ld facts in its top 5, %.*s %ld: fusion must find "
                   "more (--require_fusion_gain)\n",
                   default_name.c_str(), fused, static_cast<int>(single.size()), single.data(),
                   alone);
      return 1;
    }
  }
  return strict && !overlap_ok ? 1 : 0;
}

}  // namespace
}  // namespace mann::eval

int main(int argc, char** argv) { return mann::eval::Run(argc, argv); }
