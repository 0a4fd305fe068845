#include "memory_commands.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mann/core/entry_json.h>
#include <mann/core/id.h>
#include <mann/encode/router.h>
#include <mann/text/analyzer.h>

#include "progress.h"

namespace mann::cli {
namespace {

namespace json = boost::json;

void PrintJson(Io& io, const json::value& v) {
  io.out << json::serialize(v) << '\n';
  io.out.flush();
}

Result<boost::json::object> ParseMetadata(const std::optional<std::string>& text) {
  if (!text) return boost::json::object();
  MANN_ASSIGN_OR_RETURN(json::value v, ParseJson(*text, "--metadata"));
  if (!v.is_object()) {
    return InvalidArgumentError("--metadata must be a JSON object such as '{\"city\":\"Hanoi\"}'");
  }
  return std::move(v.as_object());
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  return fmt::format("{}", fmt::join(items, sep));
}

void PrintOutcome(Io& io, const WriteOutcome& w) {
  switch (w.action) {
    case WriteAction::kAdd:
      io.out << "added " << w.memory_id << '\n';
      break;
    case WriteAction::kUpdate:
      io.out << "merged into " << w.memory_id << " (now version " << w.version << "): " << w.reason
             << '\n';
      break;
    case WriteAction::kNoop:
      io.out << "already stored as " << w.memory_id << ": " << w.reason << '\n';
      break;
    case WriteAction::kDelete:
      if (w.memory_id.empty()) {
        io.out << "nothing matched, nothing forgotten\n";
      } else {
        io.out << "forgot " << w.memory_id << ": " << w.reason << '\n';
      }
      break;
  }
  for (const auto& id : w.evicted_ids) {
    io.out << "evicted " << id << " to stay within memory.max_memory_capacity\n";
  }
}

void PrintEntry(Io& io, const MemoryEntry& e) {
  io.out << fmt::format("id:          {}\n", e.id) << fmt::format("namespace:   {}\n", e.ns)
         << fmt::format("content:     {}\n", e.content);
  if (!e.context.empty()) io.out << fmt::format("context:     {}\n", e.context);
  if (!e.tags.empty()) io.out << fmt::format("tags:        {}\n", Join(e.tags, ", "));
  if (!e.metadata.empty()) io.out << fmt::format("metadata:    {}\n", json::serialize(e.metadata));
  io.out << fmt::format("importance:  {}\n", e.importance)
         << fmt::format("usage:       {} (last access {})\n", e.usage_count,
                        FormatTimestamp(e.last_access_ms))
         << fmt::format("created:     {}\n", FormatTimestamp(e.created_ms))
         << fmt::format("updated:     {} (version {})\n", FormatTimestamp(e.updated_ms), e.version);
}

std::string EntryLine(const MemoryEntry& e) {
  std::string line = fmt::format("{}  {}  {}", e.id, FormatTimestamp(e.created_ms).substr(0, 16),
                                 OneLine(e.content, 72));
  if (!e.tags.empty()) line += fmt::format("  [{}]", Join(e.tags, ", "));
  return line;
}

// --- import -----------------------------------------------------------------------------------

// Imports JSON Lines one entry at a time: a line with an id is restored as it was exported
// (MemoryBank::Restore keeps id, times, usage and version); a line without one is added as new
// information, bypassing the write head so an import never merges or drops lines.
class Importer {
 public:
  explicit Importer(CommandEnv& env) : env_(env), rt_(env.rt) {}

  // One line; an error names what is wrong with it.
  Status Line(std::string_view text) {
    MANN_ASSIGN_OR_RETURN(json::value v, ParseJson(text, "the line"));
    MANN_ASSIGN_OR_RETURN(ImportedEntry in, EntryFromJson(v));
    if (!in.has_namespace) in.entry.ns = env_.ns;
    if (!in.has_id) return AddNew(std::move(in.entry));
    auto restored = rt_.bank().Restore(std::move(in.entry), "import");
    if (!restored.ok() && restored.status().code() == StatusCode::kAlreadyExists) {
      ++skipped_;
      return Status::Ok();
    }
    MANN_RETURN_IF_ERROR(restored.status());
    ++imported_;
    return Status::Ok();
  }

