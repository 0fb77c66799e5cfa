//! InternVL checkpoints as published: a plain checkpoint (no `linvt_config`, no LinVT weights)
//! with a LinVT plug-in file computes what the LinVT checkpoint computes (the released code's
//! greedy ids); without LinVT a video takes the host's own `Frame{i}: <img>…</img>` path; an
//! image is tiled; a LoRA adapter is merged; Phi-3 is one more weight layout; and every
//! mistake a user can make here is a clear error. CPU and GPU executors alike.

mod common;

use pollster::FutureExt as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ::linvt::vlm::model::{AskOptions, LinvtChoice, LoadOptions, VideoLlm, VideoPath, Visual};
use ::linvt::vlm::preprocess::Frame;
use ::linvt::weights::TensorStore;
use ::linvt::Device;
use common::{tiny_fixture, tiny_golden_clip, tiny_variant, write_f32_safetensors};

fn is_linvt(key: &str) -> bool {
    key.starts_with("linVT.") || key == "query_tokens"
}

/// The tiny LinVT checkpoint split in two: a plain InternVL2 checkpoint (its config without
/// `linvt_config`, its weights without LinVT's) and a LinVT module file (`linVT.*`,
/// `query_tokens`, the config in the metadata, as `condense` reads it).
fn split_checkpoint(name: &str) -> (PathBuf, PathBuf) {
    let base = tiny_variant(
        name,
        |k, s, v| {
            if is_linvt(k) {
                vec![]
            } else {
                vec![(k.to_string(), s.to_vec(), v)]
            }
        },
        |c| {
            let obj = c.as_object_mut().unwrap();
            obj.remove("linvt_config");
            obj.remove("num_video_query_token");
        },
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny_fixture().join("config.json")).unwrap())
            .unwrap();
    let store = TensorStore::open(&tiny_fixture().join("model.safetensors")).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = store
        .keys()
        .filter(|k| is_linvt(k))
        .map(|k| {
            let t = store.get(k).unwrap().unwrap();
            (k.to_string(), t.shape().to_vec(), t.data().to_vec())
        })
        .collect();
    let meta: HashMap<String, String> =
        [("linvt_config".to_string(), cfg["linvt_config"].to_string())]
            .into_iter()
            .collect();
    let plugin = base.join("linvt-module.safetensors");
    write_f32_safetensors(&plugin, &tensors, Some(meta));
    (base, plugin)
}

/// The devices to run on: the CPU, and the GPU when there is an adapter (required in CI).
fn devices() -> Vec<Device> {
    let mut d = vec![Device::Cpu];
    if common::gpu().is_some() {
        d.push(Device::Gpu);
    }
    d
}

fn load(dir: &Path, device: Device, linvt: LinvtChoice, lora: Option<PathBuf>) -> VideoLlm {
    let opts = LoadOptions {
        linvt,
        lora,
        ..LoadOptions::new(device)
    };
    VideoLlm::load_with(dir, &opts, &mut |_, _| {}).unwrap()
}

