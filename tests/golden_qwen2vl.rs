//! The Qwen2-VL and Qwen2.5-VL parts against transformers 4.57.6 on tiny random models
//! (tests/fixtures/qwen2vl-tiny, made by scripts/goldens/qwen2vl_hf.py; see its README): the
//! vision tower (patch embedding, 2-D rotary attention per image and temporal group, Qwen2.5-VL's
//! windows, the merger) on the processor's pixel values, on the CPU and GPU executors, and the
//! 3-axis rotary positions of the prompts (`get_rope_index`).
//!
//! Tolerances (the fixture README's measurements): transformers' float32 vision outputs are
//! within 5.5e-6 of a float64 run; a float32 reimplementation with another summation order lands
//! in the same band, so the tower's output is held to 5e-5 (~8×). Positions exactly.

mod common;

use pollster::FutureExt as _;
use std::path::{Path, PathBuf};

use ::linvt::cpu::CpuOps;
use ::linvt::ops::VlmOps;
use ::linvt::vlm::config::VlmConfig;
use ::linvt::vlm::engine::{Engine, GenerateOptions};
use ::linvt::vlm::model::{
    gpu_ops, load_engine, AskOptions, LinvtChoice, LoadOptions, VideoLlm, Visual,
};
use ::linvt::vlm::preprocess::Frame;
use ::linvt::vlm::qwen2_vit::{Grid, Qwen2VisionConfig, Qwen2VitKind, WindowPlan};
use ::linvt::vlm::qwen2_vl::{rope_index, vision_spans, VisionSpan};
use ::linvt::vlm::qwen2_vl_preprocess::{image_patches, video_patches};
use ::linvt::weights::TensorStore;
use ::linvt::{Device, Tensor};
use common::assert_close;

const MODELS: [&str; 2] = ["qwen2vl", "qwen25vl"];

fn dir(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qwen2vl-tiny")
        .join(model)
}

fn golden(model: &str) -> TensorStore {
    TensorStore::open(&dir(model).join("golden.safetensors")).unwrap()
}

fn ints(g: &TensorStore, key: &str) -> Vec<i64> {
    g.get_i64(key).unwrap().unwrap().1
}

fn config(model: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir(model).join("config.json")).unwrap()).unwrap()
}

fn grids(g: &TensorStore, key: &str) -> Vec<Grid> {
    ints(g, key)
        .chunks(3)
        .map(|c| Grid {
            t: c[0] as usize,
            h: c[1] as usize,
            w: c[2] as usize,
        })
        .collect()
}

fn engine<O: VlmOps>(ops: O, model: &str) -> Engine<O> {
    let opts = LoadOptions {
        linvt: LinvtChoice::Off,
        ..LoadOptions::new(Device::Cpu)
    };
    load_engine(ops, &dir(model), &opts, &mut |_, _| {}).unwrap()
}

/// The vision tower of one executor: pixels and grids → LLM tokens on the host.
type Tower<'a> = dyn FnMut(&Tensor, &[Grid]) -> Tensor + 'a;

/// Both executors: the CPU always, the GPU when there is one.
fn each_executor(model: &str, f: &mut dyn FnMut(&str, &mut Tower)) {
    let mut cpu = engine(CpuOps::new(), model);
    f("cpu", &mut |p, g| {
        let t = cpu.qwen2_vision(p, g).unwrap();
        cpu.ops.read_back(&t).block_on().unwrap()
    });
    if common::gpu().is_some() {
        let ops = gpu_ops(&dir(model), &LoadOptions::new(Device::Gpu)).unwrap();
        let mut gpu = engine(ops, model);
        f("gpu", &mut |p, g| {
            let t = gpu.qwen2_vision(p, g).unwrap();
            gpu.ops.read_back(&t).block_on().unwrap()
        });
    }
}

/// (pixel values, grids, golden output) of each case: an image, a video of three temporal groups
/// (5 frames, the last repeated),
/// and two images of different sizes in one call (image, then image2).
fn cases(g: &TensorStore) -> Vec<(Tensor, Vec<Grid>, Tensor)> {
    let t = |k: &str| g.get(k).unwrap().unwrap();
    let (one, two) = (t("image.pixel_values"), t("image2.pixel_values"));
    let both = Tensor::new(
        vec![one.rows() + two.rows(), one.cols()],
        [one.data(), two.data()].concat(),
    )
    .unwrap();
    vec![
        (one, grids(g, "image.image_grid_thw"), t("image.vision_out")),
        (
            t("video.pixel_values_videos"),
            grids(g, "video.video_grid_thw"),
            t("video.vision_out"),
        ),
        (
            both,
            grids(g, "multi.image_grid_thw"),
            t("multi.image_vision_out"),
        ),
    ]
}

