#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/index/vector_index.h>

namespace mann::index {
namespace {

std::vector<float> RandomVector(std::mt19937& rng, std::size_t dim) {
  std::normal_distribution<float> normal;
  std::vector<float> v(dim);
  for (float& x : v) x = normal(rng);
  return v;
}

double ReferenceDot(std::span<const float> a, std::span<const float> b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += static_cast<double>(a[i]) * b[i];
  return sum;
}

// The reference top-k: every live vector scored in double precision, fully sorted.
std::vector<ScoredDoc> BruteForce(const std::vector<std::pair<DocId, std::vector<float>>>& live,
                                  std::span<const float> query, std::size_t k) {
  std::vector<ScoredDoc> all;
  for (const auto& [doc, v] : live) {
    all.push_back({doc, static_cast<float>(ReferenceDot(v, query))});
  }
  std::sort(all.begin(), all.end(), [](const ScoredDoc& a, const ScoredDoc& b) {
    return a.score > b.score || (a.score == b.score && a.doc < b.doc);
  });
  all.resize(std::min(k, all.size()));
  return all;
}

// Float and double sums differ in the last bits, so near-ties may swap places; the check is
// that every position holds the reference score and every returned doc truly has its score.
void ExpectMatchesReference(const FlatVectorIndex& index,
                            const std::vector<std::pair<DocId, std::vector<float>>>& live,
                            std::span<const float> query, std::size_t k) {
  const std::vector<ScoredDoc> got = index.TopK(query, k);
  const std::vector<ScoredDoc> want = BruteForce(live, query, k);
  ASSERT_EQ(got.size(), want.size());
  std::set<DocId> seen;
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i].score, want[i].score, 1e-4) << "position " << i;
    EXPECT_TRUE(seen.insert(got[i].doc).second) << "doc " << got[i].doc << " returned twice";
    auto it = std::find_if(live.begin(), live.end(),
                           [&](const auto& p) { return p.first == got[i].doc; });
    ASSERT_NE(it, live.end()) << "doc " << got[i].doc << " is not live";
    EXPECT_NEAR(got[i].score, ReferenceDot(it->second, query), 1e-4);
    if (i > 0) {
      EXPECT_GE(got[i - 1].score, got[i].score);
    }
  }
}

TEST(FlatVectorIndex, TopKMatchesBruteForceBeforeAndAfterRemovals) {
  struct Case {
    std::size_t dim;
    std::size_t count;
  };
  // Dimensions below, at and off the 8-lane unrolling, and an empty index.
  const std::vector<Case> cases = {{3, 0}, {3, 1}, {8, 7}, {37, 100}, {64, 1000}, {256, 500}};
  const std::vector<std::size_t> ks = {1, 5, 50, 2000};
  std::mt19937 rng(2024);
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "dim " << c.dim << " count " << c.count);
    FlatVectorIndex index(c.dim);
    std::vector<std::pair<DocId, std::vector<float>>> live;
    // Sparse, shuffled ids so rows and ids differ.
    std::vector<DocId> ids(c.count);
    for (std::size_t i = 0; i < c.count; ++i) ids[i] = static_cast<DocId>(3 * i + 1);
    std::shuffle(ids.begin(), ids.end(), rng);
    for (DocId id : ids) {
      live.emplace_back(id, RandomVector(rng, c.dim));
      index.Upsert(id, live.back().second);
    }
    ASSERT_EQ(index.size(), c.count);

    const std::vector<float> query = RandomVector(rng, c.dim);
    for (std::size_t k : ks) ExpectMatchesReference(index, live, query, k);

    // Remove about a third, including the first and last rows.
    std::vector<std::pair<DocId, std::vector<float>>> kept;
    for (std::size_t i = 0; i < live.size(); ++i) {
      if (i % 3 == 0 || i + 1 == live.size()) {
        index.Remove(live[i].first);
      } else {
        kept.push_back(live[i]);
      }
    }
    ASSERT_EQ(index.size(), kept.size());
    for (std::size_t k : ks) ExpectMatchesReference(index, kept, query, k);
    for (const auto& [doc, v] : kept) {
      ASSERT_THAT(index.Get(doc), ::testing::ElementsAreArray(v)) << "doc " << doc;
    }
  }
}

