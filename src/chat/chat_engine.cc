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
                                    std::string_view message, bool retrieve) {
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
  if (out.intent == Intent::kStatement || out.intent == Intent::kForget) {
    AddRequest add;
    add.ns = ns;
    add.content = text;
    add.context = "chat session " + out.session_id;
    add.source = "chat";
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
  MANN_ASSIGN_OR_RETURN(out.reply, responder_.Reply(in));

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

}  // namespace mann::chat