#[test]
fn the_vision_tower_matches_transformers_on_both_executors() {
    for model in MODELS {
        let g = golden(model);
        each_executor(model, &mut |device, run| {
            for (pixels, grid, want) in cases(&g) {
                let got = run(&pixels, &grid);
                let what = format!("{device} {model} {grid:?}");
                assert_close(&what, got.data(), want.data(), 5e-5, 0.0);
            }
        });
    }
}

/// Qwen2.5-VL's windows as transformers' `get_window_index` lists them.
#[test]
fn windows_match_get_window_index() {
    let g = golden("qwen25vl");
    let c = Qwen2VisionConfig::from_json(&config("qwen25vl")["vision_config"], true).unwrap();
    let Qwen2VitKind::Qwen25 { window_size, .. } = c.kind else {
        panic!("not 2.5")
    };
    for (grid, index, cu) in [
        (
            "image.image_grid_thw",
            "image.window_index",
            "image.cu_window_seqlens",
        ),
        (
            "video.video_grid_thw",
            "video.window_index",
            "video.cu_window_seqlens",
        ),
    ] {
        let plan = WindowPlan::new(
            &grids(&g, grid),
            c.merge,
            window_size / c.merge / c.patch_size,
        );
        let units: Vec<i64> = plan.units.iter().map(|&u| u as i64).collect();
        assert_eq!(units, ints(&g, index), "{index}");
        let mut bounds = vec![0i64];
        for &(n, len) in &plan.windows.0 {
            for _ in 0..n {
                bounds.push(bounds.last().unwrap() + len as i64);
            }
        }
        assert_eq!(bounds, ints(&g, cu), "{cu}");
    }
}

/// The vision spans of a golden case's prompt (images and videos in order of appearance).
fn spans(g: &TensorStore, model: &str, case: &str) -> Vec<VisionSpan> {
    let cfg = VlmConfig::from_json(&config(model), vec![], None).unwrap();
    let key = |k: &str| format!("{case}.{k}");
    // The multi prompt's video is the video case's (same `second_per_grid_ts`); 1 s without.
    let seconds = g
        .get(&key("second_per_grid_ts"))
        .unwrap()
        .or(g.get("video.second_per_grid_ts").unwrap())
        .map_or(1.0, |t| t.data()[0] as f64);
    let videos: Vec<(Grid, f64)> = grids_or_empty(g, &key("video_grid_thw"))
        .into_iter()
        .map(|v| (v, seconds))
        .collect();
    let ids: Vec<u32> = ints(g, &key("input_ids"))
        .iter()
        .map(|&x| x as u32)
        .collect();
    vision_spans(
        &ids,
        cfg.qwen2_vl().unwrap(),
        &grids_or_empty(g, &key("image_grid_thw")),
        &videos,
    )
    .unwrap()
}

/// `get_rope_index`: the 3-axis positions and the decode delta of each golden prompt, from the
/// prompt ids and the grids.
#[test]
fn rope_positions_match_get_rope_index() {
    for model in MODELS {
        let g = golden(model);
        for case in ["image", "video", "multi"] {
            let len = ints(&g, &format!("{case}.input_ids")).len();
            let (p, delta) = rope_index(len, &spans(&g, model, case)).unwrap();
            let want = ints(&g, &format!("{case}.position_ids"));
            // (3, L) axis-major in the golden; ours is row-major (L, 3).
            let got: Vec<i64> = (0..3)
                .flat_map(|a| (0..p.rows()).map(move |r| (a, r)))
                .map(|(a, r)| p.row(r)[a] as i64)
                .collect();
            assert_eq!(got, want, "{model} {case} positions");
            assert_eq!(
                delta,
                ints(&g, &format!("{case}.rope_deltas"))[0],
                "{model} {case} delta"
            );
        }
    }
}

/// The whole model on the golden inputs: the vision tower's tokens at the pad tokens (images
/// and videos), the prompt's 3-axis positions, prefill and 8 greedy steps with the KV cache
/// continuing at slot + delta: transformers' logits (2e-4: its float32 step logits are within
/// 5.3e-5 of float64) and ids, on both executors.
#[test]
fn generation_matches_transformers_on_both_executors() {
    for model in MODELS {
        let g = golden(model);
        let cpu = engine(CpuOps::new(), model);
        generate_cases(cpu, &g, model, "cpu");
        if common::gpu().is_some() {
            let ops = gpu_ops(&dir(model), &LoadOptions::new(Device::Gpu)).unwrap();
            generate_cases(engine(ops, model), &g, model, "gpu");
        }
    }
}

