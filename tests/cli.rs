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

/// `linvt condense` of the fixture (weights and input in one file) into `out` on `backend`,
/// with `extra` flags.
fn condense_fixture(out: &std::path::Path, backend: &str, extra: &[&str]) -> std::process::Output {
    condense_file(&fixture(), out, backend, extra)
}

/// `linvt condense` of `f` (weights and input in one file) into `out` on `backend`, with
/// `extra` flags.
fn condense_file(
    f: &std::path::Path,
    out: &std::path::Path,
    backend: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "condense",
        "--weights",
        f.to_str().unwrap(),
        "--input",
        f.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--backend",
        backend,
    ];
    args.extend(extra);
    linvt(&args)
}

/// Condenses the fixture and checks the output file against the golden output (1e-4, as in
/// the golden test) and the golden top-k indices (exact), plus the file's metadata.
fn condense_matches_golden(backend: &str) {
    let out = out_path(&format!("out-{backend}.safetensors"));
    let f = fixture();
    let o = condense_fixture(&out, backend, &[]);
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

/// A weights file stored in bf16 (as the released checkpoints): `--gpu-weights auto` (the
/// default) keeps it in bf16 on the GPU — exact, so the output matches the CPU's on the same
/// file within the golden tolerance and the selection is identical — and says so; `f32` is
/// still there on request.
#[test]
fn condense_keeps_bf16_weights_in_bf16_by_default() {
    if common::gpu().is_none() {
        return;
    }
    let bf16 = out_path("case_rem_bf16.safetensors");
    common::write_bf16_copy(&fixture(), &bf16);
    let run = |backend: &str, extra: &[&str]| {
        let out = out_path(&format!("bf16-{backend}-{}.safetensors", extra.len()));
        let o = condense_file(&bf16, &out, backend, extra);
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "condense failed: {stderr}");
        (TensorStore::open(&out).unwrap(), stderr)
    };
    let (cpu, _) = run("cpu", &[]);
    let (gpu, stderr) = run("gpu", &[]);
    assert!(stderr.contains("bf16 weights"), "{stderr}");
    common::assert_close(
        "bf16 weights, gpu vs cpu",
        gpu.get("output").unwrap().unwrap().data(),
        cpu.get("output").unwrap().unwrap().data(),
        1e-4,
        0.0,
    );
    assert_eq!(
        gpu.get_i64("selected_indices").unwrap(),
        cpu.get_i64("selected_indices").unwrap()
    );
    let (_, stderr) = run("gpu", &["--gpu-weights", "f32"]);
    assert!(stderr.contains("f32 weights"), "{stderr}");
}

#[test]
fn flags_override_the_weights_metadata() {
    let out = out_path("out-k.safetensors");
    let o = condense_fixture(&out, "cpu", &["--top-k", "10"]);
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
    let out = out_path("never.safetensors");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--preset", "fancy"], "unknown preset `fancy`"),
        (vec!["--num-heads", "5"], "not divisible by num_heads 5"),
    ];
    for (extra, want) in cases {
        let o = condense_fixture(&out, "cpu", &extra);
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

/// `linvt info`: the adapters, and the kernels the CPU executor takes here.
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
    // The CPU executor's kernels, named by what this CPU has.
    #[cfg(target_arch = "x86_64")]
    let products = if std::is_x86_feature_detected!("avx512f") {
        "ours, AVX-512F (12×32 tiles)"
    } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        "ours, AVX2 + FMA (6×16 tiles)"
    } else {
        "the gemm crate"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let products = "the gemm crate";
    assert!(
        stdout.contains("cpu executor")
            && stdout.contains(&format!("products of more than 8 rows: {products}")),
        "{stdout}"
    );
}

