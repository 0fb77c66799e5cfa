//! Video-LLMs from llama.cpp's GGUF files: tests/fixtures/qwen2vl-gguf (a tiny random Qwen2-VL,
//! its decoder converted by llama.cpp's own `convert_hf_to_gguf.py` to F16 and Q8_0 and quantized
//! by its `llama-quantize` to Q4_K_M, its vision tower to an F16 mmproj) and
//! tests/fixtures/internvl-gguf (a tiny random InternVL with a Qwen2 LLM, F16 and Q8_0):
//! - the F16 pair is the checkpoint: same tensor names, shapes and values, same config, the
//!   rebuilt tokenizer encodes as tokenizer.json does, and it answers with the same ids;
//! - quantized files answer, on the CPU and the GPU, with the greedy ids of the same weights
//!   dequantized (by `linvt::quant`, bit-exact with the `gguf` package) and run from
//!   safetensors; the GPU keeps their Q8_0 / Q4_K / Q6_K blocks as they are;
//! - wrong, missing or damaged files are clear errors.
mod common;

use pollster::FutureExt as _;
use std::path::{Path, PathBuf};

use linvt::vlm::model::{open_model, AskOptions, LoadOptions, VideoLlm, Visual};
use linvt::vlm::preprocess::Frame;
use linvt::vlm::tokenizer::Tokenizer;
use linvt::Device;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2vl-gguf")
}

fn mmproj() -> PathBuf {
    fixture().join("mmproj-f16.gguf")
}

/// The processor's pixel limits are not in GGUF files: the checkpoint's own, for both.
const MAX_PIXELS: usize = 10976;

fn picture() -> Visual {
    let (w, h) = (90, 50);
    let rgb = (0..w * h * 3).map(|i| ((i * 37) % 251) as u8).collect();
    Visual::Image(Frame::new(w, h, rgb).unwrap())
}

fn clip() -> Visual {
    common::moving_bar_clip()
}

fn load(model: &Path, device: Device) -> VideoLlm {
    load_with(model, &mmproj(), device)
}

/// The CPU multiplies blocks with f32 activations here (`Activations::F32`): the files'
/// dequantized weights are the expectation, which int8 activations only approximate (their
/// bound is checked op by op in `cpu::blocks`).
fn load_with(model: &Path, mmproj: &Path, device: Device) -> VideoLlm {
    let opts = LoadOptions {
        mmproj: Some(mmproj.to_path_buf()),
        cpu_activations: linvt::ops::Activations::F32,
        ..LoadOptions::new(device)
    };
    VideoLlm::load_with(model, &opts, &mut |_, _| {}).unwrap()
}

fn internvl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/internvl-gguf")
}

fn greedy(m: &mut VideoLlm, visual: &Visual) -> Vec<u32> {
    let opts = AskOptions {
        max_new_tokens: 10,
        max_pixels: Some(MAX_PIXELS),
        ..Default::default()
    };
    m.ask(visual, "What is shown?", &opts, &mut |_| {}, &mut |_| {})
        .block_on()
        .unwrap()
        .token_ids
}

/// `got` holds exactly `want`'s tensor names, each with the same shape and the same bits.
fn assert_same_tensors(got: &linvt::weights::TensorStore, want: &linvt::weights::TensorStore) {
    let mut names: Vec<&str> = want.keys().collect();
    let mut got_names: Vec<&str> = got.keys().collect();
    names.sort_unstable();
    got_names.sort_unstable();
    assert_eq!(got_names, names, "tensor names");
    let bits = |t: &linvt::Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for k in names {
        let (a, b) = (want.get(k).unwrap().unwrap(), got.get(k).unwrap().unwrap());
        assert_eq!(b.shape(), a.shape(), "{k}");
        assert!(bits(&b) == bits(&a), "{k}: values differ");
    }
}

#[test]
fn f16_pair_holds_the_checkpoint_tensor_for_tensor() {
    let (hf_cfg, hf) = open_model(&fixture().join("hf"), None).unwrap();
    let (cfg, gguf) = open_model(&fixture().join("model-f16.gguf"), Some(&mmproj())).unwrap();
    assert_same_tensors(&gguf, &hf);
    // The config rebuilt from the metadata is the checkpoint's, but for what GGUF files do
    // not hold: the processor's pixel limits (Qwen2-VL's defaults then) and the generation
    // config's second stop id.
    assert_eq!(cfg.llm.hidden_size, hf_cfg.llm.hidden_size);
    let (mut a, mut b) = (hf_cfg.clone(), cfg.clone());
    for c in [&mut a, &mut b] {
        c.llm.eos_token_ids.clear();
        if let linvt::vlm::config::Host::Qwen2Vl(q) = &mut c.host {
            q.processor = Default::default();
        }
    }
    assert_eq!(b, a);
    assert_eq!(cfg.llm.eos_token_ids, vec![990], "<|im_end|>");
}

