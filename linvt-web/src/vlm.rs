//! The whole video-LLM in the browser (feature `vlm`, its own bundle): a model folder the
//! visitor picked, read a tensor at a time into GPU buffers, and questions about frames the
//! page decoded, the answer streamed token by token.
//!
//! It runs in a dedicated worker (`web/vlm-worker.js`): safetensors are read by byte ranges
//! with `FileReaderSync`, which only workers have, so loading stays synchronous (the same
//! loader as native) without ever holding a whole file in wasm memory; GPU read-backs are
//! awaited, as everywhere in the browser.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Array, Function, Reflect, Uint8Array, Uint8ClampedArray};
use linvt::gpu::GpuContext;
use linvt::vlm::config::Host;
use linvt::vlm::model::{AskOptions, LoadOptions, VideoLlm, Visual};
use linvt::vlm::preprocess::Frame;
use linvt::weights::{ByteRanges, ModelFiles, SafetensorsFile};
use linvt::{Device, Error, Result};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::bindings::{js_error, json_arg, Obj};
use crate::context;

thread_local! {
    /// The picked files by id. A `PickedFile` holds only its id, so it is `Send + Sync` as
    /// `ByteRanges` requires; the `File` handles stay on this (the worker's only) thread.
    static FILES: RefCell<Vec<web_sys::File>> = const { RefCell::new(Vec::new()) };
    /// Bytes of weights read so far by the load in progress (progress reports).
    static BYTES_READ: Cell<u64> = const { Cell::new(0) };
}

fn js_message(v: &JsValue) -> String {
    v.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| v.as_string())
        .unwrap_or_else(|| format!("{v:?}"))
}

/// `len` bytes of picked file `id` from `start`, read synchronously (worker only).
fn read_range(id: usize, name: &str, start: u64, len: usize) -> Result<Vec<u8>> {
    let fail = |e: JsValue| {
        Error::input(format!(
            "reading {name} failed: {}; pick the folder again (was the file moved or changed?)",
            js_message(&e)
        ))
    };
    FILES.with(|files| {
        let files = files.borrow();
        let file = &files[id];
        let blob = file
            .slice_with_f64_and_f64(start as f64, (start + len as u64) as f64)
            .map_err(fail)?;
        let reader = web_sys::FileReaderSync::new().map_err(|e| {
            Error::input(format!(
                "this page must load models in a worker (FileReaderSync: {})",
                js_message(&e)
            ))
        })?;
        let buffer = reader.read_as_array_buffer(&blob).map_err(fail)?;
        let bytes = Uint8Array::new(&buffer).to_vec();
        if bytes.len() != len {
            return Err(Error::input(format!(
                "{name}: read {} bytes where {len} were expected; pick the folder again",
                bytes.len()
            )));
        }
        Ok(bytes)
    })
}

/// One picked safetensors file, read by ranges.
struct PickedFile {
    id: usize,
    name: String,
    size: u64,
}

impl PickedFile {
    /// Picked file `id` (`name` in messages) opened as a safetensors file read by ranges.
    fn open(id: usize, name: String, size: u64) -> Result<SafetensorsFile> {
        SafetensorsFile::from_ranges(&name.clone(), Box::new(PickedFile { id, name, size }))
    }
}

impl ByteRanges for PickedFile {
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, start: u64, len: usize) -> Result<Vec<u8>> {
        let bytes = read_range(self.id, &self.name, start, len)?;
        BYTES_READ.with(|b| b.set(b.get() + len as u64));
        Ok(bytes)
    }
}

/// The picked folder: its files by their path inside it.
struct PickedFolder {
    name: String,
    files: BTreeMap<String, (usize, u64)>,
    /// Bytes of the LinVT module file picked beside it, if any.
    plugin_bytes: u64,
}

