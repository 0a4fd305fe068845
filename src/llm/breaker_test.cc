#include <chrono>

#include <gtest/gtest.h>

#include <mann/llm/breaker.h>

namespace mann::llm {
namespace {

using namespace std::chrono_literals;

class BreakerTest : public ::testing::Test {
 protected:
  std::chrono::steady_clock::time_point now_{std::chrono::steady_clock::time_point{} + 1h};
  CircuitBreaker breaker_{{.failure_threshold = 3, .open_duration = 10s}, [this] { return now_; }};

  void Fail() {
    ASSERT_TRUE(breaker_.Allow());
    breaker_.Record(false);
  }
};

TEST_F(BreakerTest, OpensAfterConsecutiveFailuresOnly) {
  Fail();
  Fail();
  ASSERT_TRUE(breaker_.Allow());
  breaker_.Record(true);  // resets the count
  Fail();
  Fail();
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  Fail();
  EXPECT_EQ(breaker_.state(), BreakerState::kOpen);
  EXPECT_FALSE(breaker_.Allow());
  EXPECT_EQ(breaker_.opened_count(), 1u);
}

TEST_F(BreakerTest, HalfOpenProbeClosesOnSuccess) {
  for (int i = 0; i < 3; ++i) Fail();
  now_ += 9s;
  EXPECT_FALSE(breaker_.Allow());
  now_ += 1s;
  EXPECT_TRUE(breaker_.Allow());  // the probe
  EXPECT_EQ(breaker_.state(), BreakerState::kHalfOpen);
  EXPECT_FALSE(breaker_.Allow());  // one probe at a time
  breaker_.Record(true);
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  EXPECT_TRUE(breaker_.Allow());
}

TEST_F(BreakerTest, FailedProbeReopensForAnotherPeriod) {
  for (int i = 0; i < 3; ++i) Fail();
  now_ += 10s;
  ASSERT_TRUE(breaker_.Allow());
  breaker_.Record(false);
  EXPECT_EQ(breaker_.state(), BreakerState::kOpen);
  EXPECT_EQ(breaker_.opened_count(), 2u);
  now_ += 5s;
  EXPECT_FALSE(breaker_.Allow());
  now_ += 5s;
  EXPECT_TRUE(breaker_.Allow());
}

}  // namespace
}  // namespace mann::llm
