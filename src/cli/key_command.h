// `mann key create`: makes a random API key and the keys-file entry that admits it.
//
// The key is printed once, on standard output, and never stored: the entry holds its SHA-256
// hash only, so a leaked keys file lets nobody in. Losing the key means making a new one.
#pragma once

#include <string>
#include <vector>

#include "context.h"

namespace mann::cli {

struct KeyCreateArgs {
  std::string name;                     // shown in logs and used for rate-limit buckets
  std::vector<std::string> namespaces;  // the first is the key's default namespace
  bool admin = false;                   // may touch every namespace
  bool json = false;                    // {"key": ..., "entry": ...} instead of text
};

// Prints the key and the TOML entry. Exit 2 (usage) for a bad name or namespace, or neither
// --namespace nor --admin.
int RunKeyCreate(const KeyCreateArgs& args, Io& io);

}  // namespace mann::cli
