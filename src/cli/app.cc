#include "app.h"

#include <chrono>
#include <functional>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <boost/json/serialize.hpp>

#include <mann/core/memory_bank.h>
#include <mann/core/version.h>
#include <mann/runtime/runtime.h>

#include "alert_command.h"
#include "backup_command.h"
#include "chat_command.h"
#include "context.h"
#include "health_command.h"
#include "key_command.h"
#include "memory_commands.h"
#include "progress.h"
#include "serve_command.h"

namespace mann::cli {
namespace {

// Everything the parser fills in; the selected command reads its part.
struct Parsed {
  GlobalOptions global;
  bool json = false;
  ChatArgs chat;
  AddArgs add;
  std::string id;
  ListArgs list;
  SearchArgs search;
  std::size_t top_k = 0;
  UpdateArgs update;
  std::string update_content, update_context, update_metadata;
  std::vector<std::string> update_tags;
  double update_importance = 1.0;
  ImportArgs import_args;
  ExportArgs export_args;
  std::size_t stream_count = 1000;
  bool reindex_all = false;
  bool serve = false;  // `mann serve`: logs at info unless log.level says otherwise
  bool allow_unauthenticated = false;
  KeyCreateArgs key_create;
  AlertTestArgs alert_test;
  AlertListArgs alert_list;
  BackupArgs backup;
  RestoreArgs restore;
  HealthArgs health;
};

// What runs after parsing: either a command needing no runtime (config show) or one that does.
struct Action {
  std::function<int(const config::LoadedConfig&, Io&)> without_runtime;
  std::function<int(CommandEnv&, const config::Environment&)> with_runtime;
};

std::string ErrorMessage(const CLI::App*, const CLI::Error& e) {
  return std::string("error: ") + e.what() + "\nRun with --help for more information.\n";
}

// One value per occurrence, every occurrence kept: `--tag a --tag b`.
CLI::Option* Repeatable(CLI::App* app, const std::string& name, std::vector<std::string>& into,
                        const std::string& help) {
  return app->add_option(name, into, help)
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

void AddGlobalOptions(CLI::App& app, GlobalOptions& g) {
  app.add_option("--config", g.config_path, "TOML configuration file (default: $MANN_CONFIG)")
      ->type_name("PATH");
  app.add_option("--data-dir", g.data_dir, "Data directory (storage.data_dir, $MANN_DATA_DIR)")
      ->type_name("DIR");
  app.add_option("--log-level", g.log_level,
                 "trace, debug, info, warn, error, critical or off (log.level)")
      ->type_name("LEVEL");
  Repeatable(&app, "--set", g.sets, "Override any configuration key, e.g. --set server.port=9000")
      ->type_name("KEY=VALUE");
  app.add_option("-u,--user", g.ns, "Namespace (user or tenant) to work in")
      ->type_name("NS")
      ->capture_default_str();
}

void AddChat(CLI::App& app, Parsed& p, Action& action) {
  auto* chat = app.add_subcommand("chat", "Chat in the terminal; the bot remembers what you say");
  chat->add_option("--session", p.chat.session, "Resume this chat session")->type_name("ID");
  chat->add_flag("--no-color", p.chat.no_color, "Never use colour (NO_COLOR=1 does the same)");
  chat->callback([&] {
    action.with_runtime = [&](CommandEnv& env, const config::Environment& environment) {
      return RunChat(env.rt, env.ns, p.chat, env.io, environment);
    };
  });
}

void AddMemory(CLI::App& app, Parsed& p, Action& action) {
  auto* memory = app.add_subcommand("memory", "Add, inspect, search and edit memories");
  memory->require_subcommand(1);
  auto leaf = [&](const std::string& name, const std::string& help,
                  std::function<int(CommandEnv&)> run) {
    auto* sub = memory->add_subcommand(name, help);
    sub->add_flag("--json", p.json, "Print one JSON document instead of text");
    sub->callback([&action, run] {
      action.with_runtime = [run](CommandEnv& env, const config::Environment&) { return run(env); };
    });
    return sub;
  };

  auto* add = leaf("add", "Store a memory (through the write head: it may merge or skip)",
                   [&](CommandEnv& env) { return RunAdd(env, p.add); });
  add->add_option("text", p.add.content, "What to remember")->required();
  add->add_option("--context", p.add.context, "Where it came from");
  Repeatable(add, "--tag", p.add.tags, "A tag (repeatable)")->type_name("TAG");
  add->add_option("--importance", p.add.importance, "Importance weight in 0..3")
      ->type_name("W")
      ->capture_default_str();
  add->add_option("--metadata", p.add.metadata, "A JSON object")->type_name("JSON");

  auto* get = leaf("get", "Show one memory", [&](CommandEnv& env) { return RunGet(env, p.id); });
  get->add_option("id", p.id, "Memory id")->required();

  auto* list = leaf("list", "List memories, newest first, a page at a time",
                    [&](CommandEnv& env) { return RunList(env, p.list); });
  Repeatable(list, "--tag", p.list.tags, "Only memories with this tag (repeatable: all of them)")
      ->type_name("TAG");
  list->add_option("--since", p.list.since, "Created at or after (ISO 8601 or epoch ms)")
      ->type_name("TIME");
  list->add_option("--until", p.list.until, "Created before (ISO 8601 or epoch ms)")
      ->type_name("TIME");
  list->add_option("--meta", p.list.meta,
                   "Metadata has KEY (KEY=VALUE: with that JSON value; non-JSON is a string)")
      ->type_name("KEY[=VALUE]");
  list->add_option("--limit", p.list.limit, "Page size")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  list->add_option("--cursor", p.list.cursor, "Continue after a previous page")->type_name("C");

  auto* search = leaf("search", "Find memories by meaning and words", [&](CommandEnv& env) {
    if (p.top_k > 0) p.search.top_k = p.top_k;
    return RunSearch(env, p.search);
  });
  search->add_option("query", p.search.query, "What to look for")->required();
  search->add_option("--top-k", p.top_k, "How many results (default retrieval.default_top_k)")
      ->check(CLI::Range(1, 50))
      ->type_name("N");
  search->add_option("--min-similarity", p.search.min_similarity, "Drop results below this")
      ->check(CLI::Range(0.0, 1.0))
      ->type_name("S");

  auto* update = leaf("update", "Change a memory; the old version stays in its history",
                      [&](CommandEnv& env) { return RunUpdate(env, p.update); });
  update->add_option("id", p.update.id, "Memory id")->required();
  auto* content = update->add_option("--content", p.update_content, "New content");
  auto* context = update->add_option("--context", p.update_context, "New context");
  auto* tags = Repeatable(update, "--tag", p.update_tags, "Replace the tags (repeatable)");
  auto* importance = update->add_option("--importance", p.update_importance, "Importance 0..3");
  auto* metadata = update->add_option("--metadata", p.update_metadata, "Replace the metadata");
  update->callback([&, content, context, tags, importance, metadata] {
    if (content->count() > 0) p.update.content = p.update_content;
    if (context->count() > 0) p.update.context = p.update_context;
    if (tags->count() > 0) p.update.tags = p.update_tags;
    if (importance->count() > 0) p.update.importance = p.update_importance;
    if (metadata->count() > 0) p.update.metadata = p.update_metadata;
    action.with_runtime = [&](CommandEnv& env, const config::Environment&) {
      return RunUpdate(env, p.update);
    };
  });

  auto* del = leaf("delete", "Remove a memory; its history stays",
                   [&](CommandEnv& env) { return RunDelete(env, p.id); });
  del->add_option("id", p.id, "Memory id")->required();
  auto* forget = leaf("forget", "Erase a memory and all its history for good",
                      [&](CommandEnv& env) { return RunForget(env, p.id); });
  forget->add_option("id", p.id, "Memory id")->required();
  auto* history = leaf("history", "Every version of a memory",
                       [&](CommandEnv& env) { return RunHistory(env, p.id); });
  history->add_option("id", p.id, "Memory id")->required();

  auto* import = leaf("import", "Load memories from JSON Lines (ids and times kept)",
                      [&](CommandEnv& env) { return RunImport(env, p.import_args, std::cin); });
  import->add_option("file", p.import_args.file, "A .jsonl file, or - for standard input")
      ->required()
      ->type_name("FILE|-");
  auto* export_cmd = leaf("export", "Write memories as JSON Lines, one entry per line",
                          [&](CommandEnv& env) { return RunExport(env, p.export_args); });
  export_cmd->add_option("file", p.export_args.file, "Output file, or - for standard output")
      ->type_name("FILE|-")
      ->capture_default_str();
  export_cmd->add_flag("--all", p.export_args.all_namespaces, "Every namespace, not only --user");
}

void AddInfo(CLI::App& app, Parsed& p, Action& action) {
  auto* config = app.add_subcommand("config", "Inspect the configuration");
  config->require_subcommand(1);
  auto* show = config->add_subcommand("show", "The effective settings and where each came from");
  show->add_flag("--json", p.json, "Print one JSON document instead of text");
  show->callback([&] {
    action.without_runtime = [&](const config::LoadedConfig& loaded, Io& io) {
      if (p.json) {
        io.out << boost::json::serialize(loaded.ShowJson()) << '\n';
      } else {
        io.out << loaded.Show();
      }
      return kExitOk;
    };
  });

  auto* reindex = app.add_subcommand(
      "reindex",
      "Re-embed stored memories with the configured encoder (after changing encoder.kind, "
      "the model or the lexicon); only those made otherwise, unless --all");
  reindex->add_flag("--all", p.reindex_all, "Re-embed every memory");
  reindex->add_flag("--json", p.json, "Print one JSON document instead of text");
  reindex->callback([&] {
    action.with_runtime = [](CommandEnv& env, const config::Environment&) {
      return RunReindex(env);
    };
  });

  auto* serve = app.add_subcommand(
      "serve", "Serve the REST API on server.host:server.port until SIGTERM or SIGINT");
  serve->add_flag("--allow-unauthenticated", p.allow_unauthenticated,
                  "Serve an address other than loopback without API keys "
                  "(security.allow_unauthenticated)");
  serve->callback([&] {
    p.serve = true;
    if (p.allow_unauthenticated) p.global.sets.push_back("security.allow_unauthenticated=true");
    action.with_runtime = [](CommandEnv& env, const config::Environment&) { return RunServe(env); };
  });

  auto* key = app.add_subcommand("key", "Make API keys for the REST API");
  key->require_subcommand(1);
  auto* create = key->add_subcommand(
      "create",
      "Make a new random key: prints the key once, and the entry (its hash) to append to the "
      "keys file named by security.api_keys_file");
  create->add_option("--name", p.key_create.name, "Name of the key, shown in logs")->required();
  Repeatable(create, "--namespace", p.key_create.namespaces,
             "A namespace the key may touch (repeatable; the first is its default)")
      ->type_name("NS");
  create->add_flag("--admin", p.key_create.admin, "The key may touch every namespace");
  create->add_flag("--json", p.key_create.json, "Print {\"key\", \"entry\"} as one JSON document");
  create->callback([&] {
    action.without_runtime = [&](const config::LoadedConfig&, Io& io) {
      return RunKeyCreate(p.key_create, io);
    };
  });

  auto* alert = app.add_subcommand(
      "alert", "Test the pager's channels; list the alert rules and the recent deliveries");
  alert->require_subcommand(1);
  auto* test = alert->add_subcommand(
      "test",
      "Send a test notification through one channel now, bypassing the outbox, and print what "
      "the receiver answered (exit 0 accepted, 1 refused or unreachable, 2 not configured)");
  test->add_option("--channel", p.alert_test.channel, "The channel to test")
      ->required()
      ->type_name("slack|pagerduty|email|webhook")
      ->check(CLI::IsMember({"slack", "pagerduty", "email", "webhook"}));
  test->add_flag("--json", p.alert_test.json, "Print one JSON document instead of text");
  test->callback([&] {
    action.without_runtime = [&](const config::LoadedConfig& loaded, Io& io) {
      return RunAlertTest(loaded, p.alert_test, io);
    };
  });
  auto* alert_list = alert->add_subcommand(
      "list",
      "The alert rules in force, the re-notification floors, the channels and the pager "
      "outbox's latest deliveries (channel, state, attempts, last status and error)");
  alert_list->add_option("--limit", p.alert_list.limit, "Deliveries shown, newest first")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  alert_list->add_flag("--json", p.alert_list.json, "Print one JSON document instead of text");
  alert_list->callback([&] {
    action.without_runtime = [&](const config::LoadedConfig& loaded, Io& io) {
      return RunAlertList(loaded, p.alert_list, io);
    };
  });

  auto* stats = app.add_subcommand("stats", "How much is stored, per namespace");
  stats->add_flag("--json", p.json, "Print one JSON document instead of text");
  stats->callback([&] {
    action.with_runtime = [](CommandEnv& env, const config::Environment&) { return RunStats(env); };
  });

  // Tools for the durability tests; an empty group keeps them out of --help.
  auto* debug = app.add_subcommand("debug", "")->group("");
  debug->require_subcommand(1);
  auto* stream = debug->add_subcommand("write-stream", "Add memories, acknowledging each");
  stream->add_option("--count", p.stream_count, "How many")->check(CLI::PositiveNumber);
  stream->callback([&] {
    action.with_runtime = [&](CommandEnv& env, const config::Environment&) {
      return RunDebugWriteStream(env, p.stream_count);
    };
  });
  auto* check = debug->add_subcommand("check", "Check the store's integrity");
  check->callback([&] {
    action.with_runtime = [](CommandEnv& env, const config::Environment&) {
      return RunDebugCheck(env);
    };
  });
}

void AddOperations(CLI::App& app, Parsed& p, Action& action) {
  auto* backup = app.add_subcommand(
      "backup",
      "Back up the database (consistent while mann serve runs) into backup.dir with a manifest "
      "of checksums; then run backup.upload_command and prune backups older than "
      "backup.retention_days");
  backup->add_option("--dir", p.backup.dir, "Backup directory (backup.dir)")->type_name("DIR");
  backup
      ->add_option("--retention-days", p.backup.retention_days,
                   "Prune backups older than this; 0 keeps all (backup.retention_days)")
      ->check(CLI::Range(0, 36'500))
      ->type_name("N");
  backup->add_flag("--json", p.backup.json, "Print one JSON document instead of text");
  backup->callback([&] {
    action.without_runtime = [&](const config::LoadedConfig& loaded, Io& io) {
      return RunBackup(loaded, p.backup, io);
    };
  });

  auto* restore = app.add_subcommand(
      "restore",
      "Verify a backup's checksums and integrity and restore it into storage.data_dir; refuses "
      "a database in use, and one holding data unless --force");
  restore->add_option("backup", p.restore.backup, "The backup's manifest or its data file")
      ->required()
      ->type_name("BACKUP");
  restore->add_flag("--force", p.restore.force,
                    "Replace a database that holds data (it is kept as <db>.replaced-<time>)");
  restore->add_flag("--json", p.restore.json, "Print one JSON document instead of text");
  restore->callback([&] {
    action.without_runtime = [&](const config::LoadedConfig& loaded, Io& io) {
      return RunRestore(loaded, p.restore, io);
    };
  });

  auto* health = app.add_subcommand(
      "health",
      "GET a server's /health (or /ready): exit 0 when healthy, 1 with the reason otherwise, "
      "and POST the failure to a webhook when one is set");
  health
      ->add_option("--url", p.health.url,
                   "What to check (default http://<server.host>:<server.port>/health)")
      ->type_name("URL");
  health->add_option("--timeout", p.health.timeout_seconds, "Seconds allowed for the answer")
      ->check(CLI::Range(0.001, 600.0))
      ->capture_default_str()
      ->type_name("S");
  health
      ->add_option("--webhook", p.health.webhook,
                   "Where a failure is POSTed as {\"text\": ...} (health.webhook)")
      ->type_name("URL");
  health->callback([&] {
    action.without_runtime = [&](const config::LoadedConfig& loaded, Io& io) {
      return RunHealth(loaded, p.health, io);
    };
  });
}

}  // namespace

int Main(int argc, char** argv) {
  Parsed p;
  Action action;
  CLI::App app{"mann: a chatbot with a long-term memory.", "mann"};
  app.set_version_flag("--version", std::string("mann ") + kVersion, "Print the version and exit");
  app.failure_message(ErrorMessage);
  // Global options are accepted after the subcommand too (`mann memory list --data-dir X`).
  app.fallthrough();
  app.require_subcommand(1);
  AddGlobalOptions(app, p.global);
  AddChat(app, p, action);
  AddMemory(app, p, action);
  AddInfo(app, p, action);
  AddOperations(app, p, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }

  Io io = StandardIo();
  const config::Environment env = config::CurrentEnvironment();
  auto loaded = LoadCliConfig(p.global, env);
  if (!loaded.ok()) {
    ReportError(io.err, loaded.status());
    return kExitUsage;
  }
  // The command line keeps the log quiet (see LoadCliConfig); a server's log is its record.
  if (p.serve && loaded->Find("log.level") != nullptr &&
      loaded->Find("log.level")->origin == "default") {
    loaded->config.log.level = "info";
  }
  if (Status st = ValidateNamespace(p.global.ns); !st.ok()) {
    ReportError(io.err, InvalidArgumentError("--user: " + st.message()));
    return kExitUsage;
  }
  if (action.without_runtime) return action.without_runtime(*loaded, io);
  if (!action.with_runtime) return kExitUsage;  // require_subcommand makes this unreachable

  // Opening re-embeds memories whose vectors another encoder made: that can take a while, so a
  // terminal sees a bar.
  Progress progress(io.err, io.err_is_tty, "re-embedding memories", 0);
  OpenOptions bank_open;
  bank_open.reembed_all = p.reindex_all;
  bank_open.progress = [&](std::size_t done, std::size_t total) { progress.Step(done, total); };
  const auto started = std::chrono::steady_clock::now();
  auto rt = runtime::Runtime::Open(loaded->config, SystemClock::Instance(), std::move(bank_open));
  progress.Finish();
  if (!rt.ok()) return ReportError(io.err, rt.status());
  CommandEnv command_env{**rt, p.global.ns, io, p.json};
  command_env.open_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return action.with_runtime(command_env, env);
}

}  // namespace mann::cli
