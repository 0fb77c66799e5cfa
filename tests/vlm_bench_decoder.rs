//! `linvt bench --decoder`: the seeded-decoder benchmark runs end to end and reports
//! consistent numbers (the Qwen2-0.5B shape itself is too big for a test; `qwen2-tiny` has the
//! same structure).
mod common;

use std::process::Command;

fn linvt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_linvt"))
        .args(args)
        .output()
        .expect("binary runs")
}

#[test]
fn tiny_decoder_bench_reports_json() {
    if common::gpu().is_none() {
        return;
    }
    let o = linvt(&["bench", "--decoder", "qwen2-tiny", "--steps", "2", "--json"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stderr: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // hidden 64, MLP 128, 2 layers, 4 heads over 2 kv heads of 16, vocab 1000, tied:
    // per layer 2·64 (norms) + 64·64 + 64 (q) + 2·(32·64 + 32) (k, v) + 64·64 (o)
    // + 2·128·64 (gate, up) + 64·128 (down) = 37 120; plus 1000·64 + 64 (final norm).
    assert_eq!(v["parameters"], 138_304);
    // Every weight once plus one embedding row, f32.
    assert_eq!(v["weight_bytes_per_token"], (138_304 + 64) * 4);
    assert_eq!(v["decode_steps"], 2);
    let tps = v["decode_tokens_per_s"].as_f64().unwrap();
    let ms = v["decode_ms_per_token"].as_f64().unwrap();
    assert!(tps > 0.0 && (tps * ms / 1e3 - 1.0).abs() < 1e-9);
    let frac = v["bandwidth_fraction"].as_f64().unwrap();
    let ratio = v["weight_gb_per_s"].as_f64().unwrap() / v["copy_gb_per_s"].as_f64().unwrap();
    assert!(frac > 0.0 && (frac - ratio).abs() < 1e-9);
}

/// With bf16 linear weights the bytes per token count 2 per linear weight (q/k/v, o,
/// gate/up, down: 2 · (128·64 + 64·64 + 2·128·64 + 64·128) = 73 728 of them), and the report
/// names the storage. In buffers the embedding table (1000 × 64, read whole as the tied lm_head
/// plus one row) stays f32 and counts 4 bytes like the rest; as texels it is bf16 too.
#[test]
fn tiny_decoder_bench_counts_bf16_weights_at_two_bytes() {
    if common::gpu().is_none() {
        return;
    }
    let (linear, table) = (73_728, 64_000 + 64);
    let rest = 138_304 + 64 - linear - table;
    for (layout, table_bytes) in [("buffers", 4), ("texels", 2)] {
        let o = linvt(&[
            "bench",
            "--decoder",
            "qwen2-tiny",
            "--steps",
            "1",
            "--gpu-weights",
            "bf16",
            "--weight-layout",
            layout,
            "--json",
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "stderr: {stderr}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            v["weight_bytes_per_token"],
            rest * 4 + linear * 2 + table * table_bytes,
            "{layout}"
        );
        assert_eq!(v["weight_storage"], "bf16");
        assert_eq!(v["weight_layout"], layout);
    }
}

#[test]
fn unknown_decoder_shape_lists_the_known_ones() {
    let o = linvt(&["bench", "--decoder", "gpt-5"]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("qwen2-0.5b"), "{stderr}");
}
