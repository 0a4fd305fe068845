#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/index/bm25_index.h>

namespace mann::index {
namespace {

using Terms = std::vector<std::string>;

// The tiny corpus the hand-computed values below refer to: N = 3, total length 6, avgdl = 2.
//   1: a b      2: a c c      3: d
// With k1 = 1.2, b = 0.75:
//   idf(a) = ln(1 + 1.5/2.5) = ln 1.6   = 0.4700036
//   idf(c) = ln(1 + 2.5/1.5) = ln(8/3)  = 0.9808293
//   idf(unseen) = ln(1 + 3.5/0.5) = ln 8 = 2.0794415
//   "a" in doc 1: tf 1, dl 2 -> 2.2 / (1 + 1.2 * 1)     = 1        -> 0.4700036
//   "a" in doc 2: tf 1, dl 3 -> 2.2 / (1 + 1.2 * 1.375) = 0.8301887 -> 0.3901917
//   "c" in doc 2: tf 2, dl 3 -> 4.4 / (2 + 1.2 * 1.375) = 1.2054795 -> 1.1823696
Bm25Index TinyCorpus() {
  Bm25Index index;
  index.Upsert(1, Terms{"a", "b"});
  index.Upsert(2, Terms{"a", "c", "c"});
  index.Upsert(3, Terms{"d"});
  return index;
}

struct Expected {
  DocId doc;
  float score;
};

void ExpectHits(const std::vector<ScoredDoc>& hits, const std::vector<Expected>& expected) {
  ASSERT_EQ(hits.size(), expected.size());
  for (std::size_t i = 0; i < hits.size(); ++i) {
    EXPECT_EQ(hits[i].doc, expected[i].doc) << "position " << i;
    EXPECT_NEAR(hits[i].score, expected[i].score, 1e-5) << "position " << i;
  }
}

TEST(Bm25Index, RawScoresMatchHandComputedValues) {
  const Bm25Index index = TinyCorpus();
  struct Case {
    Terms query;
    std::vector<Expected> expected;
  };
  const std::vector<Case> cases = {
      {{"a"}, {{1, 0.4700036f}, {2, 0.3901917f}}},
      {{"c"}, {{2, 1.1823696f}}},
      {{"a", "c"}, {{2, 0.3901917f + 1.1823696f}, {1, 0.4700036f}}},
      {{"a", "a", "c"}, {{2, 0.3901917f + 1.1823696f}, {1, 0.4700036f}}},  // repeat counts once
      {{"zzz"}, {}},
      {{}, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.query));
    ExpectHits(index.Search(c.query, 10), c.expected);
  }
}

TEST(Bm25Index, NormalizedScoresMatchHandComputedValues) {
  const Bm25Index index = TinyCorpus();
  struct Case {
    Terms query;
    float norm;
    std::vector<Expected> expected;
  };
  const float idf_a = 0.4700036f;
  const float idf_c = 0.9808293f;
  const float idf_unseen = 2.0794415f;
  const std::vector<Case> cases = {
      // Doc 2 scores above the norm (tf 2 for "c") and is clamped to 1.
      {{"a", "c"}, idf_a + idf_c, {{2, 1.0f}, {1, idf_a / (idf_a + idf_c)}}},
      {{"c", "a", "c"}, idf_a + idf_c, {{2, 1.0f}, {1, idf_a / (idf_a + idf_c)}}},
      {{"a"}, idf_a, {{1, 1.0f}, {2, 0.3901917f / idf_a}}},
      {{"a", "zzz"},
       idf_a + idf_unseen,
       {{1, idf_a / (idf_a + idf_unseen)}, {2, 0.3901917f / (idf_a + idf_unseen)}}},
      {{}, 0.0f, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.query));
    EXPECT_NEAR(index.QueryNorm(c.query), c.norm, 1e-5);
    ExpectHits(index.SearchNormalized(c.query, 10), c.expected);
  }
}

