//! InternLM2 support: the tiny Qwen2 model re-packed in InternLM2's layout (names, packed
//! `wqkv` per KV head as the Hugging Face modeling code unpacks it, no q/k/v biases) must
//! compute the same logits and tokens as the Qwen2 model with its q/k/v biases set to zero.

mod common;

use pollster::FutureExt as _;
use std::path::{Path, PathBuf};

use ::linvt::cpu::CpuOps;
use ::linvt::ops::VlmOps;
use ::linvt::vlm::engine::{Engine, EngineSources, GenerateOptions};
use ::linvt::vlm::model::open_model_dir;
use ::linvt::weights::TensorStore;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-internvl2")
}

use common::tiny_variant as variant;

const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 16;
const HIDDEN: usize = 64;

/// The Qwen2 names → InternLM2 names; q/k/v are packed into `wqkv` when `v_proj` arrives
/// (keys are visited sorted: k_proj, o_proj, q_proj, v_proj).
fn to_internlm2(
    pending: &std::cell::RefCell<Vec<(String, Vec<f32>)>>,
    k: &str,
    s: &[usize],
    v: Vec<f32>,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let lm = "language_model.model.";
    let Some(rest) = k.strip_prefix(lm) else {
        if k == "language_model.lm_head.weight" {
            return vec![("language_model.output.weight".into(), s.to_vec(), v)];
        }
        return vec![(k.to_string(), s.to_vec(), v)];
    };
    if k.ends_with("_proj.bias") {
        return vec![];
    }
    let rename = |from: &str, to: &str| {
        vec![(
            format!("{lm}{}", rest.replace(from, to)),
            s.to_vec(),
            v.clone(),
        )]
    };
    if rest == "embed_tokens.weight" {
        return vec![(format!("{lm}tok_embeddings.weight"), s.to_vec(), v)];
    }
    for (from, to) in [
        ("input_layernorm", "attention_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("self_attn.o_proj", "attention.wo"),
        ("mlp.gate_proj", "feed_forward.w1"),
        ("mlp.up_proj", "feed_forward.w3"),
        ("mlp.down_proj", "feed_forward.w2"),
    ] {
        if rest.contains(from) {
            return rename(from, to);
        }
    }
    if rest.contains("self_attn.") {
        pending.borrow_mut().push((k.to_string(), v));
        if !k.ends_with("v_proj.weight") {
            return vec![];
        }
        let parts = pending.take();
        let get = |p: &str| &parts.iter().find(|(n, _)| n.contains(p)).unwrap().1;
        let (q, kk, vv) = (get("q_proj"), get("k_proj"), get("v_proj"));
        let group = HEADS / KV_HEADS;
        let block = HEAD_DIM * HIDDEN;
        let mut packed = Vec::new();
        for h in 0..KV_HEADS {
            packed.extend_from_slice(&q[h * group * block..(h + 1) * group * block]);
            packed.extend_from_slice(&kk[h * block..(h + 1) * block]);
            packed.extend_from_slice(&vv[h * block..(h + 1) * block]);
        }
        let layer = rest.split("self_attn").next().unwrap();
        return vec![(
            format!("{lm}{layer}attention.wqkv.weight"),
            vec![KV_HEADS * (group + 2) * HEAD_DIM, HIDDEN],
            packed,
        )];
    }
    vec![(k.to_string(), s.to_vec(), v)]
}

fn logits_and_ids<O: VlmOps>(ops: O, dir: &Path) -> (Vec<f32>, Vec<u32>) {
    let (cfg, store) = open_model_dir(dir).unwrap();
    let mut e = Engine::load(ops, &store, cfg, &EngineSources::default(), &mut || {}).unwrap();
    let g = TensorStore::open(&fixture().join("golden_e2e.safetensors")).unwrap();
    let embeds = g.get("inter.inputs_embeds").unwrap().unwrap();
    let x = e.ops.upload(embeds.reshape(&[151, 64]).unwrap()).unwrap();
    let mut cache = e.new_cache(151).unwrap();
    let h = e.decode(&x, &mut cache, 0).unwrap();
    let l = e.logits(&h).unwrap();
    let logits = e.ops.read_back(&l).block_on().unwrap().into_data();
    let opts = GenerateOptions {
        max_new_tokens: 8,
        sampling: Default::default(),
        stop_ids: vec![],
        keep_step_logits: false,
    };
    let ids = e.generate(&x, &opts, &mut |_| {}).block_on().unwrap().ids;
    (logits, ids)
}

#[test]
fn internlm2_layout_matches_qwen2_without_biases() {
    let qwen = variant(
        "qwen2-nobias",
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
    let pending = std::cell::RefCell::new(Vec::new());
    let intern = variant(
        "internlm2",
        |k, s, v| to_internlm2(&pending, k, s, v),
        |c| {
            c["llm_config"]["architectures"] = serde_json::json!(["InternLM2ForCausalLM"]);
            c["template"] = serde_json::json!("internlm2-chat");
        },
    );
    let (la, ia) = logits_and_ids(CpuOps::new(), &qwen);
    let (lb, ib) = logits_and_ids(CpuOps::new(), &intern);
    // The InternLM2 layout on the GPU executor too (same kernels as Qwen2; tolerance as the
    // golden logits on the GPU: f32 sums in another order, 5e-5 on logits of magnitude ~10).
    let gpu = common::gpu().map(|ctx| {
        let pool = ::linvt::gpu::BufferPool::default();
        let rec = ::linvt::gpu::Recorder::new(&ctx, &pool);
        logits_and_ids(::linvt::gpu::GpuOps::new(rec), &intern)
    });
    let _ = std::fs::remove_dir_all(&qwen);
    let _ = std::fs::remove_dir_all(&intern);
    // The same weights in the same op order (a zero bias adds exact zeros): equal to rounding.
    common::assert_close("internlm2 vs qwen2 logits", &lb, &la, 1e-6, 0.0);
    assert_eq!(ib, ia);
    if let Some((lg, ig)) = gpu {
        common::assert_close("internlm2 gpu vs cpu logits", &lg, &lb, 5e-5, 0.0);
        assert_eq!(ig, ib, "internlm2 greedy ids on the GPU");
    }
    // Zeroing the biases really changed the model (so the comparison is not vacuous).
    let g = TensorStore::open(&fixture().join("golden_e2e.safetensors")).unwrap();
    let (_, golden) = g.get_i64("output.greedy_ids").unwrap().unwrap();
    let golden: Vec<u32> = golden.into_iter().map(|v| v as u32).collect();
    assert_ne!(ia, golden);
}