fn load_err(dir: &Path, linvt: LinvtChoice, lora: Option<PathBuf>) -> String {
    let opts = LoadOptions {
        linvt,
        lora,
        ..LoadOptions::new(Device::Cpu)
    };
    match VideoLlm::load_with(dir, &opts, &mut |_, _| {}) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn ask(
    m: &mut VideoLlm,
    visual: &Visual,
    question: &str,
    max_new_tokens: usize,
) -> linvt::vlm::model::Answer {
    let opts = AskOptions {
        max_new_tokens,
        ..Default::default()
    };
    m.ask(visual, question, &opts, &mut |_| {}, &mut |_| {})
        .block_on()
        .unwrap()
}

#[test]
fn a_plugin_on_a_plain_checkpoint_gives_the_released_greedy_ids() {
    let (base, plugin) = split_checkpoint("plugin");
    let (frames, question, want) = tiny_golden_clip();
    for device in devices() {
        let mut m = load(&base, device, LinvtChoice::File(plugin.clone()), None);
        assert!(m.has_linvt());
        let a = ask(
            &mut m,
            &Visual::Video(frames.clone()),
            &question,
            want.len(),
        );
        assert_eq!(a.token_ids, want, "{device:?}");
        assert_eq!(a.video_path, Some(VideoPath::Linvt));
        assert_eq!(
            (a.images, a.visual_tokens, a.prompt_visual_tokens),
            (6, 24, 8)
        );
    }
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn without_linvt_a_video_takes_the_hosts_own_frames_path() {
    let (base, _plugin) = split_checkpoint("frames");
    let (frames, question, _) = tiny_golden_clip();
    let frames = frames[..3].to_vec();
    let mut answers = Vec::new();
    for device in devices() {
        let mut plain = load(&base, device, LinvtChoice::Auto, None);
        assert!(!plain.has_linvt());
        let a = ask(&mut plain, &Visual::Video(frames.clone()), &question, 6);
        assert_eq!(a.video_path, Some(VideoPath::Frames));
        // Every frame's 4 tokens in its own <img>…</img>, after `Frame{i}: `.
        assert_eq!(
            (a.images, a.visual_tokens, a.prompt_visual_tokens),
            (3, 12, 12)
        );
        let tok = plain.tokenizer();
        let text = tok.decode_with_special(&a.prompt_ids).unwrap();
        let ctx4 = "<IMG_CONTEXT>".repeat(4);
        let want = format!(
            "<|im_start|>user\nFrame1: <img>{ctx4}</img>\nFrame2: <img>{ctx4}</img>\nFrame3: <img>{ctx4}</img>\n{question}<|im_end|><|im_start|>assistant\n"
        );
        assert!(text.ends_with(&want), "{text}");
        // --no-linvt on the LinVT checkpoint is the same model without its LinVT.
        let mut off = load(&tiny_fixture(), device, LinvtChoice::Off, None);
        let b = ask(&mut off, &Visual::Video(frames.clone()), &question, 6);
        assert_eq!(a.token_ids, b.token_ids, "{device:?}");
        answers.push(a.token_ids);
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "GPU and CPU ids differ: {answers:?}"
    );
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn an_image_is_tiled_as_internvl_does() {
    // 112×56 at tile 56, up to 6 tiles: the 2×1 grid, no thumbnail (the tiny config has none).
    let rgb = (0..112 * 56 * 3).map(|i| ((i * 7) % 251) as u8).collect();
    let image = Visual::Image(Frame::new(112, 56, rgb).unwrap());
    let mut ids = Vec::new();
    for device in devices() {
        let mut m = load(&tiny_fixture(), device, LinvtChoice::Auto, None);
        let opts = AskOptions {
            max_new_tokens: 6,
            max_tiles: Some(6),
            ..Default::default()
        };
        let a = m
            .ask(&image, "What is this?", &opts, &mut |_| {}, &mut |_| {})
            .block_on()
            .unwrap();
        assert_eq!(a.video_path, None);
        assert_eq!((a.images, a.prompt_visual_tokens), (2, 8));
        // Without --max-tiles the tiny config (dynamic_image_size false) uses one tile.
        let one = ask(&mut m, &image, "What is this?", 1);
        assert_eq!(one.images, 1);
        ids.push(a.token_ids);
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "GPU and CPU ids differ: {ids:?}"
    );
}

/// One adapted module: its path as PEFT names it, A's shape (r, in) and values, B's shape
/// (out, r) and values.
type LoraPair<'a> = (&'a str, Vec<usize>, Vec<f32>, Vec<usize>, Vec<f32>);

/// Writes a PEFT adapter directory of `pairs`.
fn write_adapter(dir: &Path, r: usize, alpha: f32, rslora: bool, pairs: &[LoraPair]) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": rslora,
        "target_modules": ["q_proj", "down_proj"], "bias": "none", "fan_in_fan_out": false,
    });
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    let mut tensors = Vec::new();
    for (module, a_shape, a, b_shape, b) in pairs {
        tensors.push((
            format!("base_model.model.{module}.lora_A.weight"),
            a_shape.clone(),
            a.clone(),
        ));
        tensors.push((
            format!("base_model.model.{module}.lora_B.weight"),
            b_shape.clone(),
            b.clone(),
        ));
    }
    write_f32_safetensors(&dir.join("adapter_model.safetensors"), &tensors, None);
}

