// Schema migrations of the PostgreSQL store, private to the store module.
#pragma once

#include <cstdint>

#include <pqxx/pqxx>

#include <mann/core/status.h>

namespace mann::store::internal {

// Advisory lock keys (pg_advisory_xact_lock takes a bigint). Arbitrary but fixed: every mann
// process must use the same ones. The high bytes spell "mann".
inline constexpr std::int64_t kMigrationLockKey = 0x6d616e6e'00000001;
inline constexpr std::int64_t kChangeLogLockKey = 0x6d616e6e'00000002;

// The schema version this build writes.
int LatestPostgresSchemaVersion();

// Brings the database to the latest version in one transaction under the migration lock, so
// replicas starting at once migrate once and the others wait and then find nothing to do.
// FailedPrecondition when the database was written by a newer mann. `where` names the server
// in messages. May throw pqxx exceptions; the caller maps them.
Status MigratePostgres(pqxx::connection& conn, const std::string& where);

// The recorded schema version (0 when none), read in its own read-only transaction.
std::int64_t ReadPostgresSchemaVersion(pqxx::connection& conn);

}  // namespace mann::store::internal
