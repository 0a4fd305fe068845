// Analyzer::Terms: the index terms of a text.
//
// For each word, in text order:
//   1. for Vietnamese text, the bigram "a_b" of the previous and this folded word, when only
//      white space separates them and not both are stopwords (built before stopwords are
//      dropped, so "da nang" keeps "da_nang" even though "da" alone may be dropped);
//   2. unless it is a stopword: the folded word, Snowball-stemmed for English text;
//   3. unless it is a stopword: the accented, case-folded word when it had diacritics.
// Numbers are words like any other. No term contains white space.
//
// Stop lists (kept short on purpose: BM25's idf already discounts frequent words, and a wrong
// stopword loses a content word for good):
//   English: articles, forms of "be" and "do", common prepositions and conjunctions, the
//     pronouns "i", "me", "my", "you", "your", "it", "its", demonstratives and question words.
//   Vietnamese: là, của, và, thì, mà, những, nhưng, các, một, gì, nào, với, cũng, rằng, ạ, nhé,
//     nhỉ, à, ơi. Content words that look similar stay: "tên" (name), "sống" (live), "không"
//     (negation), "có", "đã", "sẽ" (their folded forms collide with names such as Đà Nẵng).
//   A Vietnamese word typed with diacritics is a stopword only when its accented form is in the
//   list, so "cửa" (door) survives although "của" (of) is dropped; a word typed without
//   diacritics is a stopword when its folded form is ("cua").

#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <libstemmer.h>

#include <mann/core/log.h>
#include <mann/text/analyzer.h>

#include "text_internal.h"

namespace mann::text {
namespace {

constexpr std::string_view kEnglishStopwords[] = {
    "a",   "an",   "the", "is",  "are",  "was",  "were",  "be",    "been",  "being", "am",  "of",
    "to",  "in",   "on",  "at",  "by",   "for",  "with",  "from",  "as",    "i",     "me",  "my",
    "you", "your", "it",  "its", "do",   "does", "did",   "what",  "where", "when",  "who", "which",
    "how", "and",  "or",  "but", "this", "that", "these", "those", "there",
};

constexpr std::string_view kVietnameseStopwords[] = {
    "là",  "của", "và",   "thì",  "mà", "những", "nhưng", "các", "một", "gì",
    "nào", "với", "cũng", "rằng", "ạ",  "nhé",   "nhỉ",   "à",   "ơi",
};

// Snowball stemmers keep state between calls, so each thread owns one.
class ThreadStemmer {
 public:
  ThreadStemmer() : stemmer_(sb_stemmer_new("english", "UTF_8")) {
    if (stemmer_ == nullptr) {
      log::Get("text")->error(
          "snowball english stemmer unavailable: english words are indexed unstemmed; check "
          "the libstemmer installation");
    }
  }
  ~ThreadStemmer() {
    if (stemmer_ != nullptr) sb_stemmer_delete(stemmer_);
  }
  ThreadStemmer(const ThreadStemmer&) = delete;
  ThreadStemmer& operator=(const ThreadStemmer&) = delete;

  std::string Stem(const std::string& word) {
    if (stemmer_ == nullptr) return word;
    const sb_symbol* stem = sb_stemmer_stem(
        stemmer_, reinterpret_cast<const sb_symbol*>(word.data()), static_cast<int>(word.size()));
    if (stem == nullptr) return word;  // out of memory inside the stemmer
    return std::string(reinterpret_cast<const char*>(stem),
                       static_cast<std::size_t>(sb_stemmer_length(stemmer_)));
  }

 private:
  sb_stemmer* stemmer_;
};

ThreadStemmer& GetThreadStemmer() {
  thread_local ThreadStemmer stemmer;
  return stemmer;
}

// NFKC can expand one character into several words (U+FDFA); joining them keeps every term
// free of white space.
void JoinSpaces(std::string* s) {
  for (char& c : *s) {
    if (c == ' ') c = '_';
  }
}

}  // namespace

struct Analyzer::Impl {
  std::unordered_set<std::string_view> english_stop;
  std::unordered_set<std::string> vietnamese_accented_stop;
  std::unordered_set<std::string> vietnamese_folded_stop;

  Impl() {
    english_stop.insert(std::begin(kEnglishStopwords), std::end(kEnglishStopwords));
    for (std::string_view word : kVietnameseStopwords) {
      vietnamese_accented_stop.insert(NormalizeNfc(word));
      vietnamese_folded_stop.insert(FoldForSearch(word));
    }
  }

  bool IsStopword(const internal::Word& word, Language language) const {
    switch (language) {
      case Language::kEnglish:
        return english_stop.contains(word.folded);
      case Language::kVietnamese:
        return word.lower != word.folded ? vietnamese_accented_stop.contains(word.lower)
                                         : vietnamese_folded_stop.contains(word.folded);
      case Language::kUnknown:
        break;
    }
    return false;
  }
};

Analyzer::Analyzer(AnalyzerOptions options) : options_(options), impl_(std::make_unique<Impl>()) {}

Analyzer::~Analyzer() = default;

std::vector<std::string> Analyzer::Terms(std::string_view text, Language language) const {
  internal::Segmented segmented = internal::Segment(text, /*fold=*/true);
  std::vector<internal::Word>& words = segmented.words;
  if (language == Language::kUnknown) language = internal::DetectFromSegments(segmented);
  const bool stem = options_.stem_english && language == Language::kEnglish;
  const bool bigrams = options_.vietnamese_bigrams && language == Language::kVietnamese;

  std::vector<std::string> terms;
  terms.reserve(words.size() * (bigrams ? 3 : 2));
  bool previous_stop = false;
  for (std::size_t i = 0; i < words.size(); ++i) {
    internal::Word& word = words[i];
    JoinSpaces(&word.folded);
    JoinSpaces(&word.lower);
    const bool stop = options_.drop_stopwords && impl_->IsStopword(word, language);

    if (bigrams && i > 0 && word.follows_space && !(stop && previous_stop)) {
      std::string bigram = words[i - 1].folded;
      bigram += '_';
      bigram += word.folded;
      terms.push_back(std::move(bigram));
    }
    previous_stop = stop;
    if (stop) continue;

    const bool accented = word.lower != word.folded;
    terms.push_back(stem ? GetThreadStemmer().Stem(word.folded) : word.folded);
    if (accented) terms.push_back(std::move(word.lower));
  }
  return terms;
}

}  // namespace mann::text
