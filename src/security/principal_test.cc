#include <gtest/gtest.h>

#include <mann/security/principal.h>

namespace mann::security {
namespace {

TEST(SecurityPrincipal, NonAdminsMayTouchOnlyTheirNamespaces) {
  Principal principal;
  principal.namespaces = {"a", "b"};
  EXPECT_TRUE(principal.MayAccess("a"));
  EXPECT_TRUE(principal.MayAccess("b"));
  EXPECT_FALSE(principal.MayAccess("c"));
  EXPECT_FALSE(principal.MayAccess(""));
  EXPECT_FALSE(principal.MayAccess("A"));  // namespaces are case-sensitive

  Principal admin;
  admin.admin = true;
  EXPECT_TRUE(admin.MayAccess("anything"));
}

TEST(SecurityPrincipal, AttachedPrincipalIsReadBackAndReplaced) {
  server::Request request;
  EXPECT_EQ(PrincipalOf(request), nullptr);
  Principal first;
  first.key_name = "first";
  AttachPrincipal(request, first);
  ASSERT_NE(PrincipalOf(request), nullptr);
  EXPECT_EQ(PrincipalOf(request)->key_name, "first");
  Principal second;
  second.key_name = "second";
  second.admin = true;
  AttachPrincipal(request, second);
  EXPECT_EQ(PrincipalOf(request)->key_name, "second");
  EXPECT_TRUE(PrincipalOf(request)->admin);

  // Something else under the attribute's name is not taken for a principal.
  server::Request other;
  other.attributes.emplace(std::string(kPrincipalAttribute), std::string("not a principal"));
  EXPECT_EQ(PrincipalOf(other), nullptr);
}

}  // namespace
}  // namespace mann::security