TEST(Bm25Index, NormalizedScoresStayInUnitRangeAndDropForUnseenTerms) {
  Bm25Index index;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> word(0, 40);
  std::uniform_int_distribution<int> length(1, 12);
  for (DocId d = 0; d < 200; ++d) {
    Terms terms;
    for (int i = length(rng); i > 0; --i) terms.push_back("w" + std::to_string(word(rng)));
    index.Upsert(d, terms);
  }
  const Terms seen = {"w1", "w2", "w3"};
  const Terms with_unseen = {"w1", "w2", "w3", "never-indexed"};
  const std::vector<ScoredDoc> base = index.SearchNormalized(seen, 500);
  const std::vector<ScoredDoc> diluted = index.SearchNormalized(with_unseen, 500);
  ASSERT_FALSE(base.empty());
  ASSERT_EQ(base.size(), diluted.size());
  for (const ScoredDoc& h : base) {
    EXPECT_GT(h.score, 0.0f);
    EXPECT_LE(h.score, 1.0f);
  }
  for (std::size_t i = 0; i < diluted.size(); ++i) {
    EXPECT_GE(diluted[i].score, 0.0f);
    EXPECT_LT(diluted[i].score, 1.0f);
    // Same matches, each scored lower than without the unseen word.
    auto same = std::find_if(base.begin(), base.end(),
                             [&](const ScoredDoc& b) { return b.doc == diluted[i].doc; });
    ASSERT_NE(same, base.end());
    EXPECT_LT(diluted[i].score, same->score);
  }
  EXPECT_GT(index.QueryNorm(with_unseen), index.QueryNorm(seen));
}

TEST(Bm25Index, RanksByScoreThenLowerDocIdAndHonoursLimit) {
  Bm25Index index;
  // Identical documents tie; the shorter one with the term scores higher.
  index.Upsert(9, Terms{"x", "y"});
  index.Upsert(4, Terms{"x", "y"});
  index.Upsert(6, Terms{"x", "y"});
  index.Upsert(2, Terms{"x", "y", "z", "z"});
  index.Upsert(7, Terms{"x"});

  const std::vector<ScoredDoc> all = index.Search(Terms{"x"}, 10);
  std::vector<DocId> order;
  for (const ScoredDoc& h : all) order.push_back(h.doc);
  EXPECT_THAT(order, ::testing::ElementsAre(7, 4, 6, 9, 2));
  EXPECT_EQ(all[1].score, all[2].score);

  const std::vector<ScoredDoc> top2 = index.Search(Terms{"x"}, 2);
  ASSERT_EQ(top2.size(), 2u);
  EXPECT_EQ(top2[0].doc, 7u);
  EXPECT_EQ(top2[1].doc, 4u);
  EXPECT_TRUE(index.Search(Terms{"x"}, 0).empty());
  EXPECT_TRUE(index.SearchNormalized(Terms{"x"}, 0).empty());
}

TEST(Bm25Index, SizeContainsAndClearTrackLiveDocuments) {
  Bm25Index index = TinyCorpus();
  EXPECT_EQ(index.size(), 3u);
  EXPECT_TRUE(index.Contains(2));
  EXPECT_FALSE(index.Contains(0));
  EXPECT_FALSE(index.Contains(1000));
  index.Upsert(5, Terms{});  // an empty document is live and counts in N
  EXPECT_TRUE(index.Contains(5));
  EXPECT_EQ(index.size(), 4u);
  index.Remove(42);  // absent: no effect
  EXPECT_EQ(index.size(), 4u);
  index.Clear();
  EXPECT_EQ(index.size(), 0u);
  EXPECT_FALSE(index.Contains(2));
  EXPECT_TRUE(index.Search(Terms{"a"}, 10).empty());
}

// Builds an index from scratch holding exactly `docs`.
Bm25Index Fresh(const std::vector<std::pair<DocId, Terms>>& docs) {
  Bm25Index index;
  for (const auto& [doc, terms] : docs) index.Upsert(doc, terms);
  return index;
}

