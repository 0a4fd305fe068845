#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <mann/runtime/runtime.h>

namespace mann::runtime {
namespace {

namespace fs = std::filesystem;

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "mann-runtime-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override { fs::remove_all(root_); }

  config::Config ConfigAt(const fs::path& data_dir) {
    config::Config c = config::DefaultConfig({{"HOME", root_.string()}});
    c.storage.data_dir = data_dir.string();
    c.log.level = "warn";
    return c;
  }

  static unsigned Mode(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 0777;
  }

  fs::path root_;
  FakeClock clock_;
};

TEST_F(RuntimeTest, EnsureDataDirCreatesMissingParentsOwnerOnly) {
  const fs::path dir = root_ / "a" / "b" / "c";
  ASSERT_TRUE(EnsureDataDir(dir.string()).ok());
  EXPECT_TRUE(fs::is_directory(dir));
  EXPECT_EQ(Mode(root_ / "a"), 0700u);
  EXPECT_EQ(Mode(dir), 0700u);
  // Idempotent, and an existing directory keeps its mode.
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  ASSERT_TRUE(EnsureDataDir(dir.string()).ok());
  EXPECT_EQ(Mode(dir), 0750u);
}

TEST_F(RuntimeTest, EnsureDataDirUnderAFileFailsNamingTheDirectory) {
  const fs::path file = root_ / "plain-file";
  std::ofstream(file) << "x";
  const std::string dir = (file / "data").string();
  Status st = EnsureDataDir(dir);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find(dir), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("storage.data_dir"), std::string::npos) << st.message();

  st = EnsureDataDir(file.string());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not a directory"), std::string::npos) << st.message();
  EXPECT_FALSE(EnsureDataDir("").ok());
}

TEST_F(RuntimeTest, DatabasePathJoinsOnce) {
  EXPECT_EQ(DatabasePath("/var/lib/mann"), "/var/lib/mann/mann.db");
  EXPECT_EQ(DatabasePath("/var/lib/mann/"), "/var/lib/mann/mann.db");
}

TEST_F(RuntimeTest, BankOptionsFollowTheConfig) {
  config::Config c = ConfigAt(root_);
  c.memory.memory_size = 10;
  c.memory.max_memory_capacity = 20;
  c.memory.update_threshold = 0.7;
  c.memory.duplicate_threshold = 0.9;
  c.retrieval.fusion = "rrf";
  c.retrieval.dense_weight = 0.25;
  c.retrieval.lexical_weight = 0.75;
  c.retrieval.lexical_confidence = false;  // the bank's own default is true
  c.retrieval.sharpening = 4;
  c.retrieval.importance_boost = 0.3;
  auto o = BankOptionsFromConfig(c);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->memory_size, 10u);
  EXPECT_EQ(o->max_memory_capacity, 20u);
  EXPECT_DOUBLE_EQ(o->update_threshold, 0.7);
  EXPECT_DOUBLE_EQ(o->duplicate_threshold, 0.9);
  EXPECT_EQ(o->fusion.method, index::FusionMethod::kReciprocalRank);
  EXPECT_FLOAT_EQ(o->fusion.dense_weight, 0.25f);
  EXPECT_FLOAT_EQ(o->fusion.lexical_weight, 0.75f);
  EXPECT_FALSE(o->fusion.lexical_confidence);
  EXPECT_DOUBLE_EQ(o->sharpening, 4);
  EXPECT_DOUBLE_EQ(o->importance_boost, 0.3);

  c.retrieval.fusion = "max";
  auto bad = BankOptionsFromConfig(c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("retrieval.fusion"), std::string::npos);
}

TEST_F(RuntimeTest, OpensCreatesTheDatabaseAndPersistsAcrossReopen) {
  const fs::path data = root_ / "data";
  std::string id;
  {
    auto rt = Runtime::Open(ConfigAt(data), clock_);
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    EXPECT_EQ((*rt)->database_path(), (data / "mann.db").string());
    EXPECT_TRUE(fs::exists(data / "mann.db"));
    EXPECT_EQ(Mode(data), 0700u);
    AddRequest r;
    r.content = "I live in Hanoi";
    auto w = (*rt)->bank().Add(r);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    id = w->memory_id;
    auto turn = (*rt)->chat().Turn("default", "", "where do I live?");
    ASSERT_TRUE(turn.ok()) << turn.status().ToString();
    EXPECT_NE(turn->reply.find("Hanoi"), std::string::npos) << turn->reply;
  }
  auto rt = Runtime::Open(ConfigAt(data), clock_);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  EXPECT_EQ((*rt)->bank().TotalCount(), 1u);
  EXPECT_TRUE((*rt)->bank().Get("default", id, false).ok());
  EXPECT_TRUE((*rt)->store().CheckIntegrity().ok());
}

