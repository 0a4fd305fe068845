#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/encode/hashed_encoder.h>

namespace mann::encode {
namespace {

using ::testing::Each;
using ::testing::HasSubstr;

Vector MustEncode(const Encoder& encoder, std::string_view text) {
  Result<Vector> v = encoder.Encode(text);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  return v.ok() ? *v : Vector(encoder.Dimension(), 0.0f);
}

float Cosine(const Encoder& encoder, std::string_view a, std::string_view b) {
  return Dot(MustEncode(encoder, a), MustEncode(encoder, b));
}

float Norm(const Vector& v) { return std::sqrt(Dot(v, v)); }

TEST(Dot, MatchesNaiveSumForEveryTailLength) {
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 19u, 64u, 515u}) {
    std::vector<float> a(n), b(n);
    double naive = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      a[i] = static_cast<float>(i % 7) - 3.0f;
      b[i] = 0.5f * static_cast<float>(i % 5);
      naive += static_cast<double>(a[i]) * b[i];
    }
    EXPECT_NEAR(Dot(a, b), naive, 1e-3) << "n=" << n;
  }
}

TEST(Dot, UnequalLengthsUseTheCommonPrefix) {
  const std::vector<float> a = {1, 2, 3};
  const std::vector<float> b = {1, 1};
  EXPECT_FLOAT_EQ(Dot(a, b), 3.0f);
}

TEST(NormalizeL2, ScalesToUnitLengthAndLeavesZeroAlone) {
  std::vector<float> v = {3, 4};
  NormalizeL2(v);
  EXPECT_FLOAT_EQ(v[0], 0.6f);
  EXPECT_FLOAT_EQ(v[1], 0.8f);

  std::vector<float> zero(5, 0.0f);
  NormalizeL2(zero);
  EXPECT_THAT(zero, Each(0.0f));
}

TEST(HashedEncoder, IdNamesDimensionAndNgramRange) {
  EXPECT_EQ(HashedEncoder().Id(), "hashed-v1-d256-c34");
  EXPECT_EQ(HashedEncoder({.dimension = 512, .char_ngram_min = 2, .char_ngram_max = 5}).Id(),
            "hashed-v1-d512-c25");
  // Other parameters change the vectors too, so they must change the id.
  EXPECT_NE(HashedEncoder({.seed = 7}).Id(), HashedEncoder().Id());
  EXPECT_NE(HashedEncoder({.char_weight = 0.25f}).Id(), HashedEncoder().Id());
}

TEST(HashedEncoder, ValidateRejectsEachBadOption) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const struct {
    HashedEncoderOptions options;
    const char* field;
  } cases[] = {
      {{.dimension = 7}, "dimension"},
      {{.dimension = 4097}, "dimension"},
      {{.char_ngram_min = 0}, "char_ngram_min"},
      {{.char_ngram_min = 5, .char_ngram_max = 4}, "char_ngram_min"},
      {{.char_ngram_max = 9}, "char_ngram_max"},
      {{.word_weight = -1.0f}, "word_weight"},
      {{.bigram_weight = nan}, "bigram_weight"},
      {{.char_weight = std::numeric_limits<float>::infinity()}, "char_weight"},
  };
  for (const auto& c : cases) {
    const Status status = HashedEncoder::Validate(c.options);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(c.field));
    EXPECT_FALSE(HashedEncoder::Create(c.options).ok()) << c.field;
  }
  EXPECT_TRUE(HashedEncoder::Validate({.dimension = 8, .char_ngram_min = 1}).ok());
  EXPECT_TRUE(HashedEncoder::Validate({.dimension = 4096, .char_ngram_max = 8}).ok());
}

TEST(HashedEncoder, InvalidOptionsFailEveryEncodeInsteadOfCrashing) {
  const HashedEncoder encoder({.dimension = 0});
  const Result<Vector> v = encoder.Encode("hello");
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("dimension"));
}

TEST(HashedEncoder, VectorsHaveUnitNormAndTheRightDimension) {
  const HashedEncoder encoder({.dimension = 128});
  for (const char* text : {"hello", "I live in Hanoi", "Tôi sống ở Hà Nội", "a", "42", "我喜欢北京",
                           "\xff\xfe broken bytes"}) {
    const Vector v = MustEncode(encoder, text);
    EXPECT_EQ(v.size(), 128u) << text;
    EXPECT_NEAR(Norm(v), 1.0f, 1e-5) << text;
  }
}

TEST(HashedEncoder, FeaturelessTextGivesTheZeroVector) {
  const HashedEncoder encoder;
  for (const char* text : {"", "   ", "?!... ,", "😀🎉"}) {
    const Vector v = MustEncode(encoder, text);
    EXPECT_EQ(v.size(), 256u);
    EXPECT_THAT(v, Each(0.0f)) << text;
  }
}