impl PickedFolder {
    /// The files of `<input type=file webkitdirectory>` (paths `folder/…`) or any list of
    /// `File`s (their names). Earlier picks are forgotten.
    fn new(list: &Array) -> Result<Self> {
        let mut folder = None;
        let mut files = BTreeMap::new();
        let mut handles = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let file: web_sys::File = v.dyn_into().map_err(|_| {
                Error::input(format!("files[{i}] is not a File; pass the folder's files"))
            })?;
            // Not in web-sys: the folder picker's `folder/…` path (empty for single files).
            let relative = Reflect::get(&file, &"webkitRelativePath".into())
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default();
            let path = match relative.split_once('/') {
                Some((top, rest)) => {
                    folder.get_or_insert_with(|| top.to_string());
                    rest.to_string()
                }
                None => file.name(),
            };
            files.insert(path, (handles.len(), file.size() as u64));
            handles.push(file);
        }
        if files.is_empty() {
            return Err(Error::input(
                "no files were picked; pick the model's folder",
            ));
        }
        FILES.with(|f| *f.borrow_mut() = handles);
        Ok(PickedFolder {
            name: folder.unwrap_or_else(|| "(picked files)".into()),
            files,
            plugin_bytes: 0,
        })
    }

    /// Bytes of the weight files (progress reports).
    fn weight_bytes(&self) -> u64 {
        (self.files.iter())
            .filter(|(k, _)| k.ends_with(".safetensors"))
            .map(|(_, &(_, size))| size)
            .sum::<u64>()
            + self.plugin_bytes
    }

    /// A LinVT module file picked beside the folder, opened to be read by ranges.
    fn add_plugin(&mut self, file: web_sys::File) -> Result<SafetensorsFile> {
        let (name, size) = (file.name(), file.size() as u64);
        let id = FILES.with(|f| {
            let mut f = f.borrow_mut();
            f.push(file);
            f.len() - 1
        });
        self.plugin_bytes = size;
        PickedFile::open(id, name, size)
    }
}

impl ModelFiles for PickedFolder {
    fn describe(&self) -> String {
        self.name.clone()
    }
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(&(id, size)) = self.files.get(name) else {
            return Ok(None);
        };
        read_range(id, name, 0, size as usize).map(Some)
    }
    fn safetensors(&self, name: &str) -> Result<Option<SafetensorsFile>> {
        let Some(&(id, size)) = self.files.get(name) else {
            return Ok(None);
        };
        PickedFile::open(id, format!("{}/{name}", self.name), size).map(Some)
    }
}

/// `ask`'s options, the `linvt ask` flags' names in camelCase; an unknown one is refused.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebAskOptions {
    max_new_tokens: Option<usize>,
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    seed: Option<u64>,
    /// Draw the provenance picture (LinVT video answers only).
    provenance: Option<bool>,
    max_tiles: Option<usize>,
    /// The rate the frames were sampled at (Qwen2.5-VL's positions follow time).
    fps: Option<f64>,
    /// "video" or "image"; default: an image for one frame, else a video.
    kind: Option<String>,
}

impl WebAskOptions {
    fn parse(v: &JsValue) -> Result<Self> {
        let Some(text) = json_arg(v, || Error::input("the options must be a plain object"))? else {
            return Ok(Self::default());
        };
        serde_json::from_str(&text).map_err(|e| Error::input(format!("the options object: {e}")))
    }

    fn ask_options(&self) -> AskOptions {
        let mut o = AskOptions::default();
        if let Some(n) = self.max_new_tokens {
            o.max_new_tokens = n;
        }
        let s = &mut o.sampling;
        s.temperature = self.temperature.unwrap_or(s.temperature);
        s.top_k = self.top_k.unwrap_or(s.top_k);
        s.top_p = self.top_p.unwrap_or(s.top_p);
        s.seed = self.seed.unwrap_or(s.seed);
        o.provenance = self.provenance.unwrap_or(false);
        o.max_tiles = self.max_tiles;
        o.fps = self.fps;
        o
    }
}

