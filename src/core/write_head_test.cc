#include <optional>
#include <string>

#include <gtest/gtest.h>

#include <mann/core/write_head.h>

namespace mann {
namespace {

struct ForgetCase {
  std::string text;
  std::optional<std::string> subject;
};

TEST(WriteHead, ParseForgetRequestRecognisesEnglishAndVietnamese) {
  const ForgetCase cases[] = {
      // The header's examples.
      {"Forget that I live in Hanoi", "I live in Hanoi"},
      {"please forget my phone number", "my phone number"},
      {"quên rằng tôi sống ở Hà Nội", "tôi sống ở Hà Nội"},
      {"hay quen la toi song o Ha Noi", "toi song o Ha Noi"},
      // Case, punctuation and accent variants.
      {"FORGET ABOUT the meeting on Friday.", "the meeting on Friday"},
      {"Please forget that my sister is called Mai", "my sister is called Mai"},
      {"Quên rằng tôi thích mèo", "tôi thích mèo"},
      {"Hãy quên đi số điện thoại của tôi", "số điện thoại của tôi"},
      {"xóa địa chỉ của tôi", "địa chỉ của tôi"},
      // Not a request to forget something.
      {"forget", std::nullopt},
      {"", std::nullopt},
      {"I will never forget Paris", std::nullopt},
      {"Don't forget to buy milk", std::nullopt},
      {"Forgetting names is common", std::nullopt},
      {"Tôi hay quên chìa khóa", std::nullopt},
      // An opening with nothing after it names nothing to forget.
      {"please forget", std::nullopt},
      {"Forget that", std::nullopt},
      {"please forget about", std::nullopt},
      {"quên đi", std::nullopt},
      {"hãy quên rằng", std::nullopt},
  };
  for (const ForgetCase& c : cases) {
    EXPECT_EQ(ParseForgetRequest(c.text), c.subject) << "'" << c.text << "'";
  }
}

}  // namespace
}  // namespace mann