#[test]
fn a_lora_adapter_is_merged_as_w_plus_scaled_b_a() {
    let (r, alpha) = (2, 3.0f32);
    let q = "language_model.model.layers.0.self_attn.q_proj.weight";
    let down = "language_model.model.layers.1.mlp.down_proj.weight";
    let (a_q, b_q) = (
        common::rand_vec(1, r * 64, 0.3),
        common::rand_vec(2, 64 * r, 0.3),
    );
    let (a_d, b_d) = (
        common::rand_vec(3, r * 128, 0.3),
        common::rand_vec(4, 64 * r, 0.3),
    );
    // The merged weights computed here in f64: W + (alpha / r)·B·A.
    let merged = |w: &[f32], a: &[f32], b: &[f32], out: usize, inp: usize| -> Vec<f32> {
        let s = alpha as f64 / r as f64;
        (0..out * inp)
            .map(|i| {
                let (o, j) = (i / inp, i % inp);
                let d: f64 = (0..r)
                    .map(|k| b[o * r + k] as f64 * a[k * inp + j] as f64)
                    .sum();
                (w[i] as f64 + s * d) as f32
            })
            .collect()
    };
    let (aq, bq, ad, bd) = (a_q.clone(), b_q.clone(), a_d.clone(), b_d.clone());
    let want_dir = tiny_variant(
        "lora-merged",
        move |k, s, v| {
            let v = match k {
                _ if k == q => merged(&v, &aq, &bq, 64, 64),
                _ if k == down => merged(&v, &ad, &bd, 64, 128),
                _ => v,
            };
            vec![(k.to_string(), s.to_vec(), v)]
        },
        |_| {},
    );
    // An adapter trained on the bare LLM names its modules without `language_model.`.
    let adapter = want_dir.join("adapter");
    write_adapter(
        &adapter,
        r,
        alpha,
        false,
        &[
            (
                "model.layers.0.self_attn.q_proj",
                vec![r, 64],
                a_q,
                vec![64, r],
                b_q,
            ),
            (
                "model.layers.1.mlp.down_proj",
                vec![r, 128],
                a_d,
                vec![64, r],
                b_d,
            ),
        ],
    );
    let (frames, question, golden) = tiny_golden_clip();
    let visual = Visual::Video(frames);
    for device in devices() {
        let mut with_lora = load(
            &tiny_fixture(),
            device,
            LinvtChoice::Auto,
            Some(adapter.clone()),
        );
        let mut merged_by_hand = load(&want_dir, device, LinvtChoice::Auto, None);
        let a = ask(&mut with_lora, &visual, &question, 8);
        let b = ask(&mut merged_by_hand, &visual, &question, 8);
        assert_eq!(a.token_ids, b.token_ids, "{device:?}");
        assert_ne!(a.token_ids, golden, "the adapter must change the answer");
    }
    let _ = std::fs::remove_dir_all(want_dir);
}