/// The frames argument: `{width, height, data}` objects, `data` RGBA (a canvas's
/// `ImageData`) or RGB bytes.
fn frames_arg(frames: &Array) -> Result<Vec<Frame>> {
    let field = |o: &JsValue, i: usize, k: &str| {
        Reflect::get(o, &k.into())
            .ok()
            .filter(|v| !v.is_undefined())
            .ok_or_else(|| Error::input(format!("frames[{i}] has no `{k}`")))
    };
    let mut out = Vec::with_capacity(frames.length() as usize);
    for (i, f) in frames.iter().enumerate() {
        let size = |k| {
            field(&f, i, k)?
                .as_f64()
                .filter(|v| *v >= 1.0 && v.fract() == 0.0)
                .map(|v| v as usize)
                .ok_or_else(|| Error::input(format!("frames[{i}].{k} is not a positive integer")))
        };
        let (w, h) = (size("width")?, size("height")?);
        let data = field(&f, i, "data")?;
        let bytes = if let Some(a) = data.dyn_ref::<Uint8ClampedArray>() {
            a.to_vec()
        } else if let Some(a) = data.dyn_ref::<Uint8Array>() {
            a.to_vec()
        } else {
            return Err(Error::input(format!(
                "frames[{i}].data must be a Uint8Array or Uint8ClampedArray"
            )));
        };
        let rgb = match bytes.len() {
            n if n == w * h * 4 => bytes
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
            n if n == w * h * 3 => bytes,
            n => {
                return Err(Error::input(format!(
                    "frames[{i}] is {w}×{h} but holds {n} bytes (RGBA {} or RGB {} expected)",
                    w * h * 4,
                    w * h * 3
                )))
            }
        };
        out.push(Frame::new(w, h, rgb)?);
    }
    if out.is_empty() {
        return Err(Error::input(
            "no frames were given; decode the video or image first",
        ));
    }
    Ok(out)
}

/// Calls the page's callback `f`, if any (its errors are the page's own business).
fn notify(f: &Option<Function>, args: &[JsValue]) {
    if let Some(f) = f {
        let _ = f.apply(&JsValue::NULL, &args.iter().collect());
    }
}

/// A loaded model (`loadModel` in `web/vlm.js`).
#[wasm_bindgen]
pub struct WebVlm {
    /// Taken while a question is answered (a second `ask` meanwhile is refused).
    llm: Rc<RefCell<Option<VideoLlm>>>,
    ctx: &'static GpuContext,
    info: JsValue,
}

#[wasm_bindgen]
impl WebVlm {
    /// Loads the model in `files` (the picked folder's `File`s) onto the page's GPU, with the
    /// LinVT module file `linvt` attached if given (else the checkpoint's own, if any).
    /// `on_progress({tensors, totalTensors, bytes, totalBytes, heapBytes})` is called per tensor.
    pub async fn load(
        files: Array,
        linvt: Option<web_sys::File>,
        on_progress: Option<Function>,
    ) -> Result<WebVlm, JsValue> {
        Self::load_inner(&files, linvt, &on_progress)
            .await
            .map_err(js_error)
    }

    async fn load_inner(
        files: &Array,
        linvt: Option<web_sys::File>,
        on_progress: &Option<Function>,
    ) -> Result<WebVlm> {
        let mut folder = PickedFolder::new(files)?;
        let plugin = linvt.map(|f| folder.add_plugin(f)).transpose()?;
        let total_bytes = folder.weight_bytes();
        let shared = context::shared().await?;
        // The model's executor borrows the context for as long as the page lives (one Arc
        // leaked per load; the page keeps one context unless its device is lost).
        let ctx: &'static GpuContext = Box::leak(Box::new(shared.clone()));
        BYTES_READ.with(|b| b.set(0));
        let mut progress = |done: usize, total: usize| {
            let bytes = BYTES_READ.with(Cell::get);
            let report = Obj::new()
                .set("tensors", done as f64)
                .set("totalTensors", total as f64)
                .set("bytes", bytes as f64)
                .set("totalBytes", total_bytes as f64)
                .set("heapBytes", Self::heap_bytes())
                .done();
            notify(on_progress, &[report]);
        };
        let opts = LoadOptions::new(Device::Gpu);
        let load =
            async { VideoLlm::load_files_on_gpu(&folder, plugin, ctx, &opts, &mut progress) };
        let llm = context::scoped(ctx, load)
            .await
            .inspect_err(context::forget_if_lost)?;
        let config = llm.config();
        let host = match &config.host {
            Host::InternVl(_) => "internvl",
            Host::Qwen2Vl(_) => "qwen2-vl",
        };
        let info = Obj::new()
            .set("name", folder.name.as_str())
            .set("host", host)
            .set("linvt", llm.has_linvt())
            .set("adapter", ctx.adapter_name())
            .set(
                "weights",
                llm.gpu_weight_storage().map_or("?", |w| w.name()),
            )
            .set("loadMs", llm.load_ms)
            .set("weightBytes", total_bytes as f64)
            .set("heapBytes", Self::heap_bytes())
            .done();
        Ok(WebVlm {
            llm: Rc::new(RefCell::new(Some(llm))),
            ctx,
            info,
        })
    }

