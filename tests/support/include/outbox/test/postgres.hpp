#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace outbox::test {

/// Runs SQL on the test database (its own connection, autocommit); throws on error.
void pg_exec(std::string_view sql);
/// Runs a query and returns the first column of every row as text ("" for NULL).
std::vector<std::string> pg_column(std::string_view sql);
/// The single value of a one-row, one-column query.
std::string pg_scalar(std::string_view sql);
/// Drops a logical replication slot if it exists, terminating a walsender that holds it.
void pg_drop_slot(std::string_view slot);

}  // namespace outbox::test
