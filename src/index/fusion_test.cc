#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/index/fusion.h>

namespace mann::index {
namespace {

using List = std::vector<ScoredDoc>;

struct Case {
  const char* name;
  FusionOptions options;
  List dense;
  List lexical;
  std::vector<FusedDoc> expected;
};

// The plain weighted sum; the default also scales lexical (WeightedSumWithConfidence...).
FusionOptions Weighted(float dense, float lexical) {
  return {FusionMethod::kWeightedSum, dense, lexical, 60.0f, /*lexical_confidence=*/false};
}
FusionOptions Rrf(float dense, float lexical, float k) {
  return {FusionMethod::kReciprocalRank, dense, lexical, k};
}

void ExpectFused(const std::vector<FusedDoc>& got, const std::vector<FusedDoc>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "position " << i);
    EXPECT_EQ(got[i].doc, want[i].doc);
    EXPECT_NEAR(got[i].score, want[i].score, 1e-6);
    EXPECT_FLOAT_EQ(got[i].dense, want[i].dense);
    EXPECT_FLOAT_EQ(got[i].lexical, want[i].lexical);
  }
}

TEST(Fuse, WeightedSumCombinesClampsAndOrders) {
  const std::vector<Case> cases = {
      {"both lists empty", Weighted(0.5f, 0.5f), {}, {}, {}},
      {"dense only",
       Weighted(0.5f, 0.5f),
       {{3, 0.8f}, {1, 0.4f}},
       {},
       {{3, 0.4f, 0.8f, 0.0f}, {1, 0.2f, 0.4f, 0.0f}}},
      {"lexical only", Weighted(0.3f, 0.7f), {}, {{5, 1.0f}}, {{5, 0.7f, 0.0f, 1.0f}}},
      {"doc in both and in one",
       Weighted(0.5f, 0.5f),
       {{1, 0.9f}, {2, 0.6f}},
       {{2, 1.0f}, {3, 0.2f}},
       {{2, 0.8f, 0.6f, 1.0f}, {1, 0.45f, 0.9f, 0.0f}, {3, 0.1f, 0.0f, 0.2f}}},
      {"negative dense counts as zero",
       Weighted(0.5f, 0.5f),
       {{1, -0.7f}, {2, -0.1f}},
       {{2, 0.4f}},
       {{2, 0.2f, -0.1f, 0.4f}, {1, 0.0f, -0.7f, 0.0f}}},
      {"ties by lower doc id",
       Weighted(0.5f, 0.5f),
       {{9, 0.6f}, {4, 0.2f}},
       {{4, 0.4f}, {7, 0.6f}},
       {{4, 0.3f, 0.2f, 0.4f}, {7, 0.3f, 0.0f, 0.6f}, {9, 0.3f, 0.6f, 0.0f}}},
      {"repeated doc keeps its first entry",
       Weighted(0.5f, 0.5f),
       {{1, 0.8f}, {1, 0.2f}},
       {},
       {{1, 0.4f, 0.8f, 0.0f}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ExpectFused(Fuse(c.dense, c.lexical, c.options), c.expected);
  }
}

TEST(Fuse, WeightedSumWithConfidenceScalesLexicalByTheBestLexicalScore) {
  FusionOptions confident = Weighted(0.5f, 0.5f);
  confident.lexical_confidence = true;
  EXPECT_TRUE(FusionOptions{}.lexical_confidence) << "the default";
  const std::vector<Case> cases = {
      // The best lexical score is 0.4, so the lexical weight is 0.5 * 0.4 = 0.2: one shared word
      // no longer lifts doc 2 over the closer meaning of doc 1 (plainly, 2 would score 0.35).
      {"weak lexical evidence counts less",
       confident,
       {{1, 0.5f}, {2, 0.3f}},
       {{2, 0.4f}, {3, 0.2f}},
       {{1, 0.25f, 0.5f, 0.0f}, {2, 0.23f, 0.3f, 0.4f}, {3, 0.04f, 0.0f, 0.2f}}},
      // A document holding the whole query keeps the full weight: the plain sum.
      {"a full lexical match keeps the full weight",
       confident,
       {{1, 0.9f}, {2, 0.6f}},
       {{2, 1.0f}, {3, 0.2f}},
       {{2, 0.8f, 0.6f, 1.0f}, {1, 0.45f, 0.9f, 0.0f}, {3, 0.1f, 0.0f, 0.2f}}},
      {"no lexical list leaves the dense half",
       confident,
       {{3, 0.8f}, {1, 0.4f}},
       {},
       {{3, 0.4f, 0.8f, 0.0f}, {1, 0.2f, 0.4f, 0.0f}}},
      {"lexical only, weak match",
       [] {
         FusionOptions o = Weighted(0.0f, 1.0f);
         o.lexical_confidence = true;
         return o;
       }(),
       {},
       {{5, 0.5f}, {6, 0.25f}},
       {{5, 0.25f, 0.0f, 0.5f}, {6, 0.125f, 0.0f, 0.25f}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ExpectFused(Fuse(c.dense, c.lexical, c.options), c.expected);
  }
}

TEST(Fuse, ReciprocalRankRescalesSoRankOneInBothIsOne) {
  // score = (w_d / (k + r_d) + w_l / (k + r_l)) / ((w_d + w_l) / (k + 1))
  auto rrf = [](float wd, float rd, float wl, float rl, float k) {
    const float d = rd > 0 ? wd / (k + rd) : 0.0f;
    const float l = rl > 0 ? wl / (k + rl) : 0.0f;
    return (d + l) / ((wd + wl) / (k + 1));
  };
  const std::vector<Case> cases = {
      {"both lists empty", Rrf(0.5f, 0.5f, 60), {}, {}, {}},
      {"rank one in both",
       Rrf(0.5f, 0.5f, 60),
       {{8, 0.3f}, {2, 0.1f}},
       {{8, 5.0f}},
       {{8, 1.0f, 0.3f, 5.0f}, {2, rrf(0.5f, 2, 0.5f, 0, 60), 0.1f, 0.0f}}},
      {"unequal weights",
       Rrf(0.25f, 0.75f, 10),
       {{1, 0.9f}, {2, 0.8f}},
       {{2, 3.0f}, {1, 2.0f}},
       {{2, rrf(0.25f, 2, 0.75f, 1, 10), 0.8f, 3.0f},
        {1, rrf(0.25f, 1, 0.75f, 2, 10), 0.9f, 2.0f}}},
      {"one list only, rank-one tie by doc id",
       Rrf(0.5f, 0.5f, 60),
       {{6, 0.9f}},
       {{3, 1.0f}},
       {{3, 0.5f, 0.0f, 1.0f}, {6, 0.5f, 0.9f, 0.0f}}},
      {"zero weights score zero",
       Rrf(0.0f, 0.0f, 60),
       {{2, 0.9f}},
       {{1, 1.0f}},
       {{1, 0.0f, 0.0f, 1.0f}, {2, 0.0f, 0.9f, 0.0f}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ExpectFused(Fuse(c.dense, c.lexical, c.options), c.expected);
  }
}

TEST(Fuse, OutputDoesNotDependOnWhichListIsWalkedFirst) {
  const List dense = {{5, 0.9f}, {3, 0.5f}, {8, 0.5f}, {1, 0.1f}};
  const List lexical = {{8, 1.0f}, {2, 0.5f}, {5, 0.5f}};
  for (FusionMethod m : {FusionMethod::kWeightedSum, FusionMethod::kReciprocalRank}) {
    SCOPED_TRACE(FusionMethodName(m));
    // Confidence scaling looks at the lexical list only, so it is left out of this symmetry.
    const FusionOptions o{m, 0.5f, 0.5f, 60.0f, /*lexical_confidence=*/false};
    const std::vector<FusedDoc> a = Fuse(dense, lexical, o);
    const std::vector<FusedDoc> b = Fuse(lexical, dense, o);  // equal weights: symmetric
    ASSERT_EQ(a.size(), 5u);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].doc, b[i].doc);
      EXPECT_FLOAT_EQ(a[i].score, b[i].score);
      EXPECT_GE(a[i].score, 0.0f);
      EXPECT_LE(a[i].score, 1.0f);
    }
  }
}

TEST(FusionMethod, ParsesAndNamesBothMethods) {
  EXPECT_EQ(ParseFusionMethod("weighted_sum"), FusionMethod::kWeightedSum);
  EXPECT_EQ(ParseFusionMethod("rrf"), FusionMethod::kReciprocalRank);
  for (const char* bad : {"", "RRF", "weighted", "reciprocal_rank", "rrf "}) {
    EXPECT_EQ(ParseFusionMethod(bad), std::nullopt) << bad;
  }
  for (FusionMethod m : {FusionMethod::kWeightedSum, FusionMethod::kReciprocalRank}) {
    EXPECT_EQ(ParseFusionMethod(FusionMethodName(m)), m);
  }
}

}  // namespace
}  // namespace mann::index
