//! The `official` preset against golden files produced by the released PyTorch module
//! (tests/fixtures/case_*.safetensors, copied from shared/fixtures/linvt-official).
//! References are float64 computations stored as f32. Tolerances are REFERENCE.md's for a
//! float32 reimplementation (PyTorch's own float32 run is within about a tenth of each):
//! output and TTA layers 1e-4 abs, SVR tensors 2e-4, scores 1e-3; top-k indices identical.

mod common;

use linvt::weights::TensorStore;
use linvt::{CondenseOptions, ConfigPatch, Device, Linvt};

const CASES: &[&str] = &["case_small", "case_rem"];

fn fixture(name: &str) -> TensorStore {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/{name}.safetensors"));
    TensorStore::open(&path).expect("fixture opens")
}

fn golden(store: &TensorStore, key: &str) -> Vec<f32> {
    store
        .get(key)
        .unwrap()
        .unwrap_or_else(|| panic!("fixture lacks {key}"))
        .into_data()
}

fn check(device: Device, name: &str) {
    let store = fixture(name);
    let (mut model, report) =
        Linvt::from_store(&store, &ConfigPatch::default()).expect("weights load");
    assert_eq!(
        model.config().preset,
        linvt::Preset::Official,
        "a config without a preset is official"
    );
    assert!(
        report.unused.is_empty(),
        "unexpected unused tensors: {:?}",
        report.unused
    );
    assert!(
        !report.unused_by_design.is_empty(),
        "the aggregator's wv/dense are reported as unused"
    );
    if device == Device::Gpu {
        let Some(ctx) = common::gpu() else { return };
        model.attach_gpu(ctx).unwrap();
    }
    let video = store.get("input.video").unwrap().unwrap();
    let text = store.get("input.text").unwrap().unwrap();
    let opts = CondenseOptions {
        trace: true,
        ..Default::default()
    };
    let out = model
        .condense(device, &video, &text, &opts)
        .expect("condense runs");

    let (_, want_idx) = store.get_i64("inter.topk_indices").unwrap().unwrap();
    let got_idx: Vec<i64> = out.selected_indices.iter().map(|&i| i as i64).collect();
    assert_eq!(
        got_idx, want_idx,
        "{name}: top-k indices (descending score) must be identical"
    );

    common::assert_close(
        &format!("{name} scores"),
        &out.scores,
        &golden(&store, "inter.scores"),
        1e-3,
        0.0,
    );
    for (key, t) in &out.trace {
        let tol = if key.starts_with("svr") { 2e-4 } else { 1e-4 };
        common::assert_close(
            &format!("{name} {key}"),
            t.data(),
            &golden(&store, &format!("inter.{key}")),
            tol,
            0.0,
        );
    }
    let layers = model.config().num_layers;
    assert_eq!(
        out.trace.len(),
        2 * layers + 1,
        "every SVR layer, svr_out and every TTA layer are traced"
    );
    common::assert_close(
        &format!("{name} output"),
        out.output.data(),
        &golden(&store, "output"),
        1e-4,
        0.0,
    );
    assert_eq!(
        out.output.shape(),
        &[model.num_queries(), model.config().embed_size]
    );
}

#[test]
fn official_golden_cpu() {
    for name in CASES {
        check(Device::Cpu, name);
    }
}

#[test]
fn official_golden_gpu() {
    for name in CASES {
        check(Device::Gpu, name);
    }
}
