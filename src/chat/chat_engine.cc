#include <chrono>

#include <mann/chat/chat_engine.h>
#include <mann/core/log.h>

namespace mann::chat {

ChatEngine::ChatEngine(MemoryBank& bank, store::Store& store, Responder& responder,
                       const Clock& clock, ChatOptions options)
    : bank_(bank),
      store_(store),
      responder_(responder),
      clock_(clock),
      options_(options),
      session_ids_(clock) {}

Result<std::string> ChatEngine::StartSession(const std::string& ns) {
  MANN_RETURN_IF_ERROR(ValidateNamespace(ns));
  store::ChatSession session;
  session.id = session_ids_.Next();
  session.ns = ns;
  session.created_ms = clock_.NowMs();
  session.updated_ms = session.created_ms;
  MANN_RETURN_IF_ERROR(store_.SaveSession(session));
  return session.id;
}

Status ChatEngine::ResumeSession(const std::string& session_id, const std::string& ns) {
  MANN_ASSIGN_OR_RETURN(auto session, store_.GetSession(session_id));
  if (!session) return NotFoundError("session " + session_id + " not found");
  // Do not reveal that the session exists in another namespace.
  if (session->ns != ns) return NotFoundError("session " + session_id + " not found");
  return Status::Ok();
}

Result<TurnResult> ChatEngine::Turn(const std::string& ns, const std::string& session_id,
                                    std::string_view message, bool retrieve,
                                    const TextSink& on_text) {
  const auto started = std::chrono::steady_clock::now();
  MANN_RETURN_IF_ERROR(ValidateNamespace(ns));
  const std::string text = text::NormalizeNfc(message);
  if (text.empty()) return InvalidArgumentError("input_text must not be empty");

  TurnResult out;
  if (session_id.empty()) {
    MANN_ASSIGN_OR_RETURN(out.session_id, StartSession(ns));
  } else {
    MANN_RETURN_IF_ERROR(ResumeSession(session_id, ns));
    out.session_id = session_id;
  }
  out.intent = Classify(text);
  out.language = text::DetectLanguage(text);
  if (out.language == text::Language::kUnknown) out.language = text::Language::kEnglish;

  // Read: recall what the bank knows about the message. A forget request needs no recall; the
  // write head finds its target itself.
  if (retrieve && out.intent != Intent::kForget && out.intent != Intent::kGreeting &&
      out.intent != Intent::kThanks) {
    SearchRequest search;
    search.ns = ns;
    search.query = text;
    search.top_k = options_.recall_k;
    MANN_ASSIGN_OR_RETURN(out.memories, bank_.Search(search));
  }

  // Write: statements and forget requests go through the write head before the reply, so the
  // reply can say what happened.
  std::optional<std::vector<WriteOutcome>> decided;
  if (decider_ != nullptr && out.intent == Intent::kStatement) {
    decided = DecidedWrites(ns, out.session_id, text, out.language, out.memories);
  }
  if (decided) {
    out.writes = std::move(*decided);
  } else if (out.intent == Intent::kStatement || out.intent == Intent::kForget) {
    AddRequest add;
    add.ns = ns;
    add.content = text;
    add.context = "chat session " + out.session_id;
    // With a decider the history tells which of the two decided.
    add.source = decider_ != nullptr ? "similarity" : "chat";
    MANN_ASSIGN_OR_RETURN(WriteOutcome w, bank_.Add(add));
    out.writes.push_back(std::move(w));
  }

  ResponderInput in;
  in.message = text;
  in.intent = out.intent;
  in.language = out.language;
  in.now_ms = clock_.NowMs();
  in.writes = out.writes;
  for (const SearchHit& hit : out.memories) {
    if (hit.similarity >= options_.min_relevance) in.relevant.push_back(&hit);
  }
  MANN_ASSIGN_OR_RETURN(in.recent_turns,
                        store_.RecentTurns(out.session_id, options_.context_turns));
  // What the responder streams is passed on; whatever of the reply it did not stream follows.
  std::string streamed;
  if (on_text) {
    in.on_text = [&](std::string_view piece) {
      streamed.append(piece);
      on_text(piece);
    };
  }
  MANN_ASSIGN_OR_RETURN(out.reply, responder_.Reply(in));
  if (on_text) {
    if (out.reply.starts_with(streamed)) {
      if (out.reply.size() > streamed.size()) on_text(out.reply.substr(streamed.size()));
    } else {
      // A responder broke its contract; the stored reply is what the person saw.
      log::Get("chat")->warn("responder replaced streamed text; keeping what was streamed");
      out.reply = streamed;
    }
  }

  // Persist both sides of the turn.
  const std::int64_t next_seq = in.recent_turns.empty() ? 1 : in.recent_turns.back().seq + 1;
  store::ChatTurn user{out.session_id, next_seq, "user", text, in.now_ms};
  store::ChatTurn bot{out.session_id, next_seq + 1, "assistant", out.reply, clock_.NowMs()};
  MANN_RETURN_IF_ERROR(store_.AppendTurn(user));
  MANN_RETURN_IF_ERROR(store_.AppendTurn(bot));

  out.processing_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return out;
}

std::optional<std::vector<WriteOutcome>> ChatEngine::DecidedWrites(
    const std::string& ns, const std::string& session_id, const std::string& text,
    text::Language language, const std::vector<SearchHit>& recalled) {
  // The memories most similar to the message: those recalled for the reply, else a search of
  // its own that leaves usage counts alone.
  std::vector<SearchHit> similar = recalled;
  if (similar.empty()) {
    SearchRequest search;
    search.ns = ns;
    search.query = text;
    search.top_k = options_.recall_k;
    search.touch = false;
    auto found = bank_.Search(search);
    if (!found.ok()) return std::nullopt;
    similar = std::move(found).value();
  }
  std::vector<llm::ShownMemory> shown;
  for (const SearchHit& hit : similar) shown.push_back({hit.entry.id, hit.entry.content});

  std::optional<std::vector<llm::Decision>> decisions = decider_->Decide(text, language, shown);
  if (!decisions) return std::nullopt;

  // Each decision applied on its own: one that fails (its memory deleted meanwhile) is logged
  // and skipped, and the others still count.
  std::vector<WriteOutcome> writes;
  const auto logger = log::Get("chat");
  for (const llm::Decision& d : *decisions) {
    WriteOutcome w;
    w.action = d.action;
    w.memory_id = d.memory_id;
    w.reason = d.reason.empty() ? "decided by the model" : "model: " + d.reason;
    Status applied = Status::Ok();
    switch (d.action) {
      case WriteAction::kAdd: {
        AddRequest add;
        add.ns = ns;
        add.content = d.content;
        add.context = "chat session " + session_id;
        add.source = "llm";
        add.use_write_head = false;  // the model has decided; the write head must not redo it
        auto added = bank_.Add(add);
        if (added.ok()) w = std::move(added).value();
        applied = added.status();
        break;
      }
      case WriteAction::kUpdate: {
        UpdateRequest update;
        update.ns = ns;
        update.id = d.memory_id;
        update.content = d.content;
        update.source = "llm";
        auto updated = bank_.Update(update);
        if (updated.ok()) w = std::move(updated).value();
        applied = updated.status();
        break;
      }
      case WriteAction::kDelete:
        applied = bank_.Delete(ns, d.memory_id, "llm");
        break;
      case WriteAction::kNoop:
        // A NOOP that names a memory is kept in its history; one that names none (the turn
        // held nothing worth remembering) concerns no entry, so only the counters see it.
        if (!d.memory_id.empty()) applied = bank_.RecordNoop(ns, d.memory_id, "llm", w.reason);
        break;
    }
    if (!applied.ok()) {
      logger->warn("model decision not applied action={} memory={}: {}", WriteActionName(d.action),
                   d.memory_id, applied.ToString());
      continue;
    }
    writes.push_back(std::move(w));
  }
  return writes;
}

}  // namespace mann::chat