#[test]
fn tokenizer_rebuilt_from_the_vocabulary_encodes_as_tokenizer_json() {
    let want = Tokenizer::from_dir(&fixture().join("hf")).unwrap();
    let got = Tokenizer::from_dir(&fixture().join("model-q4_k_m.gguf")).unwrap();
    for text in [
        "What is shown?",
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe it.<|im_end|>\n",
        "  multiple   spaces\n\n\tand tabs 12345 numbers",
        "Ünïcödé — “quotes” and émojis 🙂, CJK 中文",
        "don't I'LL we've",
    ] {
        assert_eq!(
            got.encode(text).unwrap(),
            want.encode(text).unwrap(),
            "{text:?}"
        );
        let ids = want.encode(text).unwrap();
        assert_eq!(
            got.decode_with_special(&ids).unwrap(),
            want.decode_with_special(&ids).unwrap()
        );
    }
}

/// The F16 pair answers as the checkpoint on the CPU, where `auto` keeps its matrices in f16
/// (exact: they are f16 values); on a GPU with SHADER_F16 too, and answers alike.
#[test]
fn f16_pair_answers_as_the_checkpoint() {
    let mut hf = load(&fixture().join("hf"), Device::Cpu);
    let mut gguf = load(&fixture().join("model-f16.gguf"), Device::Cpu);
    assert_eq!(gguf.cpu_weight_storage(), Some(linvt::WeightStorage::F16));
    let mut gpu = common::gpu().map(|ctx| {
        let m = load(&fixture().join("model-f16.gguf"), Device::Gpu);
        let want = match ctx.has_f16() {
            true => linvt::WeightStorage::F16,
            false => linvt::WeightStorage::F32,
        };
        assert_eq!(m.gpu_weight_storage(), Some(want));
        m
    });
    for v in [picture(), clip()] {
        let want = greedy(&mut hf, &v);
        assert_eq!(greedy(&mut gguf, &v), want);
        if let Some(gpu) = gpu.as_mut() {
            assert_eq!(greedy(gpu, &v), want, "on the GPU");
        }
    }
}

