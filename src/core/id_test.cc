#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <mann/core/clock.h>
#include <mann/core/id.h>

namespace mann {
namespace {

// The 48-bit millisecond timestamp at the front of a UUIDv7 text form.
std::uint64_t TimestampOf(const std::string& id) {
  return std::stoull(id.substr(0, 8) + id.substr(9, 4), nullptr, 16);
}

TEST(IdGenerator, StrictlyIncreasingWhenTheClockDoesNotMove) {
  FakeClock clock;
  IdGenerator ids(clock, 42);
  std::string previous = ids.Next();
  for (int i = 0; i < 10'000; ++i) {
    std::string next = ids.Next();
    ASSERT_LT(previous, next) << "at id " << i;
    previous = std::move(next);
  }
}

TEST(IdGenerator, KeepsTheClockTimestampWithinOneMillisecond) {
  // A counter that overflowed into the timestamp would make ids claim a later creation time.
  FakeClock clock;
  IdGenerator ids(clock, 7);
  for (int i = 0; i < 10'000; ++i) {
    const std::string id = ids.Next();
    ASSERT_EQ(TimestampOf(id), static_cast<std::uint64_t>(clock.NowMs())) << id;
  }
}

TEST(IdGenerator, StrictlyIncreasingWhenTheClockStepsBackwards) {
  FakeClock clock;
  IdGenerator ids(clock, 42);
  std::string previous = ids.Next();
  const TimestampMs start = clock.NowMs();
  for (int i = 0; i < 10'000; ++i) {
    // Alternate forward steps with backward jumps of up to an hour.
    if (i % 3 == 0) clock.AdvanceMs(1);
    if (i % 1000 == 999) clock.Set(start - 3'600'000);
    std::string next = ids.Next();
    ASSERT_LT(previous, next) << "at id " << i;
    previous = std::move(next);
  }
}

TEST(IdGenerator, TimestampFollowsTheClockWhenItMovesForward) {
  FakeClock clock(1'700'000'000'000);
  IdGenerator ids(clock, 3);
  EXPECT_EQ(TimestampOf(ids.Next()), 1'700'000'000'000u);
  clock.AdvanceMs(5);
  EXPECT_EQ(TimestampOf(ids.Next()), 1'700'000'000'005u);
}

TEST(IdGenerator, SetsVersionSevenAndTheRfcVariant) {
  FakeClock clock;
  IdGenerator ids(clock, 9);
  for (int i = 0; i < 1000; ++i) {
    const std::string id = ids.Next();
    ASSERT_TRUE(IsUuid(id)) << id;
    EXPECT_EQ(id[14], '7') << id;
    const int variant = std::stoi(id.substr(19, 1), nullptr, 16);
    EXPECT_EQ(variant >> 2, 0b10) << id;
    if (i % 10 == 0) clock.AdvanceMs(1);
  }
}

TEST(IdGenerator, SameSeedAndClockGiveTheSameSequence) {
  FakeClock clock;
  IdGenerator a(clock, 1234);
  IdGenerator b(clock, 1234);
  IdGenerator c(clock, 4321);
  const std::string first_a = a.Next();
  EXPECT_EQ(first_a, b.Next());
  EXPECT_NE(first_a, c.Next());
}

TEST(IdGenerator, UniqueAcrossThreads) {
  FakeClock clock;
  IdGenerator ids(clock);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::vector<std::string>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) made[t].push_back(ids.Next());
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> all;
  for (const auto& v : made) {
    // Each thread sees its own ids in increasing order too.
    for (std::size_t i = 1; i < v.size(); ++i) ASSERT_LT(v[i - 1], v[i]);
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(IdGenerator, IsUuidAcceptsOnlyTheCanonicalForm) {
  struct Case {
    std::string text;
    bool valid;
  };
  const Case cases[] = {
      {"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", true},
      {"0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B", true},
      {"00000000-0000-0000-0000-000000000000", true},
      {"", false},
      {"0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", false},     // no dashes
      {"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5", false},  // one short
      {"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b0", false},
      {"0190a1b2-c3d47-e5f-8a9b-0c1d2e3f4a5b", false},  // dash misplaced
      {"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g", false},  // not hex
      {"{190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5}", false},
  };
  for (const Case& c : cases) EXPECT_EQ(IsUuid(c.text), c.valid) << "'" << c.text << "'";
}

}  // namespace
}  // namespace mann
