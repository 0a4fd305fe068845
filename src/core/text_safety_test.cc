#include <gtest/gtest.h>

#include <mann/core/text_safety.h>

namespace mann {
namespace {

TEST(RedactSecrets, ReplacesEveryOccurrenceLongestSecretFirst) {
  const std::string url = "https://hooks.example/T000/B000/token1234";
  EXPECT_EQ(RedactSecrets("POST " + url + " failed; token1234 was refused", {"token1234", url}),
            "POST [redacted] failed; [redacted] was refused");
}

TEST(RedactSecrets, IgnoresSecretsTooShortToMeanAnything) {
  EXPECT_EQ(RedactSecrets("a / b", {"a", "/", ""}), "a / b");
}

TEST(ClipToOneLine, SqueezesControlCharactersAndCutsOnACharacterBoundary) {
  EXPECT_EQ(ClipToOneLine("  line one\r\nline\ttwo  ", 100), "line one line two");
  EXPECT_EQ(ClipToOneLine("Hà Nội", 2), "H...");  // "à" would be cut in two
  EXPECT_EQ(ClipToOneLine("short", 5), "short");
}

}  // namespace
}  // namespace mann