/// A model directory holding the GGUF pair's weights widened to f32 under their checkpoint
/// names (and the checkpoint's other files, from `fixture`/hf): what the quantized file "means".
fn dequantized_copy(fixture: &Path, model: &str) -> PathBuf {
    let tag = fixture.file_name().unwrap().to_string_lossy();
    let dir = std::env::temp_dir().join(format!("linvt-{tag}-{model}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture.join("hf")).unwrap() {
        let p = entry.unwrap().path();
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ["json", "txt", "jinja"].contains(&ext) {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let mmproj = fixture.join("mmproj-f16.gguf");
    let (_, store) = open_model(&fixture.join(model), Some(&mmproj)).unwrap();
    let mut tensors = Vec::new();
    for k in store.keys() {
        let t = store.get(k).unwrap().unwrap().widened().unwrap();
        tensors.push((k.to_string(), t.shape().to_vec(), t.data().to_vec()));
    }
    common::write_f32_safetensors(&dir.join("model.safetensors"), &tensors, None);
    dir
}

#[test]
fn quantized_files_answer_as_their_dequantized_weights() {
    for (model, q_proj, v_proj) in [
        ("model-q8_0.gguf", "Q8_0", "Q8_0"),
        ("model-q4_k_m.gguf", "Q4_K", "Q6_K"),
    ] {
        // The blocks reach the executor as they are in the file (Q4_K_M mixes types).
        let (_, store) = open_model(&fixture().join(model), Some(&mmproj())).unwrap();
        let ty = |k: &str| {
            let t = store.get(k).unwrap().unwrap();
            t.block_rows().unwrap()[0].ty.name().unwrap()
        };
        assert_eq!(ty("model.layers.0.self_attn.q_proj.weight"), q_proj);
        assert_eq!(ty("model.layers.0.self_attn.v_proj.weight"), v_proj);
        let dir = dequantized_copy(&fixture(), model);
        let mut want_model = load(&dir, Device::Cpu);
        let mut cpu = load(&fixture().join(model), Device::Cpu);
        let mut gpu = common::gpu().map(|_| load(&fixture().join(model), Device::Gpu));
        for v in [picture(), clip()] {
            let want = greedy(&mut want_model, &v);
            assert_eq!(greedy(&mut cpu, &v), want, "{model} on the CPU");
            if let Some(gpu) = gpu.as_mut() {
                assert_eq!(greedy(gpu, &v), want, "{model} on the GPU");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// InternVL (a `qwen2` decoder + an `internvl` mmproj): the F16 pair is the remote-code
/// checkpoint tensor for tensor (the ViT's q/k/v fused back, LayerScale and embeddings renamed)
/// with the same config (template from the Jinja template, tiling from the mmproj's keys), and
/// answers as it; the Q8_0 decoder answers as its dequantized weights on the CPU and the GPU.
#[test]
fn internvl_pair_is_the_checkpoint_and_answers_as_it() {
    let mm = internvl().join("mmproj-f16.gguf");
    let (hf_cfg, hf) = open_model(&internvl().join("hf"), None).unwrap();
    let (cfg, gguf) = open_model(&internvl().join("model-f16.gguf"), Some(&mm)).unwrap();
    assert_same_tensors(&gguf, &hf);
    let (mut a, mut b) = (hf_cfg, cfg);
    a.llm.eos_token_ids.clear();
    b.llm.eos_token_ids.clear();
    assert_eq!(b, a);
    let mut hf = load_with(&internvl().join("hf"), &mm, Device::Cpu);
    let mut f16 = load_with(&internvl().join("model-f16.gguf"), &mm, Device::Cpu);
    let dir = dequantized_copy(&internvl(), "model-q8_0.gguf");
    let mut want_q8 = load_with(&dir, &mm, Device::Cpu);
    let q8 = internvl().join("model-q8_0.gguf");
    let mut cpu_q8 = load_with(&q8, &mm, Device::Cpu);
    let mut gpu_q8 = common::gpu().map(|_| load_with(&q8, &mm, Device::Gpu));
    for v in [picture(), clip()] {
        assert_eq!(greedy(&mut f16, &v), greedy(&mut hf, &v), "F16");
        let want = greedy(&mut want_q8, &v);
        assert_eq!(greedy(&mut cpu_q8, &v), want, "Q8_0 on the CPU");
        if let Some(gpu) = gpu_q8.as_mut() {
            assert_eq!(greedy(gpu, &v), want, "Q8_0 on the GPU");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn err_of(model: &Path, mmproj: Option<&Path>) -> String {
    match open_model(model, mmproj) {
        Ok(_) => panic!("{} should not open", model.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn wrong_missing_or_damaged_files_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("linvt-gguf-errors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.gguf");
    std::fs::copy(fixture().join("model-q8_0.gguf"), &model).unwrap();
    // No mmproj beside it, none given.
    let e = err_of(&model, None);
    assert!(e.contains("--mmproj"), "{e}");
    // Beside it: found.
    std::fs::copy(mmproj(), dir.join("mmproj-model-f16.gguf")).unwrap();
    open_model(&model, None).unwrap();
    // The two files swapped.
    let e = err_of(&mmproj(), Some(&model));
    assert!(e.contains("is an mmproj"), "{e}");
    let e = err_of(&model, Some(&model));
    assert!(e.contains("not an mmproj file"), "{e}");
    // Cut short: the header's promises are checked against the file.
    let bytes = std::fs::read(fixture().join("model-f16.gguf")).unwrap();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(&cut, Some(&mmproj()));
    assert!(e.contains("cut.gguf") && e.contains("GGUF"), "{e}");
    // A tensor in a type this crate does not implement (IQ2_XXS, id 16) is named.
    let name = b"blk.0.attn_q.weight";
    let at = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("tensor info");
    // After the name: n_dims (u32, 2), two u64 dims, then the type id (u32).
    let ty_at = at + name.len() + 4 + 16;
    assert_eq!(
        bytes[ty_at..ty_at + 4],
        1u32.to_le_bytes(),
        "F16 in the F16 file"
    );
    let mut odd = bytes.clone();
    odd[ty_at..ty_at + 4].copy_from_slice(&16u32.to_le_bytes());
    let path = dir.join("iq.gguf");
    std::fs::write(&path, &odd).unwrap();
    let e = err_of(&path, Some(&mmproj()));
    assert!(e.contains("blk.0.attn_q.weight"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