fn generate_cases<O: VlmOps>(mut e: Engine<O>, g: &TensorStore, model: &str, device: &str) {
    let c = e.config.qwen2_vl().unwrap().clone();
    for (case, t) in cases(g).into_iter().enumerate() {
        let case = ["image", "video", "multi"][case];
        let key = |k: &str| format!("{case}.{k}");
        let ids: Vec<u32> = ints(g, &key("input_ids"))
            .iter()
            .map(|&x| x as u32)
            .collect();
        let at = |token: u32| -> Vec<u32> {
            (0..ids.len() as u32)
                .filter(|&i| ids[i as usize] == token)
                .collect()
        };
        let mut x = e.embed(&ids).unwrap();
        // Images (the case's own pixels), then the video (the video case's, in every case
        // that has one).
        if case != "video" {
            let rows = e.qwen2_vision(&t.0, &t.1).unwrap();
            x = e.ops.scatter_rows(&x, &at(c.image_token), &rows).unwrap();
        }
        if case != "image" {
            let v = &cases(g)[1];
            let rows = e.qwen2_vision(&v.0, &v.1).unwrap();
            x = e.ops.scatter_rows(&x, &at(c.video_token), &rows).unwrap();
        }
        let (positions, delta) = rope_index(ids.len(), &spans(g, model, case)).unwrap();
        let opts = GenerateOptions {
            max_new_tokens: 8,
            sampling: Default::default(),
            stop_ids: vec![],
            keep_step_logits: true,
        };
        let out = e
            .generate_at(&x, &positions, delta, &opts, &mut |_| {})
            .block_on()
            .unwrap();
        let what = format!("{device} {model} {case}");
        let want: Vec<u32> = ints(g, &key("greedy_ids"))
            .iter()
            .map(|&x| x as u32)
            .collect();
        assert_eq!(out.ids, want, "{what} greedy ids");
        let got: Vec<f32> = out
            .step_logits
            .iter()
            .flat_map(|t| t.data().to_vec())
            .collect();
        let want = g.get(&key("step_logits")).unwrap().unwrap();
        assert_close(&format!("{what} logits"), &got, want.data(), 2e-4, 0.0);
    }
}

fn grids_or_empty(g: &TensorStore, key: &str) -> Vec<Grid> {
    if g.get_i64(key).unwrap().is_some() {
        grids(g, key)
    } else {
        vec![]
    }
}

/// uint8 frames of a (n, h, w, 3) golden tensor, or one (h, w, 3) image.
fn frames(model: &str, key: &str) -> Vec<Frame> {
    common::u8_frames(&dir(model).join("golden.safetensors"), key)
}

/// The video frames given to the processor (5: an odd count, the last to be repeated).
fn video_frames(model: &str) -> Vec<Frame> {
    frames(model, "video.frames_u8")
}

/// Our processor against transformers': images (PIL path) bit for bit up to f32 rounding; videos
/// against the same frames resized by PIL (`video.pixel_values_videos_pil`) likewise, and
/// within one uint8 level (0.015 after normalisation) of transformers' torchvision resize.
#[test]
fn preprocessing_matches_the_processor() {
    for model in MODELS {
        let g = golden(model);
        let cfg = VlmConfig::from_json(
            &config(model),
            vec![],
            Some(
                &serde_json::from_str(
                    &std::fs::read_to_string(dir(model).join("preprocessor_config.json")).unwrap(),
                )
                .unwrap(),
            ),
        )
        .unwrap();
        let c = cfg.qwen2_vl().unwrap();
        for (image, pixels, grid) in [
            ("image.u8", "image.pixel_values", "image.image_grid_thw"),
            ("image2.u8", "image2.pixel_values", "image2.image_grid_thw"),
        ] {
            let (got, got_grid) =
                image_patches(&frames(model, image)[0], &c.processor, &c.vision).unwrap();
            assert_eq!(vec![got_grid], grids(&g, grid), "{model} {image} grid");
            let want = g.get(pixels).unwrap().unwrap();
            assert_close(
                &format!("{model} {image}"),
                got.data(),
                want.data(),
                1e-6,
                0.0,
            );
        }
        let (got, got_grid) = video_patches(&video_frames(model), &c.processor, &c.vision).unwrap();
        assert_eq!(
            vec![got_grid],
            grids(&g, "video.video_grid_thw"),
            "{model} video grid"
        );
        if let Some(pil) = g.get("video.pixel_values_videos_pil").unwrap() {
            assert_close(
                &format!("{model} video (PIL)"),
                got.data(),
                pil.data(),
                1e-6,
                0.0,
            );
        }
        let want = g.get("video.pixel_values_videos").unwrap().unwrap();
        assert_close(
            &format!("{model} video"),
            got.data(),
            want.data(),
            0.016,
            0.0,
        );
    }
}