TEST(FlatVectorIndex, GetAfterSwapRemovalReturnsTheMovedVector) {
  FlatVectorIndex index(2);
  index.Upsert(10, std::vector<float>{1, 0});
  index.Upsert(20, std::vector<float>{0, 1});
  index.Upsert(30, std::vector<float>{0.6f, 0.8f});

  index.Remove(10);  // row 0 now holds doc 30
  EXPECT_EQ(index.size(), 2u);
  EXPECT_FALSE(index.Contains(10));
  EXPECT_TRUE(index.Get(10).empty());
  EXPECT_THAT(index.Get(30), ::testing::ElementsAre(0.6f, 0.8f));
  EXPECT_THAT(index.Get(20), ::testing::ElementsAre(0.0f, 1.0f));

  // The moved row can itself be removed, and a removed id reused.
  index.Remove(30);
  index.Remove(30);  // absent: no effect
  index.Upsert(10, std::vector<float>{-1, 0});
  EXPECT_EQ(index.size(), 2u);
  EXPECT_THAT(index.Get(10), ::testing::ElementsAre(-1.0f, 0.0f));
  EXPECT_THAT(index.Get(20), ::testing::ElementsAre(0.0f, 1.0f));
  EXPECT_TRUE(index.Get(999).empty());
}

TEST(FlatVectorIndex, UpsertOfAnExistingDocReplacesItsVectorInPlace) {
  FlatVectorIndex index(2);
  index.Upsert(1, std::vector<float>{1, 0});
  index.Upsert(2, std::vector<float>{0, 1});
  index.Upsert(1, std::vector<float>{0, -1});
  EXPECT_EQ(index.size(), 2u);
  EXPECT_THAT(index.Get(1), ::testing::ElementsAre(0.0f, -1.0f));
  const std::vector<ScoredDoc> top = index.TopK(std::vector<float>{0, 1}, 2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].doc, 2u);
  EXPECT_FLOAT_EQ(top[0].score, 1.0f);
  EXPECT_EQ(top[1].doc, 1u);
  EXPECT_FLOAT_EQ(top[1].score, -1.0f);
}

TEST(FlatVectorIndex, EqualScoresRankByLowerDocIdAcrossTheCutoff) {
  FlatVectorIndex index(3);
  const std::vector<float> same = {0.0f, 1.0f, 0.0f};
  for (DocId d : {50u, 7u, 31u, 2u, 19u}) index.Upsert(d, same);
  index.Upsert(40, std::vector<float>{0.0f, 0.5f, 0.0f});

  const std::vector<ScoredDoc> top = index.TopK(same, 3);
  std::vector<DocId> docs;
  for (const ScoredDoc& s : top) docs.push_back(s.doc);
  EXPECT_THAT(docs, ::testing::ElementsAre(2, 7, 19));

  const std::vector<ScoredDoc> all = index.TopK(same, 100);
  docs.clear();
  for (const ScoredDoc& s : all) docs.push_back(s.doc);
  EXPECT_THAT(docs, ::testing::ElementsAre(2, 7, 19, 31, 50, 40));
}

TEST(FlatVectorIndex, ZeroKAndClearYieldNothing) {
  FlatVectorIndex index(4);
  index.Upsert(0, std::vector<float>{1, 2, 3, 4});
  EXPECT_TRUE(index.TopK(std::vector<float>{1, 0, 0, 0}, 0).empty());
  index.Clear();
  EXPECT_EQ(index.size(), 0u);
  EXPECT_FALSE(index.Contains(0));
  EXPECT_TRUE(index.TopK(std::vector<float>{1, 0, 0, 0}, 5).empty());
  EXPECT_EQ(index.dimension(), 4u);
}

}  // namespace
}  // namespace mann::index