TEST_F(RuntimeTest, EncoderDimensionComesFromTheConfig) {
  config::Config c = ConfigAt(root_ / "d");
  c.encoder.kind = "hashed";
  c.encoder.dimension = 64;
  auto rt = Runtime::Open(c, clock_);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  ASSERT_EQ((*rt)->router().spaces().size(), 1u);
  EXPECT_EQ((*rt)->router().spaces()[0]->Dimension(), 64u);
  EXPECT_FALSE((*rt)->encoder_status().fallback());
  const std::string scrape = metrics::Registry::Default().Render();
  EXPECT_NE(scrape.find("mann_encoder_fallback{configured=\"hashed\"} 0\n"), std::string::npos)
      << scrape;

  c.encoder.dimension = 3;  // below the encoder's minimum
  c.storage.data_dir = (root_ / "e").string();
  auto bad = Runtime::Open(c, clock_);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("encoder.dimension"), std::string::npos);
}

TEST_F(RuntimeTest, CachingOffTurnsTheEmbeddingCacheOffToo) {
  config::Config c = ConfigAt(root_ / "on");
  c.encoder.kind = "hashed";
  c.encoder.cache_size = 16;
  {
    auto rt = Runtime::Open(c, clock_);
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    ASSERT_NE((*rt)->router().cache(), nullptr);
    EXPECT_EQ((*rt)->router().cache()->capacity(), 16u);
  }
  c.cache.enabled = false;
  c.storage.data_dir = (root_ / "off").string();
  auto rt = Runtime::Open(c, clock_);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  EXPECT_EQ((*rt)->router().cache(), nullptr);
  AddRequest add;
  add.content = "caching off still embeds";
  ASSERT_TRUE((*rt)->bank().Add(add).ok());
}

TEST_F(RuntimeTest, DefaultEncoderIsTheSentenceEncoderWithTheHashedOneForOtherScripts) {
  auto rt = Runtime::Open(ConfigAt(root_ / "d"), clock_);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  const EncoderStatus& status = (*rt)->encoder_status();
  EXPECT_EQ(status.configured, "use-lite");
  EXPECT_EQ(status.active, "use-lite") << status.fallback_reason;
  ASSERT_EQ((*rt)->router().spaces().size(), 2u);
  EXPECT_EQ((*rt)->router().spaces()[0]->Dimension(), 512u);
  EXPECT_EQ((*rt)->router().ForText(text::Language::kEnglish).space, 0u);
  EXPECT_EQ((*rt)->router().ForText(text::Language::kVietnamese).space, 0u);  // via the gloss
  EXPECT_EQ((*rt)->router().ForText(text::Language::kUnknown).space, 1u);

  // Recall by meaning: no word of the question is in the memory.
  AddRequest r;
  r.content = "I live in Hanoi, in a small flat near West Lake.";
  ASSERT_TRUE((*rt)->bank().Add(r).ok());
  r.content = "My favourite food is grilled fish with rice noodles.";
  ASSERT_TRUE((*rt)->bank().Add(r).ok());
  SearchRequest q;
  q.query = "which city is my home";
  auto hits = (*rt)->bank().Search(q);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  ASSERT_FALSE(hits->empty());
  EXPECT_NE(hits->front().entry.content.find("Hanoi"), std::string::npos);
}

TEST_F(RuntimeTest, MissingModelFallsBackToHashedAndKeepsWorking) {
  config::Config c = ConfigAt(root_ / "d");
  c.encoder.model_dir = (root_ / "no-model-here").string();
  auto rt = Runtime::Open(c, clock_);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  const EncoderStatus& status = (*rt)->encoder_status();
  EXPECT_TRUE(status.fallback());
  EXPECT_EQ(status.active, "hashed");
  EXPECT_NE(status.fallback_reason.find(c.encoder.model_dir), std::string::npos)
      << status.fallback_reason;
  const std::string scrape = metrics::Registry::Default().Render();
  EXPECT_NE(scrape.find("mann_encoder_fallback{configured=\"use-lite\"} 1\n"), std::string::npos)
      << scrape;
  AddRequest r;
  r.content = "I live in Hanoi";
  ASSERT_TRUE((*rt)->bank().Add(r).ok());
  SearchRequest q;
  q.query = "where do I live";
  auto hits = (*rt)->bank().Search(q);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hits->size(), 1u);
}

TEST_F(RuntimeTest, UnreachableRemoteEncoderFallsBackToTheSentenceEncoder) {
  config::Config c = ConfigAt(root_ / "d");
  c.encoder.kind = "remote";
  c.encoder.url = "http://127.0.0.1:9/v1";  // discard port: nothing listens
  c.encoder.model = "nomic-embed-text";
  c.encoder.timeout = std::chrono::seconds(2);
  auto rt = Runtime::Open(c, clock_);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  EXPECT_EQ((*rt)->encoder_status().active, "use-lite");
  EXPECT_NE((*rt)->encoder_status().fallback_reason.find("127.0.0.1:9"), std::string::npos)
      << (*rt)->encoder_status().fallback_reason;
}

TEST_F(RuntimeTest, UnusableDataDirFailsNamingIt) {
  const fs::path file = root_ / "f";
  std::ofstream(file) << "x";
  auto rt = Runtime::Open(ConfigAt(file / "data"), clock_);
  ASSERT_FALSE(rt.ok());
  EXPECT_NE(rt.status().message().find((file / "data").string()), std::string::npos);
}

}  // namespace
}  // namespace mann::runtime
