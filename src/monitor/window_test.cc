#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <mann/monitor/window.h>
#include <mann/server/router.h>

namespace mann::monitor {
namespace {

using std::chrono::duration;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The ceil(q * n)-th smallest of `values`, the definition Snapshot estimates.
double NearestRank(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::max<std::size_t>(rank, 1) - 1];
}

TEST(RequestWindow, EmptyWindowReportsZeros) {
  FakeClock clock;
  RequestWindow window(clock);
  const WindowSnapshot s = window.Snapshot();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(s.error_rate, 0.0);
  EXPECT_EQ(s.p50, 0.0);
  EXPECT_EQ(s.p99, 0.0);
}

TEST(RequestWindow, CountsRequestsAndErrors) {
  FakeClock clock;
  RequestWindow window(clock);
  for (int i = 0; i < 8; ++i) window.Record(milliseconds(10), false);
  clock.AdvanceMs(1500);
  window.Record(milliseconds(10), true);
  window.Record(milliseconds(10), true);
  const WindowSnapshot s = window.Snapshot();
  EXPECT_EQ(s.count, 10u);
  EXPECT_EQ(s.errors, 2u);
  EXPECT_DOUBLE_EQ(s.error_rate, 0.2);
}

TEST(RequestWindow, PercentilesAreWithinSixPercent) {
  struct Case {
    const char* name;
    std::vector<double> durations;
  };
  std::vector<Case> cases;
  {
    Case linear{"1 ms to 1 s, evenly", {}};
    for (int i = 1; i <= 1000; ++i) linear.durations.push_back(i / 1000.0);
    cases.push_back(linear);
  }
  {
    Case log_uniform{"log-uniform from 200 us to 50 s", {}};
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> exponent(std::log10(2e-4), std::log10(50.0));
    for (int i = 0; i < 5000; ++i) log_uniform.durations.push_back(std::pow(10, exponent(rng)));
    cases.push_back(log_uniform);
  }
  {
    Case tail{"fast with a slow tail", {}};
    for (int i = 0; i < 960; ++i) tail.durations.push_back(0.012);
    for (int i = 0; i < 40; ++i) tail.durations.push_back(7.5);
    cases.push_back(tail);
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FakeClock clock;
    RequestWindow window(clock);
    for (double d : c.durations) window.Record(duration<double>(d), false);
    const WindowSnapshot s = window.Snapshot();
    ASSERT_EQ(s.count, c.durations.size());
    const std::pair<double, double> reported[] = {{0.50, s.p50}, {0.95, s.p95}, {0.99, s.p99}};
    for (const auto& [q, value] : reported) {
      const double truth = NearestRank(c.durations, q);
      EXPECT_NEAR(value / truth, 1.0, 0.06) << "q=" << q << " truth=" << truth;
    }
  }
}

TEST(RequestWindow, OneRequestIsReportedExactly) {
  FakeClock clock;
  RequestWindow window(clock);
  window.Record(duration<double>(0.123), false);
  const WindowSnapshot s = window.Snapshot();
  EXPECT_DOUBLE_EQ(s.p50, 0.123);
  EXPECT_DOUBLE_EQ(s.p99, 0.123);
}

TEST(RequestWindow, DurationsOutsideTheBucketsAreClampedToWhatWasSeen) {
  FakeClock clock;
  RequestWindow window(clock);
  for (int i = 0; i < 10; ++i) window.Record(duration<double>(20e-6), false);
  EXPECT_LE(window.Snapshot().p50, RequestWindow::kLowestBoundSeconds);
  EXPECT_GE(window.Snapshot().p50, 20e-6);

  window.Record(seconds(250), false);  // above the last bound: the largest duration itself
  EXPECT_DOUBLE_EQ(window.Snapshot().p99, 250.0);

  // A negative or NaN duration counts as 0 rather than poisoning the percentiles.
  RequestWindow other(clock);
  other.Record(duration<double>(-1.0), false);
  other.Record(duration<double>(std::nan("")), false);
  EXPECT_EQ(other.Snapshot().count, 2u);
  EXPECT_EQ(other.Snapshot().p99, 0.0);
}

TEST(RequestWindow, SecondsOlderThanTheWindowFallOut) {
  FakeClock clock(1'000'000'000'000);  // on a second boundary
  RequestWindow window(clock, seconds(10));
  EXPECT_EQ(window.window(), seconds(10));
  window.Record(milliseconds(5), true);
  clock.AdvanceMs(999);  // still the same second
  window.Record(milliseconds(5), false);

  // The window is the 10 whole seconds ending with the current one.
  EXPECT_EQ(window.Snapshot(clock.NowMs() + 9'000).count, 2u);
  EXPECT_EQ(window.Snapshot(clock.NowMs() + 9'001).count, 0u);

  // A slot reused a window later starts from zero.
  clock.AdvanceMs(10'000);
  window.Record(milliseconds(5), false);
  const WindowSnapshot s = window.Snapshot();
  EXPECT_EQ(s.count, 1u);
  EXPECT_EQ(s.errors, 0u);
}

TEST(RequestWindow, WindowLengthIsClamped) {
  FakeClock clock;
  EXPECT_EQ(RequestWindow(clock, seconds(0)).window(), seconds(1));
  EXPECT_EQ(RequestWindow(clock, seconds(100'000)).window(), RequestWindow::kMaxWindow);
}

TEST(RequestWindow, BucketsCoverTheirDurations) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> exponent(-5, 3);
  int previous = 0;
  for (int i = 0; i < 10'000; ++i) {
    const double d = std::pow(10, exponent(rng));
    const int b = RequestWindow::BucketOf(d);
    ASSERT_GE(b, 0);
    ASSERT_LT(b, RequestWindow::kBuckets);
    EXPECT_LE(RequestWindow::BucketLowerBound(b), d * (1 + 1e-12));
    EXPECT_GE(RequestWindow::BucketUpperBound(b), d * (1 - 1e-12));
  }
  for (double d = 1e-5; d < 1e3; d *= 1.01) {
    const int b = RequestWindow::BucketOf(d);
    EXPECT_GE(b, previous);  // monotonic
    previous = b;
  }
  EXPECT_EQ(RequestWindow::BucketOf(1e-5), 0);
  EXPECT_EQ(RequestWindow::BucketOf(1e3), RequestWindow::kBuckets - 1);
}

TEST(RequestWindow, ConcurrentRecordingLosesNothing) {
  FakeClock clock;
  RequestWindow window(clock);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10'000; ++i) {
        window.Record(milliseconds(1 + i % 100), i % 10 == 0);
        if (t == 0 && i % 2'000 == 0) clock.AdvanceMs(1000);  // rotate slots meanwhile
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const WindowSnapshot s = window.Snapshot();
  EXPECT_EQ(s.count, 40'000u);
  EXPECT_EQ(s.errors, 4'000u);
}

server::Request MakeRequest(const std::string& target) {
  server::Request request;
  request.method = "GET";
  request.target = target;
  return request;
}

TEST(RequestWindowMiddleware, RecordsDurationsAndCountsServerErrors) {
  FakeClock clock;
  RequestWindow window(clock);
  server::Router router;
  ASSERT_TRUE(router
                  .Add("GET", "/ok",
                       [](const server::Request&) {
                         return server::Response::Json({{"ok", true}});
                       })
                  .ok());
  ASSERT_TRUE(router
                  .Add("GET", "/slow",
                       [](const server::Request&) {
                         std::this_thread::sleep_for(milliseconds(30));
                         return server::Response::Json({{"ok", true}});
                       })
                  .ok());
  ASSERT_TRUE(router
                  .Add("GET", "/unavailable",
                       [](const server::Request&) { return server::ServiceUnavailable(); })
                  .ok());
  ASSERT_TRUE(router
                  .Add("GET", "/boom",
                       [](const server::Request&) -> server::Response {
                         throw std::runtime_error("disk on fire");
                       })
                  .ok());
  ASSERT_TRUE(router
                  .Add("GET", "/health",
                       [](const server::Request&) {
                         return server::Response::Json({{"status", "healthy"}});
                       })
                  .ok());
  router.Use(RecordingMiddleware(window));

  for (const char* target :
       {"/ok", "/ok", "/slow", "/unavailable", "/boom", "/missing", "/health", "/health"}) {
    server::Request request = MakeRequest(target);
    router.Handle(request);
  }
  const WindowSnapshot s = window.Snapshot();
  EXPECT_EQ(s.count, 6u);   // /health is left out
  EXPECT_EQ(s.errors, 2u);  // 503 and the 500 of the throwing handler; the 404 is not an error
  EXPECT_GE(s.p99, 0.028);
}

TEST(RequestWindowMiddleware, AnExceptionFromLaterMiddlewareIsAnError) {
  FakeClock clock;
  RequestWindow window(clock);
  server::Router router;
  ASSERT_TRUE(router
                  .Add("GET", "/ok",
                       [](const server::Request&) {
                         return server::Response::Json({{"ok", true}});
                       })
                  .ok());
  router.Use(RecordingMiddleware(window, {.excluded_routes = {}}));
  router.Use([](server::Request&, const server::Next&) -> server::Response {
    throw std::runtime_error("middleware bug");
  });
  server::Request request = MakeRequest("/ok");
  EXPECT_EQ(router.Handle(request).status, 500);
  EXPECT_EQ(window.Snapshot().count, 1u);
  EXPECT_EQ(window.Snapshot().errors, 1u);
}

}  // namespace
}  // namespace mann::monitor