/// `linvt demo` from an empty directory: the whole pipeline on the embedded tiny model. It must
/// say the weights are random, print an answer line and the token counts of the tiny model
/// (8 frames × 4 tokens per frame = 32 vision tokens → 8 LinVT tokens), and write a provenance
/// PNG of 8 tiles of 128×128 (src/vlm/picture.rs).
#[test]
fn demo_runs_the_whole_video_llm() {
    let dir = out_path("demo");
    std::fs::create_dir_all(&dir).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_linvt"))
        .arg("demo")
        .current_dir(&dir)
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "demo failed: {stdout}\n{stderr}");
    assert!(stdout.contains("RANDOM"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("answer (")),
        "no answer line: {stdout}"
    );
    assert!(
        stdout.contains("8 frames → 32 vision tokens (4 per frame) → 8 LinVT tokens"),
        "{stdout}"
    );
    for stage in ["vision", "linvt", "prefill", "decode"] {
        assert!(stdout.contains(stage), "no {stage} timing: {stdout}");
    }
    // With an adapter the demo also runs on the GPU executor, whose greedy ids must equal the
    // CPU's exactly (as in the golden end-to-end tests).
    if common::gpu().is_some() {
        assert!(stdout.contains("token ids identical"), "{stdout}");
    }
    let img = image::open(dir.join("linvt-demo.png")).expect("the demo writes a readable PNG");
    assert_eq!((img.width(), img.height()), (8 * 128, 128 + 12)); // frames + weight bars
}

