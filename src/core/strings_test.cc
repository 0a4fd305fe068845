#include <gtest/gtest.h>

#include <mann/core/strings.h>

namespace mann {
namespace {

TEST(Strings, TrimSpaceDropsWhiteSpaceAtBothEndsOnly) {
  EXPECT_EQ(TrimSpace(" \t POST /memories=10/minute \r\n"), "POST /memories=10/minute");
  EXPECT_EQ(TrimSpace("a b"), "a b");
  EXPECT_EQ(TrimSpace(" \n\t "), "");
}

TEST(Strings, AsciiLowerLeavesOtherBytesAlone) {
  EXPECT_EQ(AsciiLower("HTTPS://App.Example:8443"), "https://app.example:8443");
  EXPECT_EQ(AsciiLower("Hà NỘI"), "hà nỘi");  // bytes past ASCII are not letters to it
}

}  // namespace
}  // namespace mann
