#include <gtest/gtest.h>

#include <mann/core/severity.h>

namespace mann {
namespace {

TEST(Severity, NamesRoundTripInOrderAndNothingElseParses) {
  const char* const names[] = {"info", "warning", "error", "critical"};
  for (std::size_t i = 0; i < kSeverities.size(); ++i) {
    EXPECT_EQ(SeverityName(kSeverities[i]), names[i]);
    EXPECT_EQ(ParseSeverity(names[i]), kSeverities[i]);
    if (i > 0) {
      EXPECT_LT(kSeverities[i - 1], kSeverities[i]) << "lowest first";
    }
  }
  for (const char* bad : {"", "Info", "warn", "fatal", "critical ", "error\n"}) {
    EXPECT_EQ(ParseSeverity(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace mann
