// The SQLite schema of the store and its migrations, private to the store module.
//
// The file carries PRAGMA application_id = kApplicationId (so a foreign SQLite file is refused)
// and PRAGMA user_version = the number of migrations applied. Migrations are an ordered list;
// migration N takes the file from version N-1 to N inside one transaction.
#pragma once

#include <cstdint>

#include <mann/core/status.h>

#include "sqlite_db.h"

namespace mann::store::internal {

inline constexpr std::int64_t kApplicationId = 0x6d616e6e;  // "mann" in ASCII

// The version the last migration produces.
int LatestSchemaVersion();

// Refuses files that are not mann databases or were written by a newer mann, then applies the
// missing migrations. REQUIRES: `conn` is writable and nothing else uses it.
Status Migrate(Connection& conn);

// The same checks without writing: FailedPrecondition when the file needs a migration.
Status CheckSchemaReadOnly(Connection& conn);

}  // namespace mann::store::internal
