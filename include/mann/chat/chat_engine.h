// ChatEngine: one conversational turn over the memory bank.
//
// A turn reads memories (the read head), produces a reply (a Responder), then lets the write
// head store what is worth keeping, and persists both sides of the turn in the session:
//
//   message --classify--> question | statement | forget request | greeting | thanks
//      question   : recall -> answer from the best memories, or say plainly nothing is known
//      statement  : recall (context) -> write head (ADD/UPDATE/NOOP) -> acknowledge
//      forget     : write head (DELETE) -> confirm what was forgotten, or that nothing matched
//      greeting, thanks : a short reply; nothing stored
//
// Replies are in the language of the message (English or Vietnamese; English otherwise).
//
// With a MemoryDecider set (SetMemoryDecider), a statement's writes are first proposed by it
// against the memories most similar to the message; its decisions are applied with source
// "llm" in history, and when it declines the similarity rules decide with source "similarity".
// Without one, the write head decides and history says "chat", as before.
//
// Thread-safety: Turn() may be called concurrently for different sessions; turns of one
// session must not overlap (the caller serializes them).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mann/chat/memory_decider.h>
#include <mann/chat/responder.h>
#include <mann/core/clock.h>
#include <mann/core/id.h>
#include <mann/core/memory_bank.h>
#include <mann/core/status.h>
#include <mann/store/store.h>

namespace mann::chat {

struct ChatOptions {
  double min_relevance = 0.25;     // fused similarity a memory needs to ground an answer
  std::size_t recall_k = 3;        // memories recalled per turn
  std::size_t context_turns = 10;  // recent turns handed to the responder
};

struct TurnResult {
  std::string session_id;
  std::string reply;
  Intent intent = Intent::kStatement;
  text::Language language = text::Language::kEnglish;
  std::vector<SearchHit> memories;   // recalled for this turn, best first
  std::vector<WriteOutcome> writes;  // what the write head did with the message
  double processing_seconds = 0;
};

class ChatEngine {
 public:
  // All references must outlive the engine.
  ChatEngine(MemoryBank& bank, store::Store& store, Responder& responder, const Clock& clock,
             ChatOptions options = {});

  // A new session in namespace `ns`; returns its id.
  Result<std::string> StartSession(const std::string& ns);

  // Checks that `session_id` exists and belongs to `ns` (NotFound / PermissionDenied otherwise).
  Status ResumeSession(const std::string& session_id, const std::string& ns);

  // Runs one turn. An empty `session_id` starts a new session. `retrieve` false skips recall
  // (the API's retrieve_memories flag); the write head still runs.
  // `on_text`, when set, receives the reply as it is produced (streamed by a model responder,
  // else whole once it is known); the pieces joined equal TurnResult::reply.
  Result<TurnResult> Turn(const std::string& ns, const std::string& session_id,
                          std::string_view message, bool retrieve = true,
                          const TextSink& on_text = {});

  // Sets (or, with nullptr, removes) the decider asked about statements; it must outlive the
  // engine. Call before the first Turn().
  void SetMemoryDecider(MemoryDecider* decider) { decider_ = decider; }

  const ChatOptions& options() const { return options_; }

 private:
  // The writes of a statement as the decider proposes them; nullopt when it declines.
  std::optional<std::vector<WriteOutcome>> DecidedWrites(const std::string& ns,
                                                         const std::string& session_id,
                                                         const std::string& text,
                                                         text::Language language,
                                                         const std::vector<SearchHit>& recalled);

  MemoryBank& bank_;
  store::Store& store_;
  Responder& responder_;
  const Clock& clock_;
  ChatOptions options_;
  IdGenerator session_ids_;
  MemoryDecider* decider_ = nullptr;
};

}  // namespace mann::chat