    /// The wasm heap's size in bytes: it only grows, so this is the peak so far.
    #[wasm_bindgen(js_name = heapBytes)]
    pub fn heap_bytes() -> f64 {
        let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
        memory
            .buffer()
            .unchecked_into::<js_sys::ArrayBuffer>()
            .byte_length() as f64
    }

    /// What was loaded: `{name, host, linvt, adapter, weights, loadMs, weightBytes,
    /// heapBytes}` (the heap after loading: the peak the load took).
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> JsValue {
        self.info.clone()
    }

    /// Answers `question` about `frames` (see `frames_arg`); `on_token(text)` receives the
    /// answer as it grows, `on_stage(name)` each stage as it starts. Resolves to the answer:
    /// `{text, tokenIds, timings, images, visualTokens, promptVisualTokens, promptTokens,
    /// videoPath, finishReason, provenance?}`.
    pub fn ask(
        &self,
        frames: Array,
        question: String,
        options: JsValue,
        on_token: Option<Function>,
        on_stage: Option<Function>,
    ) -> js_sys::Promise {
        let (slot, ctx) = (self.llm.clone(), self.ctx);
        wasm_bindgen_futures::future_to_promise(async move {
            let mut llm = slot.borrow_mut().take().ok_or_else(|| {
                js_error(Error::input(
                    "this model is busy answering another question, or was disposed",
                ))
            })?;
            let answer = ask(
                &mut llm, ctx, &frames, &question, &options, &on_token, &on_stage,
            )
            .await;
            *slot.borrow_mut() = Some(llm);
            answer.map_err(js_error)
        })
    }

    /// Frees the model's GPU memory now (the object is unusable afterwards).
    pub fn dispose(&self) {
        self.llm.borrow_mut().take();
    }
}

async fn ask(
    llm: &mut VideoLlm,
    ctx: &GpuContext,
    frames: &Array,
    question: &str,
    options: &JsValue,
    on_token: &Option<Function>,
    on_stage: &Option<Function>,
) -> Result<JsValue> {
    let opts = WebAskOptions::parse(options)?;
    let frames = frames_arg(frames)?;
    let visual = match opts.kind.as_deref() {
        Some("image") | None if frames.len() == 1 => Visual::Image(frames[0].clone()),
        Some("image") => {
            return Err(Error::input(format!(
                "kind \"image\" takes one frame, not {}",
                frames.len()
            )))
        }
        Some("video") | None => Visual::Video(frames.clone()),
        Some(other) => {
            return Err(Error::input(format!(
                "kind must be \"video\" or \"image\", not {other:?}"
            )))
        }
    };
    let ask_opts = opts.ask_options();
    let mut text = |delta: &str| notify(on_token, &[delta.into()]);
    let mut stage = |name: &str| notify(on_stage, &[name.into()]);
    let work = llm.ask(&visual, question, &ask_opts, &mut text, &mut stage);
    let answer = context::scoped(ctx, work)
        .await
        .inspect_err(context::forget_if_lost)?;
    let mut obj = Obj::new()
        .set("text", answer.text.as_str())
        .json("tokenIds", &answer.token_ids)
        .json("promptIds", &answer.prompt_ids)
        .json("timings", &answer.timings_ms)
        .set("images", answer.images as f64)
        .set("visualTokens", answer.visual_tokens as f64)
        .set("promptVisualTokens", answer.prompt_visual_tokens as f64)
        .set("promptTokens", answer.prompt_ids.len() as f64)
        .set(
            "videoPath",
            answer.video_path.map(|p| p.name()).unwrap_or("image"),
        )
        .set("finishReason", answer.finish_reason.name());
    if let (Some(prov), Visual::Video(frames)) = (&answer.provenance, &visual) {
        let version = llm.config().internvl()?.ps_version;
        let pic = linvt::vlm::picture::provenance_picture(frames, prov, version)?;
        let rgba: Vec<u8> = pic
            .rgb
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect();
        let picture = Obj::new()
            .set("width", pic.width as f64)
            .set("height", pic.height as f64)
            .set("data", Uint8ClampedArray::from(rgba.as_slice()))
            .done();
        obj = obj.set("provenance", picture);
    }
    Ok(obj.done())
}
