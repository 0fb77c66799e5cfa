//! The `linvt` binary as a user runs it: condense a golden fixture on both backends and read the
//! numbers back; bad invocations fail with a message, never a panic.

mod common;

use std::path::PathBuf;
use std::process::Command;

use linvt::weights::TensorStore;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/case_rem.safetensors")
}

fn out_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("linvt-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn linvt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_linvt"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// Condenses the fixture and checks the output file against the golden output (1e-4, as in
/// the golden test) and the golden top-k indices (exact), plus the file's metadata.
fn condense_matches_golden(backend: &str) {
    let out = out_path(&format!("out-{backend}.safetensors"));
    let f = fixture();
    let o = linvt(&[
        "condense",
        "--weights",
        f.to_str().unwrap(),
        "--input",
        f.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--backend",
        backend,
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "condense failed: {stderr}");
    assert!(
        stderr.contains("5 frames × 49 tokens → 12 tokens"),
        "{stderr}"
    );
    let golden = TensorStore::open(&f).unwrap();
    let got = TensorStore::open(&out).unwrap();
    let output = got.get("output").unwrap().unwrap();
    assert_eq!(output.shape(), &[12, 96]);
    common::assert_close(
        "cli output",
        output.data(),
        golden.get("output").unwrap().unwrap().data(),
        1e-4,
        0.0,
    );
    let (shape, idx) = got.get_i64("selected_indices").unwrap().unwrap();
    assert_eq!(shape, vec![99]);
    assert_eq!(
        idx,
        golden.get_i64("inter.topk_indices").unwrap().unwrap().1
    );
    assert_eq!(got.get("scores").unwrap().unwrap().shape(), &[245]);
    let meta = got.metadata();
    assert_eq!(meta["preset"], "official");
    assert_eq!(meta["backend"], backend);
    assert!(!meta["adapter"].is_empty());
}

#[test]
fn condense_cpu_matches_golden() {
    condense_matches_golden("cpu");
}

#[test]
fn condense_gpu_matches_golden() {
    if common::gpu().is_none() {
        return;
    }
    condense_matches_golden("gpu");
}

#[test]
fn flags_override_the_weights_metadata() {
    let out = out_path("out-k.safetensors");
    let f = fixture();
    let o = linvt(&[
        "condense",
        "--weights",
        f.to_str().unwrap(),
        "--input",
        f.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
        "--top-k",
        "10",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = TensorStore::open(&out).unwrap();
    assert_eq!(
        got.get_i64("selected_indices").unwrap().unwrap().0,
        vec![10]
    );
    assert_eq!(got.metadata()["k"], "10");
}

#[test]
fn bad_invocations_fail_with_a_message() {
    let f = fixture();
    let out = out_path("never.safetensors");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--preset", "fancy"], "unknown preset `fancy`"),
        (vec!["--num-heads", "5"], "not divisible by num_heads 5"),
    ];
    for (extra, want) in cases {
        let mut args = vec![
            "condense",
            "--weights",
            f.to_str().unwrap(),
            "--input",
            f.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
        ];
        args.extend(extra);
        let o = linvt(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(stderr.contains(want), "expected `{want}` in: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let o = linvt(&[
        "condense",
        "--weights",
        "/nonexistent.safetensors",
        "--input",
        "x",
        "--output",
        "y",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("cannot read /nonexistent.safetensors"),
        "{stderr}"
    );
}

#[test]
fn info_lists_adapters() {
    let o = linvt(&["info"]);
    assert!(o.status.success());
    let stdout = String::from_utf8_lossy(&o.stdout);
    if common::gpu().is_some() {
        assert!(
            stdout.contains("backend:") && stdout.contains("max storage binding"),
            "{stdout}"
        );
    }
}
