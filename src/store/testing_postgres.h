// Test support: a PostgreSQL database of the test's own on the cluster scripts/services.sh
// started (MANN_TEST_POSTGRES_URL), so tests may run in parallel without seeing each other.
//
//   TestDatabase db;
//   MANN_TEST_SERVICE_URL_OR_RETURN(admin_url, "MANN_TEST_POSTGRES_URL");
//   ASSERT_NO_FATAL_FAILURE(db.Create(admin_url));
//   ... PostgresStore::Open({.url = db.url()}) ...
//
// The database is dropped (WITH (FORCE), closing stray connections) when the object dies.
// Header-only and included only by *_test.cc files.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>

#include <gtest/gtest.h>
#include <pqxx/pqxx>
#include <unistd.h>

namespace mann::testing {

// `url` with its database (the path) replaced by `database`.
inline std::string WithDatabase(const std::string& url, const std::string& database) {
  const std::size_t authority = url.find("://");
  const std::size_t slash = url.find('/', authority == std::string::npos ? 0 : authority + 3);
  const std::size_t query = url.find('?');
  const std::string head = url.substr(0, slash == std::string::npos ? query : slash);
  const std::string tail = query == std::string::npos ? "" : url.substr(query);
  return head + "/" + database + tail;
}

class TestDatabase {
 public:
  TestDatabase() = default;
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;
  ~TestDatabase() { Drop(); }

  // Creates a database named mann_t_<pid>_<counter>_<random>.
  void Create(const std::string& admin_url) {
    static std::atomic<int> counter{0};
    std::random_device random;
    name_ = "mann_t_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(random() % 1'000'000);
    admin_url_ = admin_url;
    url_ = WithDatabase(admin_url, name_);
    try {
      pqxx::connection admin(admin_url_);
      pqxx::nontransaction tx(admin);
      tx.exec("CREATE DATABASE " + tx.quote_name(name_));
    } catch (const std::exception& e) {
      name_.clear();
      FAIL() << "cannot create a test database on " << admin_url << ": " << e.what();
    }
  }

  // Closes every server connection to the database except the admin's (what an operator's
  // pg_terminate_backend or a server restart does to mann). Returns how many it closed.
  int TerminateConnections() {
    pqxx::connection admin(admin_url_);
    pqxx::nontransaction tx(admin);
    const pqxx::result r = tx.exec_params(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        name_);
    return r[0][0].as<int>();
  }

  // Runs `sql` on the test database and returns the first column of the first row as text.
  std::string Query(const std::string& sql) {
    pqxx::connection c(url_);
    pqxx::nontransaction tx(c);
    const pqxx::result r = tx.exec(sql);
    return r.empty() || r[0][0].is_null() ? std::string() : std::string(r[0][0].c_str());
  }

  void Drop() {
    if (name_.empty()) return;
    try {
      pqxx::connection admin(admin_url_);
      pqxx::nontransaction tx(admin);
      tx.exec("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cannot drop test database " << name_ << ": " << e.what();
    }
    name_.clear();
  }

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

 private:
  std::string admin_url_;
  std::string url_;
  std::string name_;
};

}  // namespace mann::testing
