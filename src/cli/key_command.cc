#include "key_command.h"

#include <ostream>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <mann/core/status.h>
#include <mann/security/api_keys.h>

namespace mann::cli {
namespace {

// A TOML basic string; names and namespaces are validated, so only quotes could need escaping.
std::string TomlString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + '"';
}

}  // namespace

int RunKeyCreate(const KeyCreateArgs& args, Io& io) {
  if (args.namespaces.empty() && !args.admin) {
    return ReportError(
        io.err, InvalidArgumentError("a key needs at least one --namespace, or --admin to touch "
                                     "every namespace"));
  }
  std::string entry = fmt::format("[[keys]]\nname = {}\n", TomlString(args.name));
  const std::string key = security::GenerateKey();
  entry += fmt::format("hash = {}\n", TomlString(security::HashKey(key)));
  if (args.admin) entry += "admin = true\n";
  if (!args.namespaces.empty()) {
    std::string list;
    for (const std::string& ns : args.namespaces) {
      if (!list.empty()) list += ", ";
      list += TomlString(ns);
    }
    entry += fmt::format("namespaces = [{}]\ndefault_namespace = {}\n", list,
                         TomlString(args.namespaces.front()));
  }
  // The same parser as `mann serve` checks the entry, so what is printed is what will load.
  auto parsed = security::KeyStore::FromToml(entry, "the new entry");
  if (!parsed.ok()) return ReportError(io.err, parsed.status());

  if (args.json) {
    io.out << boost::json::serialize(boost::json::object{{"key", key}, {"entry", entry}}) << '\n';
    return kExitOk;
  }
  io.out << "API key (shown only now; give it to the client):\n  " << key << "\n\n"
         << "Append this entry to the keys file (security.api_keys_file):\n\n"
         << entry;
  return kExitOk;
}

}  // namespace mann::cli
