//! The JavaScript API (wasm-bindgen): `adapterInfo`, `condense`, `demo`, `benchSmall`.
//! Every failure is a rejected Promise whose `Error` message is the native one.

use js_sys::{Array, Float32Array, Object, Reflect, Uint32Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::{api, context, demo};

pub(crate) fn js_error(e: linvt::Error) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

/// An object built key by key (`Reflect::set` on a fresh object cannot fail).
pub(crate) struct Obj(Object);

impl Obj {
    pub(crate) fn new() -> Self {
        Obj(Object::new())
    }
    pub(crate) fn set(self, key: &str, value: impl Into<JsValue>) -> Self {
        let _ = Reflect::set(&self.0, &key.into(), &value.into());
        self
    }
    pub(crate) fn json(self, key: &str, value: &impl serde::Serialize) -> Self {
        let parsed = serde_json::to_string(value)
            .ok()
            .and_then(|s| js_sys::JSON::parse(&s).ok())
            .unwrap_or(JsValue::NULL);
        self.set(key, parsed)
    }
    pub(crate) fn done(self) -> JsValue {
        self.0.into()
    }
}

fn numbers(v: &[usize]) -> Array {
    v.iter().map(|&x| JsValue::from(x as f64)).collect()
}

fn strings(v: &[String]) -> Array {
    v.iter().map(|s| JsValue::from(s.as_str())).collect()
}

/// A `Uint8Array` (or `ArrayBuffer`) argument's bytes, or a clear error naming the argument.
fn bytes_arg(name: &str, v: &JsValue) -> Result<Vec<u8>, JsValue> {
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Ok(a.to_vec());
    }
    if let Some(b) = v.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Uint8Array::new(b).to_vec());
    }
    Err(js_error(linvt::Error::input(format!(
        "`{name}` must be a Uint8Array holding a safetensors file (got {})",
        v.js_typeof().as_string().unwrap_or_default()
    ))))
}

/// An options-object argument as JSON text; None for `undefined`/`null` (no options).
/// `unreadable` is the error when it cannot be turned into JSON.
pub(crate) fn json_arg(
    v: &JsValue,
    unreadable: impl FnOnce() -> linvt::Error,
) -> linvt::Result<Option<String>> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .map(Some)
        .ok_or_else(unreadable)
}

/// The config argument: `undefined`/`null` mean "no overrides".
fn config_arg(v: &JsValue) -> Result<linvt::ConfigPatch, JsValue> {
    let json = json_arg(v, || {
        linvt::Error::config("the config object cannot be turned into JSON")
    })
    .map_err(js_error)?;
    api::config_patch(json.as_deref()).map_err(js_error)
}

/// `adapterInfo()` → Promise of `{ backend, adapter, deviceType, driver, features, limits }`.
#[wasm_bindgen(js_name = adapterInfo)]
pub async fn adapter_info() -> Result<JsValue, JsValue> {
    let ctx = context::shared().await.map_err(js_error)?;
    let l = &ctx.limits;
    let features: Vec<String> = [
        (wgpu::Features::SHADER_F16, "shader-f16"),
        (wgpu::Features::SUBGROUP, "subgroups"),
    ]
    .iter()
    .filter(|(bit, _)| ctx.features.contains(*bit))
    .map(|(_, n)| n.to_string())
    .collect();
    let limits = Obj::new()
        .set(
            "maxStorageBufferBindingSize",
            l.max_storage_buffer_binding_size as f64,
        )
        .set("maxBufferSize", l.max_buffer_size as f64)
        .set(
            "maxComputeWorkgroupStorageSize",
            l.max_compute_workgroup_storage_size,
        )
        .set(
            "maxComputeInvocationsPerWorkgroup",
            l.max_compute_invocations_per_workgroup,
        )
        .set(
            "maxComputeWorkgroupsPerDimension",
            l.max_compute_workgroups_per_dimension,
        )
        .set(
            "maxStorageBuffersPerShaderStage",
            l.max_storage_buffers_per_shader_stage,
        )
        .done();
    Ok(Obj::new()
        .set("backend", ctx.backend_name())
        .set("adapter", ctx.adapter_name())
        .set("deviceType", format!("{:?}", ctx.info.device_type))
        .set(
            "driver",
            format!("{} {}", ctx.info.driver, ctx.info.driver_info).trim(),
        )
        .set("features", strings(&features))
        .set("limits", limits)
        .done())
}

/// `condense(weights, input, config?)` → Promise of
/// `{ output, shape, selectedIndices, scores, timings, k, kRequested, frames, tokens, preset,
///    adapter, config, unused, outputSafetensors }`; see README "Web build".
#[wasm_bindgen]
pub async fn condense(
    weights: JsValue,
    input: JsValue,
    config: JsValue,
) -> Result<JsValue, JsValue> {
    let weights = bytes_arg("weights", &weights)?;
    let input = bytes_arg("input", &input)?;
    let patch = config_arg(&config)?;
    let r = api::condense(weights, input, &patch)
        .await
        .map_err(js_error)?;
    let file = r.output_bytes().map_err(js_error)?;
    let c = &r.condensed;
    Ok(Obj::new()
        .set("output", Float32Array::from(c.output.data()))
        .set("shape", numbers(c.output.shape()))
        .set(
            "selectedIndices",
            Uint32Array::from(&c.selected_indices[..]),
        )
        .set("scores", Float32Array::from(&c.scores[..]))
        .json("timings", &r.timings)
        .set("k", c.k as f64)
        .set("kRequested", c.k_requested as f64)
        .set("frames", c.frames as f64)
        .set("tokens", c.tokens as f64)
        .set("preset", r.config.preset.to_string())
        .set("adapter", c.adapter.as_str())
        .json("config", &r.config)
        .set("unused", strings(&r.unused))
        .set("outputSafetensors", Uint8Array::from(&file[..]))
        .done())
}

/// `demo()` → Promise of the built-in seeded demo: selections, grid, timings, GPU/CPU agreement.
#[wasm_bindgen]
pub async fn demo() -> Result<JsValue, JsValue> {
    let d = demo::run_demo().await.map_err(js_error)?;
    let c = &d.gpu;
    Ok(Obj::new()
        .set("frames", c.frames as f64)
        .set("tokens", c.tokens as f64)
        .set("grid", d.grid as f64)
        .set("k", c.k as f64)
        .set("shape", numbers(c.output.shape()))
        .set(
            "selectedIndices",
            Uint32Array::from(&c.selected_indices[..]),
        )
        .set("scores", Float32Array::from(&c.scores[..]))
        .set("adapter", c.adapter.as_str())
        .set("firstMs", d.first_ms)
        .set("gpuMs", d.gpu_ms)
        .set("cpuMs", d.cpu_ms)
        .set("maxAbsDiff", d.max_abs_diff)
        .set("selectionsIdentical", d.selections_identical)
        .done())
}

/// `benchSmall(reps)` → Promise of `{ shape, warmupMs, runsMs, medianMs }` for the `small`
/// bench shape (compare with `linvt bench --shape small`'s forward time).
#[wasm_bindgen(js_name = benchSmall)]
pub async fn bench_small(reps: u32) -> Result<JsValue, JsValue> {
    let t = demo::time_small(reps as usize).await.map_err(js_error)?;
    let runs: Array = t.runs_ms.iter().map(|&m| JsValue::from(m)).collect();
    Ok(Obj::new()
        .set("shape", t.shape.as_str())
        .set("warmupMs", t.warmup_ms)
        .set("runsMs", runs)
        .set("medianMs", t.median_ms())
        .done())
}
