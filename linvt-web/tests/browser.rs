//! Browser tests (wasm-bindgen-test in headless Chromium; scripts/test-web.sh): the released
//! module's golden fixtures condensed through the JavaScript-facing `condense`, on the browser's
//! WebGPU adapter (SwiftShader in headless Chromium: no SHADER_F16, no subgroups).
//!
//! Tolerances are the native golden test's (tests/golden_official.rs, from docs/linvt-reference.md for a
//! float32 reimplementation of a float64 reference): output 1e-4 abs, scores 1e-3 abs, top-k
//! indices identical. The kernels are the same WGSL, so the browser gets no looser bound.
#![cfg(target_arch = "wasm32")]

use js_sys::{Float32Array, Reflect, Uint32Array, Uint8Array};
use linvt::weights::SafetensorsFile;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const CASE_SMALL: &[u8] = include_bytes!("../../tests/fixtures/case_small.safetensors");
const CASE_REM: &[u8] = include_bytes!("../../tests/fixtures/case_rem.safetensors");

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &key.into()).unwrap_or_else(|_| panic!("result lacks `{key}`"))
}

fn f32s(obj: &JsValue, key: &str) -> Vec<f32> {
    get(obj, key)
        .dyn_into::<Float32Array>()
        .unwrap_or_else(|_| panic!("`{key}` is not a Float32Array"))
        .to_vec()
}

fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

fn config(json: &str) -> JsValue {
    js_sys::JSON::parse(json).expect("test config is JSON")
}

/// Asserts |got - want| ≤ atol everywhere, naming the first offending element.
fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= atol,
            "{what}: element {i} is {g}, expected {w} (|diff| {err} > {atol})"
        );
        worst = worst.max(err);
    }
    console_log!("{what}: max |diff| {worst:.3e} (tolerance {atol:e})");
}

/// The error message of a rejected call.
fn message(result: Result<JsValue, JsValue>) -> String {
    let err = result.expect_err("the call must reject");
    let err: js_sys::Error = err.dyn_into().expect("rejects with an Error object");
    err.message().into()
}

#[wasm_bindgen_test]
async fn adapter_is_the_browsers_webgpu() {
    let info = linvt_web::bindings::adapter_info()
        .await
        .expect("headless Chromium with --enable-unsafe-webgpu has an adapter");
    let adapter = get(&info, "adapter").as_string().unwrap_or_default();
    let backend = get(&info, "backend").as_string().unwrap_or_default();
    let features = js_sys::JSON::stringify(&get(&info, "features")).unwrap();
    let limits = js_sys::JSON::stringify(&get(&info, "limits")).unwrap();
    console_log!("adapter: {adapter} (backend {backend}); features {features}; limits {limits}");
    assert_eq!(backend, "BrowserWebGpu");
    assert!(
        !adapter.is_empty(),
        "the adapter is named (from GPUAdapterInfo)"
    );
}

async fn check_golden(name: &str, fixture: &[u8]) {
    let result = linvt_web::bindings::condense(bytes(fixture), bytes(fixture), JsValue::UNDEFINED)
        .await
        .unwrap_or_else(|e| panic!("{name}: condense rejected: {e:?}"));
    let golden = SafetensorsFile::from_bytes(name, fixture.to_vec()).unwrap();
    let want = |key: &str| golden.tensor(key).unwrap().unwrap().into_data();

    let (_, want_idx) = golden.tensor_i64("inter.topk_indices").unwrap().unwrap();
    let got_idx: Vec<i64> = get(&result, "selectedIndices")
        .dyn_into::<Uint32Array>()
        .expect("selectedIndices is a Uint32Array")
        .to_vec()
        .into_iter()
        .map(i64::from)
        .collect();
    assert_eq!(got_idx, want_idx, "{name}: top-k indices must be identical");
    assert_close(
        &format!("{name} scores"),
        &f32s(&result, "scores"),
        &want("inter.scores"),
        1e-3,
    );
    assert_close(
        &format!("{name} output"),
        &f32s(&result, "output"),
        &want("output"),
        1e-4,
    );

    let (q, e) = (
        golden.shape("query_tokens").unwrap()[1],
        golden.shape("query_tokens").unwrap()[2],
    );
    let shape = js_sys::JSON::stringify(&get(&result, "shape")).unwrap();
    assert_eq!(
        String::from(shape),
        format!("[{q},{e}]"),
        "{name}: output shape (Q, E)"
    );
    assert_eq!(
        get(&result, "preset").as_string().as_deref(),
        Some("official")
    );
    let timings = js_sys::JSON::stringify(&get(&result, "timings")).unwrap();
    console_log!(
        "{name}: ok on {} — timings {}",
        get(&result, "adapter").as_string().unwrap_or_default(),
        String::from(timings)
    );
}

#[wasm_bindgen_test]
async fn golden_case_small_matches_in_the_browser() {
    check_golden("case_small", CASE_SMALL).await;
}

