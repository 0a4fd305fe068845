#include <atomic>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <mann/encode/router.h>

namespace mann::encode {
namespace {

using text::Language;

// An encoder whose vector records the text it was given, so tests can see what reached it.
class RecordingEncoder final : public Encoder {
 public:
  RecordingEncoder(std::string id, std::size_t dimension) : id_(std::move(id)), dim_(dimension) {}
  std::string Id() const override { return id_; }
  std::size_t Dimension() const override { return wrong_dimension_ ? dim_ + 1 : dim_; }
  Status EncodeBatch(std::span<const std::string> texts, std::vector<Vector>* out) const override {
    out->clear();
    for (const std::string& t : texts) {
      seen_.push_back(t);
      Vector v(dim_, 0.0f);
      v[t.size() % dim_] = 1.0f;
      out->push_back(std::move(v));
    }
    ++batches_;
    return Status::Ok();
  }
  void BreakDimension() { wrong_dimension_ = true; }

  mutable std::vector<std::string> seen_;
  mutable int batches_ = 0;

 private:
  std::string id_;
  std::size_t dim_;
  bool wrong_dimension_ = false;
};

text::Glosser SmallGlosser() {
  auto g = text::Glosser::Parse("tôi\tI\nsống\tlive\nở\tin\n", "test.tsv");
  EXPECT_TRUE(g.ok());
  return std::move(g).value();
}

TEST(Router, SingleSendsEveryLanguageToTheOneEncoder) {
  RecordingEncoder hashed("hashed", 8);
  auto r = Router::Single(hashed);
  ASSERT_EQ(r->spaces().size(), 1u);
  for (Language l : {Language::kEnglish, Language::kVietnamese, Language::kUnknown}) {
    EXPECT_EQ(r->ForText(l).space, 0u);
    EXPECT_EQ(r->ForText(l).provenance, "hashed");
    ASSERT_EQ(r->ForQuery(l).size(), 1u);
  }
  EXPECT_EQ(r->Describe(), "hashed (every language)");
}

TEST(Router, SentenceRoutesEnglishAndGlossedVietnameseToTheSentenceEncoder) {
  RecordingEncoder sentence("use", 16);
  RecordingEncoder hashed("hashed", 8);
  const text::Glosser gloss = SmallGlosser();
  auto r = Router::Sentence(sentence, &gloss, hashed);
  ASSERT_EQ(r->spaces().size(), 2u);

  const Lane& en = r->ForText(Language::kEnglish);
  const Lane& vi = r->ForText(Language::kVietnamese);
  const Lane& other = r->ForText(Language::kUnknown);
  EXPECT_EQ(en.space, 0u);
  EXPECT_EQ(en.provenance, "use");
  EXPECT_EQ(vi.space, 0u);
  EXPECT_EQ(vi.provenance, "use+gloss-vi-" + gloss.fingerprint());
  EXPECT_EQ(other.space, 1u);
  EXPECT_EQ(other.provenance, "hashed");

  // A query is searched in every space that reads its language.
  ASSERT_EQ(r->ForQuery(Language::kEnglish).size(), 2u);
  EXPECT_EQ(r->ForQuery(Language::kEnglish)[0], &en);
  EXPECT_EQ(r->ForQuery(Language::kVietnamese)[0], &vi);
  ASSERT_EQ(r->ForQuery(Language::kUnknown).size(), 1u);
  EXPECT_EQ(r->ForQuery(Language::kUnknown)[0], &other);

  ASSERT_TRUE(r->Embed(vi, "tôi sống ở Huế").ok());
  ASSERT_EQ(sentence.seen_.size(), 1u);
  EXPECT_EQ(sentence.seen_[0], "I live in Hue");
  EXPECT_TRUE(hashed.seen_.empty());
  EXPECT_EQ(r->Describe(), "use (en; vi via gloss) + hashed (other)");
}

TEST(Router, WithoutAGlossVietnameseGoesToTheFallback) {
  RecordingEncoder sentence("use", 16);
  RecordingEncoder hashed("hashed", 8);
  auto r = Router::Sentence(sentence, nullptr, hashed);
  EXPECT_EQ(r->ForText(Language::kVietnamese).space, 1u);
  ASSERT_EQ(r->ForQuery(Language::kVietnamese).size(), 1u);
  EXPECT_EQ(r->ForQuery(Language::kVietnamese)[0]->space, 1u);
  EXPECT_EQ(r->Describe(), "use (en) + hashed (vi and other)");
}

TEST(Router, CacheServesRepeatsAndKeepsLanesApart) {
  RecordingEncoder sentence("use", 16);
  RecordingEncoder hashed("hashed", 8);
  auto r = Router::Sentence(sentence, nullptr, hashed, /*cache_size=*/2);
  const Lane& en = r->ForText(Language::kEnglish);
  const Lane& other = r->ForText(Language::kUnknown);

  auto a = r->Embed(en, "hello");
  auto b = r->Embed(en, "hello");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(sentence.seen_.size(), 1u);
  EXPECT_EQ(r->cache()->hits(), 1u);

  ASSERT_TRUE(r->Embed(other, "hello").ok());  // same text, other space: its own entry
  EXPECT_EQ(hashed.seen_.size(), 1u);

  // Capacity 2: a third key evicts the least recently used, "hello" in the sentence space.
  ASSERT_TRUE(r->Embed(en, "world").ok());
  EXPECT_EQ(r->cache()->size(), 2u);
  ASSERT_TRUE(r->Embed(other, "hello").ok());
  EXPECT_EQ(hashed.seen_.size(), 1u);  // still cached
  ASSERT_TRUE(r->Embed(en, "hello").ok());
  EXPECT_EQ(sentence.seen_, (std::vector<std::string>{"hello", "world", "hello"}));
}

TEST(Router, BatchesOnlyWhatTheCacheLacksAndKeepsTheOrder) {
  RecordingEncoder sentence("use", 16);
  RecordingEncoder hashed("hashed", 8);
  auto r = Router::Sentence(sentence, nullptr, hashed, 16);
  const Lane& en = r->ForText(Language::kEnglish);
  ASSERT_TRUE(r->Embed(en, "bb").ok());
  sentence.seen_.clear();

  const std::vector<std::string> texts = {"a", "bb", "ccc"};
  std::vector<Vector> out;
  ASSERT_TRUE(r->EmbedBatch(en, texts, &out).ok());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(sentence.seen_, (std::vector<std::string>{"a", "ccc"}));
  EXPECT_EQ(sentence.batches_, 2);  // one for the warm-up, one for the two misses
  for (std::size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(out[i][texts[i].size() % 16], 1.0f) << i;
  }
}

TEST(Router, AnEncoderReturningTheWrongLengthIsAnInternalError) {
  RecordingEncoder broken("broken", 4);
  broken.BreakDimension();
  auto r = Router::Single(broken);
  auto v = r->Embed(r->ForText(Language::kEnglish), "x");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInternal);
  EXPECT_NE(v.status().message().find("broken"), std::string::npos);
}

}  // namespace
}  // namespace mann::encode
