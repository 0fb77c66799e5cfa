// The demo page: adapter info, the built-in seeded demo, the `small` bench shape, and
// condensing files the user picks. On success the page title becomes "ok" (checked headlessly
// by web/check_demo.py); on failure it starts with "error".
import init, { adapterInfo, condense, demo, benchSmall } from "./pkg/linvt_web.js";

const $ = (id) => document.getElementById(id);
const ms = (v) => `${v.toFixed(1)} ms`;

function setStatus(text, cls) {
  $("status").textContent = text;
  $("status").className = cls;
  document.title = cls === "ok" ? "ok" : cls === "error" ? `error: ${text}` : "linvt — running";
}

function addTiming(name, value) {
  const row = $("timings").insertRow();
  row.insertCell().textContent = name;
  row.insertCell().textContent = value;
}

// Frames side by side, each a grid of its tokens; selected cells bright, the rest dim.
function drawCells(canvas, frames, tokens, cols, selected) {
  const rows = Math.ceil(tokens / cols);
  const cell = Math.max(3, Math.min(12, Math.floor(900 / (frames * (cols + 1)))));
  const gap = 6;
  canvas.width = frames * (cols * cell + gap) + gap;
  canvas.height = rows * cell + 2 * gap;
  const g = canvas.getContext("2d");
  g.fillStyle = "#18181c";
  g.fillRect(0, 0, canvas.width, canvas.height);
  const chosen = new Set(selected);
  for (let t = 0; t < frames; t++) {
    for (let n = 0; n < tokens; n++) {
      const x = gap + t * (cols * cell + gap) + (n % cols) * cell;
      const y = gap + Math.floor(n / cols) * cell;
      g.fillStyle = chosen.has(t * tokens + n) ? "#ffc440" : "#3c4050";
      g.fillRect(x + 1, y + 1, cell - 1, cell - 1);
    }
  }
}

async function showAdapter() {
  const a = await adapterInfo();
  const l = a.limits;
  $("adapter").textContent =
    `${a.adapter} (${a.backend}, ${a.deviceType}) — features: ${a.features.join(", ") || "none of shader-f16, subgroups"}; ` +
    `max storage binding ${(l.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB, ` +
    `workgroup storage ${l.maxComputeWorkgroupStorageSize / 1024} KiB`;
  return a;
}

async function runDemo() {
  const d = await demo();
  $("demo-summary").textContent =
    `${d.frames} frames × ${d.tokens} tokens → top-${d.k} selected → ${d.shape[0]} video tokens of width ${d.shape[1]}; ` +
    `GPU vs CPU: max |diff| ${d.maxAbsDiff.toExponential(2)}, selections ${d.selectionsIdentical ? "identical" : "DIFFER"}`;
  drawCells($("cells"), d.frames, d.tokens, d.grid, d.selectedIndices);
  addTiming("demo, first GPU run (compiles pipelines)", ms(d.firstMs));
  addTiming("demo, GPU run", ms(d.gpuMs));
  addTiming("demo, CPU reference path (wasm)", ms(d.cpuMs));
  if (!d.selectionsIdentical || !(d.maxAbsDiff < 1e-3)) {
    throw new Error(`GPU and CPU disagree: max |diff| ${d.maxAbsDiff}, selections identical: ${d.selectionsIdentical}`);
  }
  return d;
}

async function runBench() {
  const b = await benchSmall(5);
  addTiming(`bench \`small\` shape ${b.shape}, median of ${b.runsMs.length}`, ms(b.medianMs));
  $("timings").dataset.smallMedianMs = b.medianMs.toFixed(2);
  return b;
}

async function runFiles() {
  const w = $("weights").files[0], i = $("input").files[0];
  if (!w || !i) {
    $("files-result").textContent = "pick a weights file and an input file first";
    return;
  }
  $("files-result").textContent = "condensing…";
  try {
    const cfg = JSON.parse($("config").value || "{}");
    const r = await condense(new Uint8Array(await w.arrayBuffer()), new Uint8Array(await i.arrayBuffer()), cfg);
    const cols = Math.round(Math.sqrt(r.tokens)) ** 2 === r.tokens ? Math.round(Math.sqrt(r.tokens)) : r.tokens;
    drawCells($("cells"), r.frames, r.tokens, cols, r.selectedIndices);
    const t = r.timings;
    $("files-result").textContent =
      `${r.frames} frames × ${r.tokens} tokens → top-${r.k} (of ${r.kRequested} requested) → output ${r.shape.join(" × ")} ` +
      `(${r.preset}) on ${r.adapter}; parse ${ms(t.parseMs)}, upload ${ms(t.uploadMs)}, condense ${ms(t.condenseMs)}` +
      (r.unused.length ? `; unused tensors: ${r.unused.join(", ")}` : "");
  } catch (e) {
    $("files-result").textContent = `error: ${e.message ?? e}`;
  }
}

async function main() {
  try {
    await init();
    $("run-files").addEventListener("click", runFiles);
    await showAdapter();
    await runDemo();
    await runBench();
    setStatus("ok", "ok");
  } catch (e) {
    console.error(e);
    setStatus(String(e.message ?? e), "error");
  }
}

main();