TEST(HashedEncoder, IsDeterministicAcrossInstancesAndPinnedAcrossReleases) {
  const Vector a = MustEncode(HashedEncoder(), "Lan lives in Hanoi");
  const Vector b = MustEncode(HashedEncoder(), "Lan lives in Hanoi");
  EXPECT_EQ(a, b);

  // Stored vectors are only comparable while features and hash stay the same: a change that
  // breaks these pins must come with a new Id() version.
  const struct {
    HashedEncoderOptions options;
    const char* text;
    std::vector<float> expected;
  } pins[] = {
      // word "ab" (1.0) and trigrams "^ab", "ab$" (0.5 each) in distinct buckets.
      {{.dimension = 8, .char_ngram_min = 3, .char_ngram_max = 3},
       "ab",
       {0.816497f, 0, 0.408248f, 0, 0, 0.408248f, 0, 0}},
      {{.dimension = 16},
       "Hà Nội",
       {0, 0, 0, 0, 0, 0, 0, 0, -0.568880f, 0.284440f, 0.284440f, 0.284440f, 0, 0.568880f,
        -0.284440f, 0.170664f}},
  };
  for (const auto& pin : pins) {
    const Vector v = MustEncode(HashedEncoder(pin.options), pin.text);
    ASSERT_EQ(v.size(), pin.expected.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      EXPECT_NEAR(v[i], pin.expected[i], 1e-5) << pin.text << " bucket " << i;
    }
  }
}

TEST(HashedEncoder, SeedChangesTheVectors) {
  EXPECT_NE(MustEncode(HashedEncoder({.seed = 1}), "Lan lives in Hanoi"),
            MustEncode(HashedEncoder({.seed = 2}), "Lan lives in Hanoi"));
}

TEST(HashedEncoder, VietnameseWithAndWithoutDiacriticsAgree) {
  const HashedEncoder encoder;
  EXPECT_GT(Cosine(encoder, "toi ten la Lan", "Tôi tên là Lan"), 0.95f);
  EXPECT_GT(Cosine(encoder, "Đà Nẵng", "da nang"), 0.95f);
}

TEST(HashedEncoder, SharedWordsScoreAboveUnrelatedText) {
  const HashedEncoder encoder;
  const struct {
    const char* anchor;
    const char* paraphrase;
    const char* unrelated;
  } cases[] = {
      {"My sister Lan lives in Hanoi", "Lan, my sister, lives in Hanoi now",
       "The weather is cold and rainy today"},
      {"I love drinking coffee", "I really love coffee", "My car needs new tyres"},
      {"tôi thích ăn phở", "toi rat thich an pho", "hôm nay trời mưa to"},
  };
  for (const auto& c : cases) {
    const float related = Cosine(encoder, c.anchor, c.paraphrase);
    const float unrelated = Cosine(encoder, c.anchor, c.unrelated);
    EXPECT_GT(related, unrelated + 0.2f) << c.anchor;
  }
}

TEST(HashedEncoder, CharacterNgramsMatchInflections) {
  const HashedEncoder encoder;
  EXPECT_GT(Cosine(encoder, "running", "runner"), Cosine(encoder, "running", "table"));
}

TEST(HashedEncoder, BatchEqualsSingleEncodes) {
  const HashedEncoder encoder;
  const std::vector<std::string> texts = {"I live in Hanoi", "", "Tôi tên là Lan", "😀",
                                          "toi ten la Lan"};
  std::vector<Vector> batch;
  ASSERT_TRUE(encoder.EncodeBatch(texts, &batch).ok());
  ASSERT_EQ(batch.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(batch[i], MustEncode(encoder, texts[i])) << texts[i];
  }

  // The output is replaced, not appended to.
  ASSERT_TRUE(encoder.EncodeBatch(std::span<const std::string>(texts).first(2), &batch).ok());
  EXPECT_EQ(batch.size(), 2u);
  EXPECT_FALSE(encoder.EncodeBatch(texts, nullptr).ok());
}

TEST(HashedEncoder, ConcurrentEncodesAgree) {
  const HashedEncoder encoder;
  const Vector expected = MustEncode(encoder, "Tôi sống ở Hà Nội");
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        Result<Vector> v = encoder.Encode("Tôi sống ở Hà Nội");
        if (!v.ok() || *v != expected) ++mismatches[t];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_THAT(mismatches, Each(0));
}

TEST(HashedEncoder, CreateBuildsAWorkingEncoder) {
  Result<HashedEncoder> encoder = HashedEncoder::Create({.dimension = 64});
  ASSERT_TRUE(encoder.ok()) << encoder.status().ToString();
  EXPECT_EQ(encoder->Dimension(), 64u);
  EXPECT_THAT(MustEncode(*encoder, "hello").size(), 64u);
}

}  // namespace
}  // namespace mann::encode