  std::size_t imported() const { return imported_; }
  std::size_t skipped() const { return skipped_; }

 private:
  Status AddNew(MemoryEntry e) {
    AddRequest r;
    r.ns = e.ns;
    r.content = std::move(e.content);
    r.context = std::move(e.context);
    r.tags = std::move(e.tags);
    r.metadata = std::move(e.metadata);
    r.importance = e.importance;
    r.source = "import";
    r.use_write_head = false;
    MANN_RETURN_IF_ERROR(rt_.bank().Add(r).status());
    ++imported_;
    return Status::Ok();
  }

  CommandEnv& env_;
  runtime::Runtime& rt_;
  std::size_t imported_ = 0;
  std::size_t skipped_ = 0;
};

}  // namespace

int RunAdd(CommandEnv& env, const AddArgs& args) {
  auto metadata = ParseMetadata(args.metadata);
  if (!metadata.ok()) return ReportError(env.io.err, metadata.status());
  AddRequest r;
  r.ns = env.ns;
  r.content = args.content;
  r.context = args.context;
  r.tags = args.tags;
  r.metadata = std::move(metadata).value();
  r.importance = args.importance;
  r.source = "cli";
  auto outcome = env.rt.bank().Add(r);
  if (!outcome.ok()) return ReportError(env.io.err, outcome.status());
  if (env.json) {
    PrintJson(env.io, OutcomeToJson(*outcome));
  } else {
    PrintOutcome(env.io, *outcome);
  }
  return kExitOk;
}

int RunGet(CommandEnv& env, const std::string& id) {
  auto entry = env.rt.bank().Get(env.ns, id);
  if (!entry.ok()) return ReportError(env.io.err, entry.status());
  if (env.json) {
    PrintJson(env.io, EntryToJson(*entry));
  } else {
    PrintEntry(env.io, *entry);
  }
  return kExitOk;
}

int RunList(CommandEnv& env, const ListArgs& args) {
  ListQuery q;
  q.ns = env.ns;
  q.tags = args.tags;
  q.limit = args.limit;
  q.cursor = args.cursor;
  if (args.since) {
    auto t = ParseTimestamp(*args.since, "--since");
    if (!t.ok()) return ReportError(env.io.err, t.status());
    q.created_from = *t;
  }
  if (args.until) {
    auto t = ParseTimestamp(*args.until, "--until");
    if (!t.ok()) return ReportError(env.io.err, t.status());
    q.created_until = *t;
  }
  if (args.meta) {
    const auto eq = args.meta->find('=');
    q.metadata_key = args.meta->substr(0, eq);
    if (q.metadata_key->empty()) {
      return ReportError(env.io.err, InvalidArgumentError("--meta expects KEY or KEY=VALUE"));
    }
    if (eq != std::string::npos) {
      // A JSON value ("3", "true", "\"x\""); text that is not JSON matches as a plain string.
      const std::string raw = args.meta->substr(eq + 1);
      auto v = ParseJson(raw, "--meta value");
      q.metadata_value = v.ok() ? std::move(v).value() : json::value(raw);
    }
  }

  auto page = env.rt.bank().List(q);
  if (!page.ok()) return ReportError(env.io.err, page.status());
  if (env.json) {
    json::array entries;
    for (const auto& e : page->entries) entries.push_back(EntryToJson(e));
    PrintJson(env.io,
              json::object{{"entries", std::move(entries)}, {"next_cursor", page->next_cursor}});
    return kExitOk;
  }
  if (page->entries.empty()) env.io.out << "no memories\n";
  for (const auto& e : page->entries) env.io.out << EntryLine(e) << '\n';
  if (!page->next_cursor.empty()) {
    env.io.out << "more: mann memory list --cursor " << page->next_cursor << '\n';
  }
  return kExitOk;
}

int RunSearch(CommandEnv& env, const SearchArgs& args) {
  SearchRequest r;
  r.ns = env.ns;
  r.query = args.query;
  r.top_k = args.top_k.value_or(static_cast<std::size_t>(env.rt.config().retrieval.default_top_k));
  r.min_similarity = args.min_similarity;
  auto hits = env.rt.bank().Search(r);
  if (!hits.ok()) return ReportError(env.io.err, hits.status());
  if (env.json) {
    json::array out;
    for (const auto& h : *hits) out.push_back(HitToJson(h));
    PrintJson(env.io, json::object{{"query", args.query}, {"hits", std::move(out)}});
    return kExitOk;
  }
  if (hits->empty()) env.io.out << "no matching memories\n";
  int rank = 0;
  for (const auto& h : *hits) {
    env.io.out << fmt::format("{:2d}. {:.3f}  {}  {}\n", ++rank, h.similarity, h.entry.id,
                              OneLine(h.entry.content, 72));
  }
  return kExitOk;
}

int RunUpdate(CommandEnv& env, const UpdateArgs& args) {
  UpdateRequest r;
  r.ns = env.ns;
  r.id = args.id;
  r.content = args.content;
  r.context = args.context;
  r.tags = args.tags;
  r.importance = args.importance;
  r.source = "cli";
  if (args.metadata) {
    auto metadata = ParseMetadata(args.metadata);
    if (!metadata.ok()) return ReportError(env.io.err, metadata.status());
    r.metadata = std::move(metadata).value();
  }
  if (!r.content && !r.context && !r.tags && !r.importance && !r.metadata) {
    return ReportError(env.io.err,
                       InvalidArgumentError("nothing to update: give at least one of --content, "
                                            "--context, --tag, --importance, --metadata"));
  }
  auto outcome = env.rt.bank().Update(r);
  if (!outcome.ok()) return ReportError(env.io.err, outcome.status());
  if (env.json) {
    PrintJson(env.io, OutcomeToJson(*outcome));
  } else {
    env.io.out << "updated " << outcome->memory_id << " to version " << outcome->version << '\n';
  }
  return kExitOk;
}

int RunDelete(CommandEnv& env, const std::string& id) {
  Status st = env.rt.bank().Delete(env.ns, id, "cli");
  if (!st.ok()) return ReportError(env.io.err, st);
  if (env.json) {
    PrintJson(env.io, json::object{{"id", id}, {"deleted", true}});
  } else {
    env.io.out << "deleted " << id << " (its history is kept: mann memory history " << id << ")\n";
  }
  return kExitOk;
}

int RunForget(CommandEnv& env, const std::string& id) {
  Status st = env.rt.bank().Forget(env.ns, id);
  if (!st.ok()) return ReportError(env.io.err, st);
  if (env.json) {
    PrintJson(env.io, json::object{{"id", id}, {"forgotten", true}});
  } else {
    env.io.out << "forgot " << id << " and all its history\n";
  }
  return kExitOk;
}

int RunHistory(CommandEnv& env, const std::string& id) {
  auto history = env.rt.bank().History(env.ns, id);
  if (!history.ok()) return ReportError(env.io.err, history.status());
  if (history->empty()) {
    return ReportError(env.io.err, NotFoundError("no memory or history with id " + id +
                                                 " in namespace " + env.ns));
  }
  if (env.json) {
    json::array rows;
    for (const auto& h : *history) rows.push_back(HistoryToJson(h));
    PrintJson(env.io, json::object{{"id", id}, {"history", std::move(rows)}});
    return kExitOk;
  }
  for (const auto& h : *history) {
    env.io.out << fmt::format("v{} {:<6} {}  by {}", h.version, HistoryActionName(h.action),
                              FormatTimestamp(h.at_ms), h.source);
    if (!h.reason.empty()) env.io.out << " (" << h.reason << ")";
    env.io.out << "\n    " << OneLine(h.content, 100) << '\n';
  }
  return kExitOk;
}

int RunImport(CommandEnv& env, const ImportArgs& args, std::istream& in) {
  std::ifstream file;
  std::istream* source = &in;
  std::uintmax_t total_bytes = 0;
  if (args.file != "-") {
    file.open(args.file, std::ios::binary);
    if (!file) {
      return ReportError(env.io.err, NotFoundError("cannot open " + args.file + " for reading"));
    }
    struct stat st {};
    if (::stat(args.file.c_str(), &st) == 0) total_bytes = static_cast<std::uintmax_t>(st.st_size);
    source = &file;
  }

  Importer importer(env);
  Progress progress(env.io.err, env.io.err_is_tty, "importing", total_bytes);
  std::size_t failed = 0;
  std::size_t line_no = 0;
  std::uintmax_t bytes = 0;
  std::string line;
  while (std::getline(*source, line)) {
    ++line_no;
    bytes += line.size() + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Status st = importer.Line(line);
    if (!st.ok()) {
      ++failed;
      progress.Clear();
      env.io.err << fmt::format("error: line {}: {}\n", line_no, st.message());
    }
    progress.Update(line_no, bytes);
  }
  progress.Finish();

  if (env.json) {
    PrintJson(env.io, json::object{{"imported", importer.imported()},
                                   {"skipped", importer.skipped()},
                                   {"failed", failed},
                                   {"lines", line_no}});
  } else {
    env.io.out << fmt::format("imported {}, skipped {} already present, failed {}\n",
                              importer.imported(), importer.skipped(), failed);
  }
  return failed == 0 ? kExitOk : kExitFailure;
}

int RunExport(CommandEnv& env, const ExportArgs& args) {
  std::vector<std::string> spaces;
  if (args.all_namespaces) {
    for (const auto& s : env.rt.bank().Stats().namespaces) spaces.push_back(s.ns);
  } else {
    spaces.push_back(env.ns);
  }

  std::ofstream file;
  std::ostream* sink = &env.io.out;
  const std::string tmp = args.file + ".tmp";
  if (args.file != "-") {
    // Written under a temporary name and renamed, so a failed export never leaves half a file
    // where a complete one was expected. Memories are private: owner-only permissions.
    file.open(tmp, std::ios::binary | std::ios::trunc);
    if (!file) return ReportError(env.io.err, FailedPreconditionError("cannot write " + tmp));
    ::chmod(tmp.c_str(), 0600);
    sink = &file;
  }

  std::size_t count = 0;
  for (const std::string& ns : spaces) {
    ListQuery q;
    q.ns = ns;
    q.limit = 1000;
    do {
      auto page = env.rt.bank().List(q);
      if (!page.ok()) {
        if (file.is_open()) std::remove(tmp.c_str());
        return ReportError(env.io.err, page.status());
      }
      for (const auto& e : page->entries) {
        *sink << json::serialize(EntryToJson(e)) << '\n';
        ++count;
      }
      q.cursor = page->next_cursor;
    } while (!q.cursor.empty());
  }
  sink->flush();

  if (file.is_open()) {
    file.close();
    if (!file || std::rename(tmp.c_str(), args.file.c_str()) != 0) {
      std::remove(tmp.c_str());
      return ReportError(env.io.err, FailedPreconditionError("cannot write " + args.file));
    }
    if (env.json) {
      PrintJson(env.io, json::object{{"exported", count}, {"file", args.file}});
    } else {
      env.io.out << "exported " << count << " memories to " << args.file << '\n';
    }
  }
  return kExitOk;
}

json::object EncoderToJson(const runtime::Runtime& rt) {
  const runtime::EncoderStatus& st = rt.encoder_status();
  json::object o;
  o["configured"] = st.configured;
  o["active"] = st.active;
  o["description"] = st.description;
  o["fallback"] = st.fallback();
  if (st.fallback()) o["fallback_reason"] = st.fallback_reason;
  if (const encode::EmbeddingCache* cache = rt.router().cache()) {
    o["cache"] = json::object{{"size", cache->size()},
                              {"capacity", cache->capacity()},
                              {"hits", cache->hits()},
                              {"misses", cache->misses()}};
  }
  return o;
}

int RunReindex(CommandEnv& env) {
  const runtime::EncoderStatus& st = env.rt.encoder_status();
  if (st.fallback()) {
    return ReportError(
        env.io.err,
        FailedPreconditionError(fmt::format(
            "encoder.kind={} is unavailable ({}); nothing was re-embedded: fix the encoder, or "
            "choose another with --set encoder.kind=...",
            st.configured, st.fallback_reason)));
  }
  const std::size_t done = env.rt.bank().reembedded_at_open();
  const std::size_t total = env.rt.bank().TotalCount();
  if (env.json) {
    json::object o;
    o["reembedded"] = done;
    o["memories"] = total;
    o["seconds"] = env.open_seconds;
    o["encoder"] = EncoderToJson(env.rt);
    PrintJson(env.io, o);
    return kExitOk;
  }
  env.io.out << fmt::format("re-embedded {} of {} memories in {:.1f} s\nencoders: {}\n", done,
                            total, env.open_seconds, st.description);
  return kExitOk;
}

int RunStats(CommandEnv& env) {
  const BankStats s = env.rt.bank().Stats();
  if (env.json) {
    json::object o = StatsToJson(s);
    o["store"] = env.rt.store().Describe();
    o["encoder"] = EncoderToJson(env.rt);
    PrintJson(env.io, o);
    return kExitOk;
  }
  auto& out = env.io.out;
  out << fmt::format("memories:        {}\n", s.overall.total_memories)
      << fmt::format("utilization:     {:.1f}% of memory.memory_size={} (hard limit {})\n",
                     s.overall.utilization * 100.0, s.memory_size, s.max_memory_capacity)
      << fmt::format("reads, writes:   {}, {}\n", s.overall.reads, s.overall.writes)
      << fmt::format("evictions:       {}\n", s.overall.evictions)
      << fmt::format("write decisions: ADD {}, UPDATE {}, DELETE {}, NOOP {} (this process)\n",
                     s.write_decisions[0], s.write_decisions[1], s.write_decisions[2],
                     s.write_decisions[3])
      << fmt::format("store:           {}\n", env.rt.store().Describe())
      << fmt::format("encoders:        {}\n", env.rt.encoder_status().description);
  if (env.rt.encoder_status().fallback()) {
    out << fmt::format("                 fallback: encoder.kind={} is unavailable: {}\n",
                       env.rt.encoder_status().configured, env.rt.encoder_status().fallback_reason);
  }
  if (!s.namespaces.empty()) out << "namespaces:\n";
  for (const auto& n : s.namespaces) {
    out << fmt::format("  {:<20} {:>7} memories  {:5.1f}%  importance mean {:.2f}\n", n.ns,
                       n.total_memories, n.utilization * 100.0, n.importance.mean);
  }
  return kExitOk;
}

int RunDebugWriteStream(CommandEnv& env, std::size_t count) {
  const long run = static_cast<long>(::getpid());
  for (std::size_t i = 0; i < count; ++i) {
    AddRequest r;
    r.ns = env.ns;
    r.content = fmt::format("durability probe run {} number {}", run, i);
    r.source = "cli";
    r.use_write_head = false;
    auto w = env.rt.bank().Add(r);
    if (!w.ok()) return ReportError(env.io.err, w.status());
    env.io.out << "ack " << w->memory_id << '\n';
    env.io.out.flush();
  }
  return kExitOk;
}

int RunDebugCheck(CommandEnv& env) {
  Status st = env.rt.store().CheckIntegrity();
  if (!st.ok()) return ReportError(env.io.err, st);
  env.io.out << "ok\n";
  return kExitOk;
}

}  // namespace mann::cli