#[test]
fn demo_condense_only_keeps_the_linvt_demo() {
    let png = out_path("condense-only.png");
    let o = linvt(&["demo", "--condense-only", "--png", png.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("selected cells drawn to"), "{stdout}");
    image::open(&png).expect("a readable PNG");
}

/// `bench --model` on the tiny model: one JSON object whose four figures are positive, whose
/// token counts are the tiny model's, and whose greedy ids the CPU executor reproduces.
#[test]
fn bench_model_json_reports_the_four_figures() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-internvl2");
    let o = linvt(&["bench", "--model", dir.to_str().unwrap(), "--json"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    for key in [
        "vision_frames_per_s",
        "linvt_ms",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
    ] {
        let x = v[key].as_f64().unwrap_or(f64::NAN);
        assert!(x > 0.0 && x.is_finite(), "{key} = {x} in {stdout}");
    }
    assert_eq!(v["vision_tokens"], 32);
    assert_eq!(v["linvt_tokens"], 8);
    assert!(v["adapter"].is_string());
    // Without --backend: the GPU whenever an adapter is usable (a silent CPU fallback there
    // would hide a broken GPU path).
    let want = if common::gpu().is_some() {
        "gpu"
    } else {
        "cpu"
    };
    assert_eq!(v["backend"], want, "{stdout}");
    for stage in ["vision", "linvt", "prefill", "decode_step"] {
        assert!(
            v["stage_ms"][stage].as_f64().is_some(),
            "{stage} in {stdout}"
        );
    }
    // The greedy ids: prefill's and one per decode step, and the CPU executor's run gives the
    // same ones (with a GPU, the two executors agree; without, two CPU runs do).
    let ids = v["greedy_ids"].as_array().expect("greedy_ids");
    assert_eq!(
        ids.len() as u64,
        v["decode_steps"].as_u64().unwrap() + 1,
        "{stdout}"
    );
    let o = linvt(&[
        "bench",
        "--model",
        dir.to_str().unwrap(),
        "--json",
        "--backend",
        "cpu",
    ]);
    let cpu: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).expect("one JSON object");
    assert_eq!(cpu["greedy_ids"], v["greedy_ids"]);
    // --steps sets the decode steps (the ids are the longer run's first ones; the weights on
    // huge pages change no value); an option of another bench mode is refused rather than
    // ignored.
    let model = dir.to_str().unwrap();
    let o = linvt(&[
        "bench",
        "--model",
        model,
        "--json",
        "--backend",
        "cpu",
        "--steps",
        "3",
        "--cpu-huge-pages",
    ]);
    let short: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).expect("one JSON object");
    assert_eq!(short["decode_steps"], 3);
    assert_eq!(short["greedy_ids"].as_array().unwrap()[..], ids[..4]);
    let o = linvt(&[
        "bench",
        "--model",
        model,
        "--backend",
        "cpu",
        "--layers",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("--layers applies to `bench --decoder`"),
        "{stderr}"
    );
    let o = linvt(&["bench", "--decoder", "qwen2-tiny", "--reps", "3"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && stderr.contains("--reps applies to `bench --model`, not `bench --decoder`"),
        "{stderr}"
    );
    // A directory that is not a model: a clear error, no panic.
    let o = linvt(&["bench", "--model", "/nonexistent-model", "--json"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("is not a model directory"),
        "{stderr}"
    );
}

/// Outputs never destroy what was there: `--output` equal to an input is refused before any
/// work (the input stays byte for byte), a missing directory is named at once, and a run killed
/// part way through its write (file-size limit) leaves the previous output intact.
#[test]
fn outputs_are_checked_first_and_written_atomically() {
    let dir = out_path("atomic");
    std::fs::create_dir_all(&dir).unwrap();
    let weights = dir.join("w.safetensors");
    std::fs::copy(fixture(), &weights).unwrap();
    let before = std::fs::read(&weights).unwrap();
    let o = condense_file(&weights, &weights, "cpu", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("destroy"), "{err}");
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        before,
        "the input changed"
    );

    let o = condense_fixture(&dir.join("no/such/dir/out.safetensors"), "cpu", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("does not exist"),
        "{err}"
    );

    let out = dir.join("out.safetensors");
    assert!(condense_fixture(&out, "cpu", &[]).status.success());
    let good = std::fs::read(&out).unwrap();
    assert!(
        good.len() > 4096,
        "the output must exceed the 1-block limit below"
    );
    // `ulimit -f 1`: the process may write at most one block per file, so the write dies part
    // way (SIGXFSZ or EFBIG).
    let cmd = format!(
        "ulimit -f 1; exec '{}' condense --weights '{f}' --input '{f}' --output '{o}' --backend cpu",
        env!("CARGO_BIN_EXE_linvt"),
        f = fixture().display(),
        o = out.display()
    );
    let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    assert!(!o.status.success(), "the limited write should fail");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        good,
        "the previous output was damaged"
    );
    // A write error says "cannot write", not "cannot read".
    if std::path::Path::new("/dev/full").exists() {
        let o = condense_fixture(std::path::Path::new("/dev/full"), "cpu", &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cannot write /dev/full"), "{err}");
    }
}

/// Identical runs write identical bytes (the metadata in sorted order), so outputs can be
/// compared by hash.
#[test]
fn identical_runs_write_identical_files() {
    let (a, b) = (
        out_path("same-a.safetensors"),
        out_path("same-b.safetensors"),
    );
    assert!(condense_fixture(&a, "cpu", &[]).status.success());
    assert!(condense_fixture(&b, "cpu", &[]).status.success());
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // Still a safetensors file our reader and its metadata parse.
    let store = TensorStore::open(&a).unwrap();
    assert!(store.get("output").unwrap().is_some());
}

/// Configuration a user wrote is never silently ignored: an unknown `--config` field, or a
/// queries-per-scale split under a preset that has no per-scale queries, is refused by name.
#[test]
fn ignored_configuration_is_refused() {
    let cfg = out_path("unknown.json");
    std::fs::write(&cfg, r#"{"topk": 1}"#).unwrap();
    let o = condense_fixture(
        &out_path("x.safetensors"),
        "cpu",
        &["--config", cfg.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("unknown field `topk`") && err.contains("top_k"),
        "{err}"
    );
    for split in ["0", "4,0", "32,16,16"] {
        let o = condense_fixture(
            &out_path("y.safetensors"),
            "cpu",
            &["--preset", "official", "--queries-per-scale", split],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("queries_per_scale"),
            "{split}: {err}"
        );
    }
}