#[wasm_bindgen_test]
async fn golden_case_rem_matches_in_the_browser() {
    check_golden("case_rem", CASE_REM).await;
}

/// The config object overrides the weights' metadata, as the CLI's flags do: top_k 5 instead
/// of the file's 32 selects the 5 best tokens, in descending score (the golden order's prefix).
#[wasm_bindgen_test]
async fn config_object_overrides_the_file_metadata() {
    let result = linvt_web::bindings::condense(
        bytes(CASE_SMALL),
        bytes(CASE_SMALL),
        config(r#"{"top_k": 5}"#),
    )
    .await
    .expect("condense with top_k 5");
    let golden = SafetensorsFile::from_bytes("case_small", CASE_SMALL.to_vec()).unwrap();
    let (_, want_idx) = golden.tensor_i64("inter.topk_indices").unwrap().unwrap();
    let got: Vec<i64> = get(&result, "selectedIndices")
        .dyn_into::<Uint32Array>()
        .unwrap()
        .to_vec()
        .into_iter()
        .map(i64::from)
        .collect();
    assert_eq!(got, want_idx[..5]);
    assert_eq!(get(&result, "k").as_f64(), Some(5.0));
    // The output file is the CLI's: same tensors, readable by the core's own reader.
    let file: Vec<u8> = get(&result, "outputSafetensors")
        .dyn_into::<Uint8Array>()
        .unwrap()
        .to_vec();
    let out = SafetensorsFile::from_bytes("output", file).unwrap();
    assert_eq!(
        out.tensor("output").unwrap().unwrap().data(),
        &f32s(&result, "output")[..]
    );
    assert_eq!(out.metadata().get("k").map(String::as_str), Some("5"));
}

/// Bad input rejects the Promise with the native path's message; nothing traps.
#[wasm_bindgen_test]
async fn bad_input_rejects_with_a_clear_message() {
    let m = message(
        linvt_web::bindings::condense(
            bytes(b"not a safetensors file"),
            bytes(CASE_SMALL),
            JsValue::NULL,
        )
        .await,
    );
    console_log!("rejected: {m}");
    assert!(
        m.contains("`weights` is not a readable safetensors file"),
        "{m}"
    );

    // A video of the wrong width: the message names both widths, as natively.
    let video: Vec<f32> = vec![0.5; 2 * 3 * 65];
    let text: Vec<f32> = vec![0.5; 4 * 64];
    let (vb, tb): (&[u8], &[u8]) = (bytemuck::cast_slice(&video), bytemuck::cast_slice(&text));
    let input = safetensors::serialize(
        [
            (
                "input.video",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3, 65], vb)
                    .unwrap(),
            ),
            (
                "input.text",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 64], tb)
                    .unwrap(),
            ),
        ],
        None,
    )
    .unwrap();
    let m = message(
        linvt_web::bindings::condense(bytes(CASE_SMALL), bytes(&input), JsValue::NULL).await,
    );
    console_log!("rejected: {m}");
    assert!(
        m.contains("video tokens have width C = 65 but the model's embed_size is 64"),
        "{m}"
    );

    let m = message(
        linvt_web::bindings::condense(
            bytes(CASE_SMALL),
            bytes(CASE_SMALL),
            config(r#"{"topK": 5}"#),
        )
        .await,
    );
    assert!(m.contains("unknown field `topK`"), "{m}");

    let m = message(
        linvt_web::bindings::condense(
            JsValue::from("weights.safetensors"),
            bytes(CASE_SMALL),
            JsValue::NULL,
        )
        .await,
    );
    assert!(m.contains("`weights` must be a Uint8Array"), "{m}");
}

/// Calls made at once (as `Promise.all` would) take turns on the device, each inside its own
/// error scopes, and both give the golden selection.
#[wasm_bindgen_test]
async fn concurrent_calls_both_succeed() {
    let call = || {
        wasm_bindgen_futures::future_to_promise(linvt_web::bindings::condense(
            bytes(CASE_SMALL),
            bytes(CASE_SMALL),
            JsValue::UNDEFINED,
        ))
    };
    let both = js_sys::Array::of2(&call().into(), &call().into());
    let results = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::all(&both))
        .await
        .expect("both calls resolve");
    let results: js_sys::Array = results.dyn_into().unwrap();
    let golden = SafetensorsFile::from_bytes("case_small", CASE_SMALL.to_vec()).unwrap();
    let (_, want_idx) = golden.tensor_i64("inter.topk_indices").unwrap().unwrap();
    for r in results.iter() {
        let got: Vec<i64> = get(&r, "selectedIndices")
            .dyn_into::<Uint32Array>()
            .unwrap()
            .to_vec()
            .into_iter()
            .map(i64::from)
            .collect();
        assert_eq!(got, want_idx);
    }
}
