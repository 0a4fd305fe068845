#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/security/exposure.h>

namespace mann::security {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(SecurityExposure, RecognisesLoopbackAddressesAndNames) {
  for (const char* host : {"127.0.0.1", "127.255.0.9", "::1", "[::1]", "0:0:0:0:0:0:0:1",
                           "::ffff:127.0.0.1", "localhost", "LocalHost", "localhost."}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host :
       {"0.0.0.0", "::", "[::]", "", "10.0.0.1", "128.0.0.1", "::2", "::ffff:10.0.0.1",
        "127.0.0.1.example.com", "localhost.example.com", "127.1", "example.com", "[::1"}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

TEST(SecurityExposure, PublicBindWithoutKeysNeedsTheFlag) {
  EXPECT_TRUE(CheckExposure("127.0.0.1", false, false).ok());
  EXPECT_TRUE(CheckExposure("::1", false, false).ok());
  EXPECT_TRUE(CheckExposure("0.0.0.0", true, false).ok());
  EXPECT_TRUE(CheckExposure("0.0.0.0", false, true).ok());

  Status s = CheckExposure("0.0.0.0", false, false);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("\"0.0.0.0\""), HasSubstr("security.api_keys_file"),
                                 HasSubstr("--allow-unauthenticated")));
  EXPECT_EQ(CheckExposure("10.1.2.3", false, false).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(CheckExposure("", false, false).code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace mann::security
