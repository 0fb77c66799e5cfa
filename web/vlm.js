// The video-LLM's JavaScript API. The model runs in a worker (vlm-worker.js: the wasm bundle
// web/pkg-vlm, the page's WebGPU device); this module decodes the media on the page (a <video>
// element seeked to the sampled times, images through createImageBitmap) and talks to it.
//
//   const model = await loadModel(files, (p) => console.log(p.bytes, p.totalBytes));
//   const answer = await ask(model, videoFile, "What happens?", { numFrames: 8 }, (t) => out.textContent += t);
//   dispose(model);
//
// Every failure rejects with an Error whose message is the runtime's own.

let nextId = 1;

class Model {
  constructor(worker, info) {
    this.worker = worker;
    this.info = info;
    this.pending = new Map();
    worker.onmessage = (e) => this.pending.get(e.data.id)?.(e.data);
    worker.onerror = (e) => {
      for (const handler of this.pending.values()) handler({ error: e.message || "the model's worker failed" });
    };
  }

  // Sends `msg` to the worker; `onEvent` sees its progress, token and stage messages.
  call(msg, onEvent, transfer = []) {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, (m) => {
        if ("error" in m) {
          this.pending.delete(id);
          reject(new Error(m.error));
        } else if ("done" in m) {
          this.pending.delete(id);
          resolve(m.done);
        } else {
          onEvent?.(m);
        }
      });
      this.worker.postMessage({ id, ...msg }, transfer);
    });
  }
}

// Loads the model in `files` (the File list of <input type=file webkitdirectory>, or any array
// of Files named like a model directory's). `onProgress({tensors, totalTensors, bytes,
// totalBytes})` follows the weights as they go to the GPU. `options.linvt`: a LinVT module
// file (e.g. from `linvt synth --linvt`) to attach; without it the checkpoint's own, if any.
// Resolves to a model whose `info` is {name, host, linvt, adapter, weights, loadMs,
// weightBytes, heapBytes}.
export async function loadModel(files, onProgress, options = {}) {
  const worker = new Worker(new URL("./vlm-worker.js", import.meta.url), { type: "module" });
  const model = new Model(worker, null);
  try {
    model.info = await model.call({ op: "load", files: Array.from(files), linvt: options.linvt }, (m) => {
      if (m.progress) onProgress?.(m.progress);
    });
  } catch (e) {
    worker.terminate();
    throw e;
  }
  return model;
}

// Answers `question` about `media`: a video (File/Blob or <video> element; `options.numFrames`
// frames, 8 by default, at the middles of equal segments as InternVL samples them), an image
// (File/Blob of an image type, ImageBitmap, <img>, <canvas>), or frames already decoded
// ({frames: [ImageData | {width, height, data}]}). `onToken(text)` receives the answer as it
// grows; `options.onStage(name)` each stage. Other options: maxNewTokens, temperature, topK,
// topP, seed, provenance, maxTiles, fps, kind ("video" | "image"). Resolves to {text,
// tokenIds, promptIds, timings: [[stage, ms], …], images, visualTokens, promptVisualTokens,
// promptTokens, videoPath, finishReason, provenance?: ImageData-like, decodeMs, frames}.
export async function ask(model, media, question, options = {}, onToken) {
  const { onStage, numFrames = 8, ...rest } = options;
  const t0 = performance.now();
  const { frames, kind, fps } = await framesOf(media, numFrames);
  const decodeMs = performance.now() - t0;
  const opts = { kind, ...rest };
  if (fps && opts.fps === undefined) opts.fps = fps;
  const answer = await model.call(
    { op: "ask", frames, question, options: opts },
    (m) => {
      if (m.token !== undefined) onToken?.(m.token);
      if (m.stage !== undefined) onStage?.(m.stage);
    },
    frames.map((f) => f.data.buffer),
  );
  answer.decodeMs = decodeMs;
  return answer;
}

// Ends the model's worker, freeing its GPU memory.
export function dispose(model) {
  model.worker.terminate();
  for (const handler of model.pending.values()) handler({ error: "the model was disposed" });
  model.pending.clear();
}