/// `VideoLlm::ask` end to end — our processor, chat template, vision tower, positions and
/// generation — gives transformers' prompt ids and greedy ids for the image and the video
/// (Qwen2.5-VL's video at the golden's 1 fps: 2 s per temporal group), on both executors.
#[test]
fn ask_reproduces_the_reference_prompts_and_answers() {
    let mut devices = vec![Device::Cpu];
    if common::gpu().is_some() {
        devices.push(Device::Gpu);
    }
    for model in MODELS {
        let g = golden(model);
        let question = |case: &str| {
            g.metadata()
                .get(&format!("question.{case}"))
                .unwrap()
                .clone()
        };
        for device in &devices {
            let mut m =
                VideoLlm::load_with(&dir(model), &LoadOptions::new(*device), &mut |_, _| {})
                    .unwrap();
            let fps = g
                .get("video.second_per_grid_ts")
                .unwrap()
                .map(|s| 2.0 / s.data()[0] as f64);
            for (case, visual) in [
                ("image", Visual::Image(frames(model, "image.u8").remove(0))),
                ("video", Visual::Video(video_frames(model))),
            ] {
                let opts = AskOptions {
                    max_new_tokens: 8,
                    fps,
                    ..Default::default()
                };
                let a = m
                    .ask(&visual, &question(case), &opts, &mut |_| {}, &mut |_| {})
                    .block_on()
                    .unwrap();
                let what = format!("{device:?} {model} {case}");
                let want = |k: &str| -> Vec<u32> {
                    ints(&g, &format!("{case}.{k}"))
                        .iter()
                        .map(|&x| x as u32)
                        .collect()
                };
                assert_eq!(a.prompt_ids, want("input_ids"), "{what}: prompt ids");
                assert_eq!(a.token_ids, want("greedy_ids"), "{what}: greedy ids");
            }
        }
    }
}

/// A video too big for one binding runs a temporal group at a time: with 16 KiB bindings on the
/// GPU (25 rows of the widest activation, less than one group's 32 patches) the three-group
/// video passes one group at a time and still gives transformers' tokens.
#[test]
fn the_vision_tower_split_by_temporal_groups_gives_the_same_tokens() {
    if common::gpu().is_none() {
        return;
    }
    for model in MODELS {
        let g = golden(model);
        let mut ops = gpu_ops(&dir(model), &LoadOptions::new(Device::Gpu)).unwrap();
        ops.binding_limit = Some(16 << 10);
        let mut e = engine(ops, model);
        let (pixels, grid, want) = cases(&g).remove(1);
        assert_eq!(grid[0].t, 3);
        let t = e.qwen2_vision(&pixels, &grid).unwrap();
        let got = e.ops.read_back(&t).block_on().unwrap();
        assert_close(
            &format!("gpu split {model}"),
            got.data(),
            want.data(),
            5e-5,
            0.0,
        );
    }
}