#[test]
fn lora_mistakes_are_errors_naming_the_tensor() {
    let dir = std::env::temp_dir().join(format!("linvt-lora-errors-{}", std::process::id()));
    let missing = dir.join("missing-target");
    write_adapter(
        &missing,
        2,
        4.0,
        true,
        &[(
            "model.layers.7.self_attn.q_proj",
            vec![2, 64],
            vec![0.0; 128],
            vec![64, 2],
            vec![0.0; 128],
        )],
    );
    let e = load_err(&tiny_fixture(), LinvtChoice::Auto, Some(missing));
    assert!(
        e.contains("model.layers.7.self_attn.q_proj") && e.contains("no weight"),
        "{e}"
    );
    let shape = dir.join("bad-shape");
    write_adapter(
        &shape,
        2,
        4.0,
        false,
        &[(
            "model.layers.0.mlp.down_proj",
            vec![2, 64],
            vec![0.0; 128],
            vec![64, 2],
            vec![0.0; 128],
        )],
    );
    let e = load_err(&tiny_fixture(), LinvtChoice::Auto, Some(shape));
    assert!(
        e.contains("language_model.model.layers.0.mlp.down_proj.weight") && e.contains("[64, 128]"),
        "{e}"
    );
    let e = load_err(
        &tiny_fixture(),
        LinvtChoice::Auto,
        Some(dir.join("nowhere")),
    );
    assert!(e.contains("adapter_config.json"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn linvt_mistakes_are_errors_that_say_what_is_missing() {
    let (base, plugin) = split_checkpoint("linvt-errors");
    // A file that is not a LinVT module.
    let e = load_err(
        &base,
        LinvtChoice::File(base.join("model.safetensors")),
        None,
    );
    assert!(e.contains("holds no LinVT module"), "{e}");
    // A LinVT module of another width.
    let narrow = base.join("narrow.safetensors");
    linvt::vlm::synth::write_linvt(&narrow, 32, 8, 1).unwrap();
    let e = load_err(&base, LinvtChoice::File(narrow), None);
    assert!(
        e.contains("width 32") && e.contains("hidden size 64"),
        "{e}"
    );
    // A config with linvt_config whose weights lack LinVT.
    let e = {
        let cfg_with_linvt = tiny_fixture().join("config.json");
        std::fs::copy(cfg_with_linvt, base.join("config.json")).unwrap();
        load_err(&base, LinvtChoice::Auto, None)
    };
    assert!(
        e.contains("holds no LinVT module") && e.contains("--linvt"),
        "{e}"
    );
    // ... which still runs without LinVT, or with the plug-in.
    load(&base, Device::Cpu, LinvtChoice::Off, None);
    load(&base, Device::Cpu, LinvtChoice::File(plugin), None);
    let _ = std::fs::remove_dir_all(base);
}

/// Phi-3 is the Qwen2 stack with q/k/v and gate/up fused and no biases: the tiny model with
/// its q/k/v biases zeroed, re-packed in Phi-3's names, must give the same ids.
#[test]
fn phi3_layout_computes_what_the_qwen2_stack_computes() {
    fn fuse(
        pending: &std::cell::RefCell<Vec<(String, Vec<f32>)>>,
        k: &str,
        s: &[usize],
        v: Vec<f32>,
    ) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let Some(rest) = k.strip_prefix("language_model.model.layers.") else {
            return vec![(k.to_string(), s.to_vec(), v)];
        };
        let layer = rest.split('.').next().unwrap();
        let pre = format!("language_model.model.layers.{layer}");
        if k.ends_with("_proj.bias") {
            return vec![];
        }
        // Keys arrive sorted: mlp.down, mlp.gate, mlp.up, …, self_attn.k, o, q, v.
        let part = |name: &str| k.ends_with(&format!("{name}.weight"));
        if part("gate_proj") || part("self_attn.k_proj") || part("self_attn.q_proj") {
            pending.borrow_mut().push((k.to_string(), v));
            return vec![];
        }
        let take = |name: &str| {
            let mut p = pending.borrow_mut();
            let i = p.iter().position(|(n, _)| n.ends_with(name)).unwrap();
            p.remove(i).1
        };
        if part("up_proj") {
            let mut gate_up = take("gate_proj.weight");
            gate_up.extend(v);
            return vec![(
                format!("{pre}.mlp.gate_up_proj.weight"),
                vec![256, 64],
                gate_up,
            )];
        }
        if part("self_attn.v_proj") {
            let mut qkv = take("q_proj.weight");
            qkv.extend(take("k_proj.weight"));
            qkv.extend(v);
            return vec![(
                format!("{pre}.self_attn.qkv_proj.weight"),
                vec![128, 64],
                qkv,
            )];
        }
        vec![(k.to_string(), s.to_vec(), v)]
    }
    let pending = std::cell::RefCell::new(Vec::new());
    let phi3 = tiny_variant(
        "phi3",
        |k, s, v| fuse(&pending, k, s, v),
        |c| c["llm_config"]["architectures"] = serde_json::json!(["Phi3ForCausalLM"]),
    );
    let zero_bias = tiny_variant(
        "qwen2-no-bias",
        |k, s, v| {
            let v = if k.ends_with("_proj.bias") && k.contains("self_attn") {
                vec![0.0; v.len()]
            } else {
                v
            };
            vec![(k.to_string(), s.to_vec(), v)]
        },
        |_| {},
    );
    let (frames, question, _) = tiny_golden_clip();
    let visual = Visual::Video(frames);
    for device in devices() {
        let a = ask(
            &mut load(&phi3, device, LinvtChoice::Auto, None),
            &visual,
            &question,
            8,
        );
        let b = ask(
            &mut load(&zero_bias, device, LinvtChoice::Auto, None),
            &visual,
            &question,
            8,
        );
        assert_eq!(a.token_ids, b.token_ids, "{device:?}");
    }
    let _ = std::fs::remove_dir_all(phi3);
    let _ = std::fs::remove_dir_all(zero_bias);
}

/// Issue finding: a GPU `ask` never read LinVT's top-k status, so non-finite scores answered
/// silently. An over-scaled (finite) vision weight must stop both executors with one error.
#[test]
fn non_finite_linvt_scores_stop_both_executors() {
    let dir = tiny_variant(
        "overflow",
        |k, s, v| {
            let v = if k == "vision_model.encoder.layers.0.mlp.fc2.weight" {
                v.iter().map(|x| x * 1e38).collect()
            } else {
                v
            };
            vec![(k.to_string(), s.to_vec(), v)]
        },
        |_| {},
    );
    let (frames, question, _) = tiny_golden_clip();
    let mut errors = Vec::new();
    for device in devices() {
        let mut m = load(&dir, device, LinvtChoice::Auto, None);
        let opts = AskOptions {
            max_new_tokens: 4,
            ..Default::default()
        };
        let e = m
            .ask(
                &Visual::Video(frames.clone()),
                &question,
                &opts,
                &mut |_| {},
                &mut |_| {},
            )
            .block_on()
            .expect_err("non-finite scores must be an error")
            .to_string();
        assert!(e.contains("not finite"), "{device:?}: {e}");
        errors.push(e);
    }
    assert!(errors.windows(2).all(|w| w[0] == w[1]), "{errors:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// An overflow inside the LLM (a `down_proj` scaled by 1e38: the finding that answered
/// "!!!!!!!!" with exit 0), or inside the vision encoder on the image path (no LinVT top-k to
/// notice it: id 999 × 8 before), stops both executors with the same error: every norm checks
/// its rows' mean square (on the GPU the norm kernels lower a health word that is read back
/// with the next results), so the overflow cannot pass as zeros.
#[test]
fn overflow_in_the_llm_or_the_image_path_stops_both_executors() {
    let scaled = |target: &'static str| {
        move |k: &str, s: &[usize], v: Vec<f32>| {
            let v = if k == target {
                v.iter().map(|x| x * 1e38).collect()
            } else {
                v
            };
            vec![(k.to_string(), s.to_vec(), v)]
        }
    };
    let llm = tiny_variant(
        "llm-overflow",
        scaled("language_model.model.layers.0.mlp.down_proj.weight"),
        |_| {},
    );
    let vit = tiny_variant(
        "vit-overflow",
        scaled("vision_model.encoder.layers.0.mlp.fc2.weight"),
        |_| {},
    );
    let (frames, question, _) = tiny_golden_clip();
    for (dir, visual) in [
        (&llm, Visual::Video(frames.clone())),
        (&vit, Visual::Image(frames[0].clone())),
    ] {
        let mut errors = Vec::new();
        for device in devices() {
            let mut m = load(dir, device, LinvtChoice::Auto, None);
            let opts = AskOptions {
                max_new_tokens: 4,
                ..Default::default()
            };
            let e = m
                .ask(&visual, &question, &opts, &mut |_| {}, &mut |_| {})
                .block_on()
                .expect_err("an overflow must be an error")
                .to_string();
            assert!(e.contains("overflowed float32"), "{device:?}: {e}");
            errors.push(e);
        }
        assert!(errors.windows(2).all(|w| w[0] == w[1]), "{errors:?}");
    }
    let _ = std::fs::remove_dir_all(llm);
    let _ = std::fs::remove_dir_all(vit);
}

/// Three models decoding on the GPU at once, on three threads, answer as the released code
/// does. Each executor owns its buffer pool: with one process-wide pool a thread could take a
/// buffer another had dropped before its encoder ran, and the golden tests of
/// golden_internvl.rs, run in parallel, failed about one run in three (a GPU greedy id off
/// from step 7). This test did not reproduce that interleaving in three tries; it guards the
/// concurrent use itself.
#[test]
fn gpu_models_on_three_threads_answer_as_alone() {
    if common::gpu().is_none() {
        return;
    }
    let (frames, question, want) = tiny_golden_clip();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (frames, question) = (frames.clone(), question.clone());
            std::thread::spawn(move || {
                let mut m = load(&tiny_fixture(), Device::Gpu, LinvtChoice::Auto, None);
                (0..6)
                    .map(|_| ask(&mut m, &Visual::Video(frames.clone()), &question, 8).token_ids)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for ids in t.join().unwrap() {
            assert_eq!(ids, want);
        }
    }
}