async function framesOf(media, numFrames) {
  if (media && Array.isArray(media.frames)) {
    const frames = media.frames.map((f) => ({ width: f.width, height: f.height, data: new Uint8ClampedArray(f.data) }));
    return { frames, kind: media.kind };
  }
  if (typeof HTMLVideoElement !== "undefined" && media instanceof HTMLVideoElement) {
    return videoFrames(media, numFrames);
  }
  if (media instanceof Blob && media.type.startsWith("video/")) {
    const url = URL.createObjectURL(media);
    try {
      const video = document.createElement("video");
      video.muted = true;
      video.src = url;
      return await videoFrames(video, numFrames);
    } finally {
      URL.revokeObjectURL(url);
    }
  }
  const frame = media instanceof Blob ? await imageFrame(media) : pixels(media, media.width, media.height);
  return { frames: [frame], kind: "image" };
}

// The RGBA pixels of an image file as stored: no colour conversion, no premultiplied alpha.
export async function imageFrame(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  return pixels(bitmap, bitmap.width, bitmap.height);
}

// The RGBA pixels of anything a canvas can draw.
function pixels(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const g = canvas.getContext("2d", { colorSpace: "srgb", willReadFrequently: true });
  g.drawImage(source, 0, 0, width, height);
  const image = g.getImageData(0, 0, width, height);
  return { width, height, data: image.data };
}

function once(target, ok, fail) {
  return new Promise((resolve, reject) => {
    const done = () => { target.removeEventListener(ok, done); target.removeEventListener(fail, bad); resolve(); };
    const bad = () => { target.removeEventListener(ok, done); target.removeEventListener(fail, bad); reject(new Error(describeVideoError(target))); };
    target.addEventListener(ok, done);
    target.addEventListener(fail, bad);
  });
}

function describeVideoError(video) {
  const e = video.error;
  return e ? `the video cannot be decoded by this browser (${e.message || "code " + e.code}); try an MP4 (H.264) or WebM file`
    : "the video could not be read";
}

// `n` frames of `video` at the middles of n equal segments of its duration.
export async function videoFrames(video, n) {
  if (video.readyState < 1) await once(video, "loadedmetadata", "error");
  const duration = video.duration;
  if (!Number.isFinite(duration) || duration <= 0) throw new Error("the video has no duration; is it a complete file?");
  const frames = [];
  for (let i = 0; i < n; i++) {
    const t = (duration * (i + 0.5)) / n;
    video.currentTime = t;
    await once(video, "seeked", "error");
    frames.push(pixels(video, video.videoWidth, video.videoHeight));
  }
  return { frames, kind: "video", fps: n / duration };
}

// The origin-private file system (OPFS) as a model cache, so a reload need not ask for the
// folder again: the picked files are copied under models/<name>/ and read back as Files.
async function modelsDir() {
  if (!navigator.storage?.getDirectory) throw new Error("this browser has no origin-private file system to cache models in");
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle("models", { create: true });
}

// Copies `files` into the cache as model `name` (streamed: never whole in memory);
// `onProgress(bytesCopied, totalBytes)`.
export async function cacheModel(name, files, onProgress) {
  const models = await modelsDir();
  await models.removeEntry(name, { recursive: true }).catch(() => {});
  const dir = await models.getDirectoryHandle(name, { create: true });
  const total = Array.from(files).reduce((n, f) => n + f.size, 0);
  let done = 0;
  for (const file of files) {
    const out = await (await dir.getFileHandle(file.name, { create: true })).createWritable();
    const counter = new TransformStream({
      transform(chunk, ctrl) {
        done += chunk.byteLength;
        onProgress?.(done, total);
        ctrl.enqueue(chunk);
      },
    });
    await file.stream().pipeThrough(counter).pipeTo(out);
  }
}

// The cached models' names.
export async function cachedModels() {
  const names = [];
  for await (const [name, handle] of (await modelsDir()).entries()) {
    if (handle.kind === "directory") names.push(name);
  }
  return names.sort();
}

// The files of cached model `name`, ready for `loadModel`.
export async function cachedFiles(name) {
  const dir = await (await modelsDir()).getDirectoryHandle(name);
  const files = [];
  for await (const handle of dir.values()) {
    if (handle.kind === "file") files.push(await handle.getFile());
  }
  return files;
}

// Removes cached model `name`.
export async function forgetCached(name) {
  await (await modelsDir()).removeEntry(name, { recursive: true });
}