/// A copy of a fixture model with its config.json changed by `edit`.
fn variant(model: &str, name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let d = std::env::temp_dir().join(format!("linvt-qwen2vl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for e in std::fs::read_dir(dir(model)).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "golden.safetensors" {
            std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut c = config(model);
    edit(&mut c);
    std::fs::write(d.join("config.json"), c.to_string()).unwrap();
    d
}

/// What a user can get wrong with a Qwen2-VL model is an error that says what and what to do:
/// a one-frame video, an image under 28 pixels, a prompt the context cannot hold (naming how
/// many tokens the video took), an `mrope_section` that does not cover the rotary pairs.
#[test]
fn qwen2_vl_mistakes_are_clear_errors() {
    let mut m = VideoLlm::load(&dir("qwen2vl"), Device::Cpu, &mut |_, _| {}).unwrap();
    let ask = |m: &mut VideoLlm, v: Visual| {
        m.ask(
            &v,
            "What happens?",
            &AskOptions::default(),
            &mut |_| {},
            &mut |_| {},
        )
        .block_on()
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let one = video_frames("qwen2vl").remove(0);
    let e = ask(&mut m, Visual::Video(vec![one]));
    assert!(
        e.contains("1 frame(s) is too short") && e.contains("image"),
        "{e}"
    );
    let tiny = Frame::new(20, 40, vec![7; 20 * 40 * 3]).unwrap();
    let e = ask(&mut m, Visual::Image(tiny));
    assert!(e.contains("too small") && e.contains("28"), "{e}");

    let short = variant("qwen2vl", "context", |c| {
        c["max_position_embeddings"] = 40.into();
        c["text_config"]["max_position_embeddings"] = 40.into();
    });
    let mut m = VideoLlm::load(&short, Device::Cpu, &mut |_, _| {}).unwrap();
    let e = ask(&mut m, Visual::Video(video_frames("qwen2vl")));
    assert!(
        e.contains("24 of them the video's") && e.contains("--num-frames") && e.contains("40"),
        "{e}"
    );

    let bad = variant("qwen2vl", "mrope", |c| {
        c["rope_scaling"]["mrope_section"] = serde_json::json!([2, 3, 2]);
        c["text_config"]["rope_scaling"]["mrope_section"] = serde_json::json!([2, 3, 2]);
    });
    let e = VideoLlm::load(&bad, Device::Cpu, &mut |_, _| {})
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mrope_section") && e.contains("6 rotary pairs"),
        "{e}"
    );
}

/// `linvt ask` on a Qwen2-VL model and a video file: sampled by time (2 fps by default, between
/// 4 and --max-frames frames, in pairs), `--fps` changes the count, `--max-pixels` below the
/// processor's minimum is refused.
#[test]
fn cli_asks_a_qwen2_vl_model_about_a_video_file() {
    use std::process::Command;
    let Some(ffmpeg) = common::ffmpeg() else {
        return;
    };
    let tmp = std::env::temp_dir().join(format!("linvt-qwen2vl-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    // 5 s at 10 fps, 84×56.
    let video = tmp.join("clip.mkv");
    let made = Command::new(ffmpeg)
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=84x56:rate=10:duration=5")
        .args(["-c:v", "png"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(made.success());
    let ask = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_linvt"))
            .args(["ask", "--backend", "cpu", "--json", "--max-new-tokens", "3"])
            .arg("--model")
            .arg(dir("qwen25vl"))
            .arg("--video")
            .arg(&video)
            .args(["--question", "What is shown?"])
            .args(extra)
            .output()
            .unwrap()
    };
    let frames_of = |o: &std::process::Output| -> u64 {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
        assert_eq!(v["token_ids"].as_array().unwrap().len(), 3);
        v["tokens"]["images"].as_u64().unwrap()
    };
    assert_eq!(frames_of(&ask(&[])), 10, "2 fps × 5 s");
    assert_eq!(frames_of(&ask(&["--fps", "1.6"])), 8, "1.6 fps × 5 s");
    assert_eq!(
        frames_of(&ask(&["--fps", "1"])),
        4,
        "1 fps × 5 s: 5, down to pairs"
    );
    assert_eq!(frames_of(&ask(&["--fps", "0.2"])), 4, "at least 4");
    assert_eq!(
        frames_of(&ask(&["--max-frames", "5"])),
        4,
        "at most 5, in pairs"
    );
    let o = ask(&["--max-pixels", "1000"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--max-pixels 1000"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// LinVT as a plug-in on Qwen2-VL (a seeded module of 8 queries for the 48-wide LLM): the video's
/// three temporal groups are its frames, its 8 tokens replace the 24 video pads; the CPU and GPU
/// agree with the tokens placed either way `video_positions` offers (as text, or as one grid
/// row). No reference exists for this pairing (the paper's LinVT-Qwen2-VL is unreleased).
#[test]
fn linvt_plugs_into_qwen2_vl() {
    use ::linvt::config::{ConfigPatch, VideoPositions};
    use ::linvt::vlm::engine::FinishReason;
    use ::linvt::vlm::synth::write_linvt_with;
    let g = golden("qwen2vl");
    let tmp = std::env::temp_dir().join(format!("linvt-qwen2vl-linvt-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let module = |name: &str, placement| {
        let p = tmp.join(name);
        let extra = ConfigPatch {
            video_positions: Some(placement),
            ..Default::default()
        };
        write_linvt_with(&p, 48, 8, 7, &extra).unwrap();
        p
    };
    let (text, row) = (
        module("text.safetensors", VideoPositions::Text),
        module("row.safetensors", VideoPositions::Row),
    );
    let mut devices = vec![Device::Cpu];
    if common::gpu().is_some() {
        devices.push(Device::Gpu);
    }
    let question = g.metadata().get("question.video").unwrap().clone();
    let video = Visual::Video(video_frames("qwen2vl"));
    let mut answers = Vec::new();
    for file in [&text, &row] {
        for device in &devices {
            let opts = LoadOptions {
                linvt: LinvtChoice::File(file.clone()),
                ..LoadOptions::new(*device)
            };
            let mut m = VideoLlm::load_with(&dir("qwen2vl"), &opts, &mut |_, _| {}).unwrap();
            let ask = AskOptions {
                max_new_tokens: 6,
                ..Default::default()
            };
            let a = m
                .ask(&video, &question, &ask, &mut |_| {}, &mut |_| {})
                .block_on()
                .unwrap();
            assert_eq!(a.video_path, Some(::linvt::vlm::model::VideoPath::Linvt));
            assert_eq!((a.visual_tokens, a.prompt_visual_tokens), (24, 8));
            let pads = a.prompt_ids.iter().filter(|&&t| t == 1001).count();
            assert_eq!(pads, 8, "{device:?}: 8 video pads in the prompt");
            assert_eq!(a.finish_reason, FinishReason::Length);
            answers.push((file.clone(), *device, a.token_ids));
        }
    }
    for pair in answers.chunks(devices.len()) {
        for (_, device, ids) in &pair[1..] {
            assert_eq!(ids, &pair[0].2, "{device:?} differs from the CPU");
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `linvt bench --model` on a Qwen2-VL model: a 224² clip of 8 frames → 4 temporal groups (at
/// the fixture's small pixel budget), through the host's own video path, every figure reported.
#[test]
fn bench_model_runs_a_qwen2_vl_model() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_linvt"))
        .args([
            "bench",
            "--backend",
            "cpu",
            "--frames",
            "8",
            "--json",
            "--model",
        ])
        .arg(dir("qwen2vl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let (frames, tokens) = (
        v["frames"].as_u64().unwrap(),
        v["vision_tokens"].as_u64().unwrap(),
    );
    assert_eq!(frames, 8);
    assert_eq!(
        v["linvt_tokens"].as_u64().unwrap(),
        tokens,
        "no LinVT: every token"
    );
    assert!(
        tokens > 0 && tokens % 4 == 0,
        "4 temporal groups of equal grids"
    );
    for key in [
        "vision_frames_per_s",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
    ] {
        let x = v[key].as_f64().unwrap_or(f64::NAN);
        assert!(x > 0.0 && x.is_finite(), "{key} = {x} in {stdout}");
    }
    assert_eq!(v["video_path"], "frames");
}

/// The processor's settings come from `preprocessor_config.json` and
/// `video_preprocessor_config.json` (as transformers 4.x saves them) or, when those are absent,
/// from `processor_config.json`'s `image_processor` / `video_processor` (transformers 5).
#[test]
fn processor_settings_come_from_either_layout() {
    use ::linvt::vlm::model::open_model_dir;
    let d = variant("qwen2vl", "v5-processor", |_| {});
    let (cfg, _) = open_model_dir(&d).unwrap();
    let p = cfg.qwen2_vl().unwrap().processor.clone();
    assert_eq!((p.min_pixels, p.max_pixels), (3136, 10976), "the 4.x files");
    for f in ["preprocessor_config.json", "video_preprocessor_config.json"] {
        let _ = std::fs::remove_file(d.join(f));
    }
    let combined = serde_json::json!({
        "image_processor": {"min_pixels": 3136, "max_pixels": 9999},
        "video_processor": {"size": {"shortest_edge": 4000, "longest_edge": 7777}},
    });
    std::fs::write(d.join("processor_config.json"), combined.to_string()).unwrap();
    let (cfg, _) = open_model_dir(&d).unwrap();
    let p = &cfg.qwen2_vl().unwrap().processor;
    assert_eq!((p.min_pixels, p.max_pixels), (3136, 9999));
    assert_eq!((p.video_min_pixels, p.video_max_pixels), (4000, 7777));
    let _ = std::fs::remove_dir_all(d);
}
