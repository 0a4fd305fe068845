// Test support: the addresses of the PostgreSQL and Redis servers that scripts/services.sh
// started for the test suite (scripts/test.sh exports them before running ctest).
//
//   std::string url;
//   MANN_TEST_SERVICE_URL_OR_RETURN(url, "MANN_TEST_POSTGRES_URL");
//
// is a statement that ends the test when the variable is unset: as a failure
// when MANN_REQUIRE_SERVICES=1 (the suite started the services, so a missing one is a defect),
// and as a skip otherwise (a developer running one test binary without them).
//
// Header-only and included only by *_test.cc files.
#pragma once

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

namespace mann::testing {

inline std::string ServiceUrlFromEnvironment(const char* variable) {
  const char* value = std::getenv(variable);
  return value == nullptr ? std::string() : std::string(value);
}

inline bool ServicesRequired() {
  const char* value = std::getenv("MANN_REQUIRE_SERVICES");
  return value != nullptr && std::string(value) == "1";
}

}  // namespace mann::testing

// Use inside a TEST body or SetUp(); `variable` is a string literal.
#define MANN_TEST_SERVICE_URL_OR_RETURN(out, variable)                                    \
  do {                                                                                    \
    (out) = ::mann::testing::ServiceUrlFromEnvironment(variable);                         \
    if ((out).empty()) {                                                                  \
      if (::mann::testing::ServicesRequired()) {                                          \
        FAIL() << variable << " is unset although MANN_REQUIRE_SERVICES=1";               \
      }                                                                                   \
      GTEST_SKIP() << variable << " is unset; scripts/services.sh start DIR provides it"; \
    }                                                                                     \
  } while (false)