void ExpectSameRanking(const Bm25Index& actual, const Bm25Index& expected, const Terms& query) {
  SCOPED_TRACE(::testing::PrintToString(query));
  const std::vector<ScoredDoc> a = actual.Search(query, 1000);
  const std::vector<ScoredDoc> e = expected.Search(query, 1000);
  ASSERT_EQ(a.size(), e.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].doc, e[i].doc);
    EXPECT_FLOAT_EQ(a[i].score, e[i].score);
  }
  EXPECT_FLOAT_EQ(actual.QueryNorm(query), expected.QueryNorm(query));
}

TEST(Bm25Index, UpsertReplacesTermsFrequenciesAndLength) {
  Bm25Index index = TinyCorpus();
  index.Upsert(2, Terms{"c", "e", "e", "e", "e"});
  EXPECT_EQ(index.size(), 3u);

  const Bm25Index expected = Fresh({{1, {"a", "b"}}, {2, {"c", "e", "e", "e", "e"}}, {3, {"d"}}});
  for (const Terms& q : {Terms{"a"}, Terms{"c"}, Terms{"e"}, Terms{"a", "b", "c", "d", "e"}}) {
    ExpectSameRanking(index, expected, q);
  }
  // "a" left doc 2, so only doc 1 matches and its idf reflects df 1.
  ASSERT_EQ(index.Search(Terms{"a"}, 10).size(), 1u);
}

TEST(Bm25Index, RemoveLeavesScoresAsIfTheDocumentWasNeverAdded) {
  Bm25Index index = TinyCorpus();
  index.Upsert(10, Terms{"a", "c", "z", "z", "z"});
  index.Remove(10);
  index.Remove(2);
  EXPECT_EQ(index.size(), 2u);
  EXPECT_FALSE(index.Contains(2));

  const Bm25Index expected = Fresh({{1, {"a", "b"}}, {3, {"d"}}});
  for (const Terms& q : {Terms{"a"}, Terms{"c"}, Terms{"z"}, Terms{"a", "c", "d", "z"}}) {
    ExpectSameRanking(index, expected, q);
  }
  // The vanished terms count as unseen in the norm.
  EXPECT_NEAR(index.QueryNorm(Terms{"z"}), std::log(1.0 + 2.5 / 0.5), 1e-5);

  // A reused id carries only its new terms.
  index.Upsert(2, Terms{"d", "d"});
  ExpectSameRanking(index, Fresh({{1, {"a", "b"}}, {2, {"d", "d"}}, {3, {"d"}}}),
                    Terms{"a", "c", "d"});
}

TEST(Bm25Index, RandomChurnWithReusedIdsMatchesAFreshBuild) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> word(0, 60);
  std::uniform_int_distribution<int> length(0, 10);
  std::uniform_int_distribution<DocId> id(0, 79);
  std::uniform_int_distribution<int> action(0, 2);

  Bm25Index index;
  std::vector<std::optional<Terms>> truth(80);
  for (int step = 0; step < 3000; ++step) {
    const DocId d = id(rng);
    if (action(rng) == 0) {
      index.Remove(d);
      truth[d].reset();
    } else {
      Terms terms;
      for (int i = length(rng); i > 0; --i) terms.push_back("w" + std::to_string(word(rng)));
      index.Upsert(d, terms);
      truth[d] = terms;
    }
  }

  std::vector<std::pair<DocId, Terms>> live;
  for (DocId d = 0; d < truth.size(); ++d) {
    if (truth[d]) live.emplace_back(d, *truth[d]);
  }
  const Bm25Index expected = Fresh(live);
  EXPECT_EQ(index.size(), live.size());
  for (int q = 0; q < 30; ++q) {
    Terms query;
    for (int i = 1 + q % 4; i > 0; --i) query.push_back("w" + std::to_string(word(rng)));
    ExpectSameRanking(index, expected, query);
  }
}

}  // namespace
}  // namespace mann::index
