//! llama.cpp's GGUF files of a video-LLM — a decoder file (holding the tokenizer too) and its
//! `mmproj` vision file (architecture `clip`) — opened as if they were the Hugging Face
//! checkpoint they were converted from: a [`TensorStore`] under the checkpoint's tensor names, a
//! `config.json` and processor settings rebuilt from the metadata, and a `tokenizer.json` rebuilt
//! from the vocabulary. Two families: Qwen2-VL (decoder `qwen2vl`, projector `qwen2vl_merger`;
//! the hub layout) and InternVL with a Qwen2 LLM (decoder `qwen2`, projector `internvl`; the
//! remote-code layout). The names, shapes and keys are those of `docs/gguf.md`. Quantized tensors
//! stay ggml blocks ([`Tensor::blocks`]) for the executor to place as they are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::config::VlmConfig;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Gguf, TensorInfo};
use crate::tensor::{BlockRows, Tensor};
use crate::weights::{TensorSource, TensorStore};

/// Whether `path` is a file that starts with the GGUF magic.
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && magic == crate::gguf::MAGIC
}

/// One GGUF file, mapped, its header parsed.
struct GgufFile {
    path: PathBuf,
    map: memmap2::Mmap,
    header: Gguf,
}

fn gguf_error(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::input(format!("{}: {msg}", path.display()))
}

impl GgufFile {
    fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: a read-only map, as for safetensors (weights.rs).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let header = crate::gguf::parse(&map).map_err(|e| gguf_error(path, e))?;
        // Every tensor must be one this crate can read (as values, at least), named in the
        // error: a model that loads must not stop halfway.
        if let Some(t) = header
            .tensors
            .iter()
            .find(|t| !crate::quant::is_supported(t.ggml_type))
        {
            return Err(gguf_error(
                path,
                format!(
                    "tensor `{}` is stored as {}, which linvt does not implement (it reads F32, \
                     F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K; the GPU keeps \
                     Q8_0, Q4_0, Q5_0, Q4_K and Q6_K as they are); requantize the file with \
                     llama-quantize, e.g. to Q4_K_M",
                    t.name, t.ggml_type
                ),
            ));
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            header,
        })
    }

    fn arch(&self) -> Result<&str> {
        self.header
            .get_str("general.architecture")
            .map_err(|e| gguf_error(&self.path, e))
    }

    fn u(&self, key: &str) -> Result<usize> {
        self.header
            .get_u64(key)
            .map(|v| v as usize)
            .map_err(|e| gguf_error(&self.path, e))
    }

    fn f(&self, key: &str) -> Result<f64> {
        self.header
            .get_f64(key)
            .map_err(|e| gguf_error(&self.path, e))
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.header.tensor(name).ok_or_else(|| {
            gguf_error(
                &self.path,
                format!("tensor `{name}` is missing from the file"),
            )
        })
    }

    /// PyTorch's shape of a tensor: GGUF keeps ggml's dims, fastest first.
    fn shape_of(info: &TensorInfo) -> Vec<usize> {
        info.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// A tensor as f32 values, or (a quantized 2-D weight) as ggml blocks.
    fn read(&self, name: &str) -> Result<Tensor> {
        let info = self.info(name)?;
        let bytes = self
            .header
            .tensor_bytes(&self.map, name)
            .map_err(|e| gguf_error(&self.path, e))?;
        let shape = Self::shape_of(info);
        let ty = info.ggml_type;
        let float = matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
        if !float && shape.len() == 2 {
            let part = BlockRows::new(ty, shape[0], bytes.to_vec());
            return Tensor::blocks(shape, vec![part]);
        }
        let values = crate::quant::dequantize(ty, bytes, info.n_elements as usize)
            .map_err(|e| gguf_error(&self.path, format!("tensor `{name}`: {e}")))?;
        Tensor::new(shape, values)
    }
}

/// How a Hugging Face tensor is made from GGUF tensors (`docs/gguf.md`).
#[derive(Clone, Debug)]
enum Recipe {
    /// One tensor of file `0` (decoder) or `1` (mmproj), as it is.
    One(usize, String),
    /// The rows of these mmproj tensors stacked (the vision q/k/v, which HF keeps fused).
    Rows(Vec<String>),
    /// The two temporal halves of the patch embedding's Conv3d kernel (D, C, P, P) each,
    /// interleaved back into (D, C, 2, P, P).
    Temporal(String, String),
}

/// A GGUF pair seen as a checkpoint: each checkpoint tensor's recipe and shape.
struct GgufPair {
    files: [GgufFile; 2],
    recipes: HashMap<String, (Recipe, Vec<usize>)>,
}

/// Which checkpoint a GGUF pair is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// `qwen2vl` + `qwen2vl_merger`: Qwen2-VL's hub layout.
    Qwen2Vl,
    /// `qwen2` + `internvl`: InternVL's remote-code layout (`language_model.*`,
    /// `vision_model.*`, `mlp1.*`).
    InternVl,
}

impl GgufPair {
    fn new(model: GgufFile, mmproj: GgufFile, family: Family) -> Result<Self> {
        let mut recipes = HashMap::new();
        let files = [model, mmproj];
        let mut add = |hf: String, recipe: Recipe, shape: Vec<usize>| {
            recipes.insert(hf, (recipe, shape));
        };
        // The decoder: one tensor each, under the layout's prefix.
        let (decoder_prefix, head) = match family {
            Family::Qwen2Vl => ("model", "lm_head.weight"),
            Family::InternVl => ("language_model.model", "language_model.lm_head.weight"),
        };
        for t in &files[0].header.tensors {
            if let Some(hf) = decoder_name(&t.name, decoder_prefix, head) {
                add(hf, Recipe::One(0, t.name.clone()), GgufFile::shape_of(t));
            }
        }
        // The vision tower and projector; the fused q/k/v are rebuilt from their thirds.
        let mm = &files[1];
        let (blocks, vision_name): (&str, fn(&str) -> Option<String>) = match family {
            Family::Qwen2Vl => ("visual.blocks", qwen2vl_vision_name),
            Family::InternVl => ("vision_model.encoder.layers", internvl_vision_name),
        };
        for t in &mm.header.tensors {
            if let Some(hf) = vision_name(&t.name) {
                add(hf, Recipe::One(1, t.name.clone()), GgufFile::shape_of(t));
            }
        }
        let depth = mm.u("clip.vision.block_count")?;
        for i in 0..depth {
            for part in ["weight", "bias"] {
                let names: Vec<String> = ["q", "k", "v"]
                    .iter()
                    .map(|p| format!("v.blk.{i}.attn_{p}.{part}"))
                    .collect();
                let Some(q) = mm.header.tensor(&names[0]) else {
                    continue; // no qkv bias (InternViT-6B)
                };
                let mut shape = GgufFile::shape_of(q);
                shape[0] *= 3;
                add(
                    format!("{blocks}.{i}.attn.qkv.{part}"),
                    Recipe::Rows(names),
                    shape,
                );
            }
        }
        if family == Family::Qwen2Vl {
            let k0 = mm.info("v.patch_embd.weight")?;
            mm.info("v.patch_embd.weight.1")?;
            let s = GgufFile::shape_of(k0);
            if s.len() != 4 {
                return Err(gguf_error(
                    &mm.path,
                    format!(
                        "v.patch_embd.weight has shape {s:?}; a (D, C, P, P) kernel was expected"
                    ),
                ));
            }
            add(
                "visual.patch_embed.proj.weight".into(),
                Recipe::Temporal("v.patch_embd.weight".into(), "v.patch_embd.weight.1".into()),
                vec![s[0], s[1], 2, s[2], s[3]],
            );
        }
        Ok(GgufPair { files, recipes })
    }
}

/// The checkpoint name of a decoder tensor (llama.cpp's `qwen2` / `qwen2vl` names): layers and
/// norms under `prefix`, the output projection as `head`.
fn decoder_name(gguf: &str, prefix: &str, head: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some(format!("{prefix}.embed_tokens.weight")),
        "output_norm.weight" => Some(format!("{prefix}.norm.weight")),
        "output.weight" => Some(head.to_string()),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("{prefix}.layers.{layer}.{hf}.{kind}"))
}

/// The remote-code name of an InternVL mmproj tensor that maps one to one (llama.cpp's `clip`
/// names for the `internvl` projector); q/k/v are rebuilt as a recipe.
fn internvl_vision_name(gguf: &str) -> Option<String> {
    let e = "vision_model.embeddings";
    let fixed = match gguf {
        "v.class_embd" => Some(format!("{e}.class_embedding")),
        "v.position_embd.weight" => Some(format!("{e}.position_embedding")),
        "v.patch_embd.weight" => Some(format!("{e}.patch_embedding.weight")),
        "v.patch_embd.bias" => Some(format!("{e}.patch_embedding.bias")),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    if let Some(rest) = gguf.strip_prefix("mm.model.mlp.") {
        return Some(format!("mlp1.{rest}"));
    }
    let rest = gguf.strip_prefix("v.blk.")?;
    let (block, rest) = rest.split_once('.')?;
    let l = format!("vision_model.encoder.layers.{block}");
    // LayerScale vectors have no `.weight` in the checkpoint.
    match rest {
        "ls1.weight" => return Some(format!("{l}.ls1")),
        "ls2.weight" => return Some(format!("{l}.ls2")),
        _ => {}
    }
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "ln1" => "norm1",
        "ln2" => "norm2",
        "attn_out" => "attn.proj",
        "attn_q_norm" => "attn.q_norm",
        "attn_k_norm" => "attn.k_norm",
        "ffn_up" => "mlp.fc1",
        "ffn_down" => "mlp.fc2",
        _ => return None,
    };
    Some(format!("{l}.{hf}.{kind}"))
}

/// The hub name of a Qwen2-VL mmproj tensor that maps one to one (llama.cpp's `clip` names for
/// the `qwen2vl_merger` projector); q/k/v and the patch embedding are recipes of their own.
fn qwen2vl_vision_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "v.post_ln.weight" => Some("visual.merger.ln_q.weight"),
        "v.post_ln.bias" => Some("visual.merger.ln_q.bias"),
        "mm.0.weight" => Some("visual.merger.mlp.0.weight"),
        "mm.0.bias" => Some("visual.merger.mlp.0.bias"),
        "mm.2.weight" => Some("visual.merger.mlp.2.weight"),
        "mm.2.bias" => Some("visual.merger.mlp.2.bias"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("v.blk.")?;
    let (block, rest) = rest.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "ln1" => "norm1",
        "ln2" => "norm2",
        "attn_out" => "attn.proj",
        "ffn_up" => "mlp.fc1",
        "ffn_down" => "mlp.fc2",
        _ => return None,
    };
    Some(format!("visual.blocks.{block}.{hf}.{kind}"))
}

impl TensorSource for GgufPair {
    fn source_keys(&self) -> Vec<String> {
        self.recipes.keys().cloned().collect()
    }
    fn source_shape(&self, key: &str) -> Option<&[usize]> {
        self.recipes.get(key).map(|(_, s)| s.as_slice())
    }
    /// The float type the tensor (its first part, for a rebuilt one) is stored in; None for
    /// ggml's block types.
    fn source_dtype(&self, key: &str) -> Option<safetensors::Dtype> {
        let (file, name) = match &self.recipes.get(key)?.0 {
            Recipe::One(f, name) => (*f, name),
            Recipe::Rows(names) => (1, &names[0]),
            Recipe::Temporal(a, _) => (1, a),
        };
        match self.files[file].header.tensor(name)?.ggml_type {
            GgmlType::F32 => Some(safetensors::Dtype::F32),
            GgmlType::F16 => Some(safetensors::Dtype::F16),
            GgmlType::BF16 => Some(safetensors::Dtype::BF16),
            _ => None,
        }
    }
    fn source_tensor(&self, key: &str) -> Result<Option<Tensor>> {
        let Some((recipe, shape)) = self.recipes.get(key) else {
            return Ok(None);
        };
        let mm = &self.files[1];
        let t = match recipe {
            Recipe::One(f, name) => self.files[*f].read(name)?,
            Recipe::Rows(names) => {
                let parts = names.iter().map(|n| mm.read(n)).collect::<Result<_>>()?;
                Tensor::concat_rows(parts)?
            }
            Recipe::Temporal(a, b) => {
                let (k0, k1) = (mm.read(a)?.widened()?, mm.read(b)?.widened()?);
                // (D·C, P·P) rows of each frame's kernel, interleaved per (D, C).
                let inner = shape[3] * shape[4];
                let mut data = Vec::with_capacity(2 * k0.len());
                for (r0, r1) in k0.data().chunks(inner).zip(k1.data().chunks(inner)) {
                    data.extend_from_slice(r0);
                    data.extend_from_slice(r1);
                }
                Tensor::new(shape.clone(), data)?
            }
        };
        Ok(Some(t))
    }
    fn source_tensor_i64(&self, _key: &str) -> Result<Option<(Vec<usize>, Vec<i64>)>> {
        Ok(None)
    }
    fn source_metadata(&self) -> HashMap<String, String> {
        HashMap::new()
    }
}

/// The `mmproj` file for `model`: `explicit`, else the one `mmproj*.gguf` beside it.
pub fn find_mmproj(model: &Path, explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let dir = model.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("mmproj") && name.ends_with(".gguf")
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::input(format!(
            "{} is a GGUF decoder; pass its vision file with --mmproj FILE (llama.cpp's mmproj-*.gguf)",
            model.display()
        ))),
        _ => Err(Error::input(format!(
            "{} has several mmproj files beside it ({}); choose one with --mmproj FILE",
            model.display(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The model in the GGUF pair `model` + `mmproj`: its config and its tensors under the
/// checkpoint's names.
pub fn open(model: &Path, mmproj: &Path) -> Result<(VlmConfig, TensorStore)> {
    let decoder = GgufFile::open(model)?;
    let vision = GgufFile::open(mmproj)?;
    let arch = decoder.arch()?.to_string();
    if arch == "clip" {
        return Err(gguf_error(
            model,
            "is an mmproj (vision) file; pass the decoder as --model and this as --mmproj",
        ));
    }
    if vision.arch()? != "clip" {
        return Err(gguf_error(
            mmproj,
            format!(
                "is not an mmproj file (architecture `{}`, not `clip`)",
                vision.arch()?
            ),
        ));
    }
    let projector = vision
        .header
        .get_str("clip.projector_type")
        .map_err(|e| gguf_error(mmproj, e))?
        .to_string();
    let family = match (arch.as_str(), projector.as_str()) {
        ("qwen2vl", "qwen2vl_merger") => Family::Qwen2Vl,
        ("qwen2", "internvl") => Family::InternVl,
        _ => {
            return Err(gguf_error(
                model,
                format!(
                    "a `{arch}` decoder with a `{projector}` projector is not supported from GGUF \
                     (supported: qwen2vl + qwen2vl_merger — Qwen2-VL; qwen2 + internvl — InternVL \
                     with a Qwen2 LLM)"
                ),
            ))
        }
    };
    let (config, preprocessor) = match family {
        Family::Qwen2Vl => config_json(&decoder, &vision)?,
        Family::InternVl => (internvl_config_json(&decoder, &vision)?, json!({})),
    };
    let eos = config
        .get("eos_token_id")
        .or_else(|| config.get("llm_config").and_then(|l| l.get("eos_token_id")))
        .and_then(Value::as_u64)
        .map(|e| vec![e as u32])
        .unwrap_or_default();
    let cfg = VlmConfig::from_json(&config, eos, Some(&preprocessor))?;
    let name = format!("{} + {}", model.display(), mmproj.display());
    let source = GgufPair::new(decoder, vision, family)?;
    let store = TensorStore::from_sources(&name, vec![Box::new(source)], Some(config));
    Ok((cfg, store))
}

/// The special-token id of `token` in the decoder's vocabulary, or an error naming it.
fn token_id(decoder: &GgufFile, token: &str, family: &str) -> Result<u32> {
    let tokens = decoder
        .header
        .get_str_array("tokenizer.ggml.tokens")
        .map_err(|e| gguf_error(&decoder.path, e))?;
    tokens
        .iter()
        .position(|&x| x == token)
        .map(|i| i as u32)
        .ok_or_else(|| {
            gguf_error(
                &decoder.path,
                format!("the vocabulary lacks `{token}`: not a {family} tokenizer"),
            )
        })
}

/// The Qwen2 decoder's config keys from a decoder file of architecture `arch` (`qwen2`,
/// `qwen2vl`: the same keys under its name), as `Qwen2ForCausalLM`'s `config.json` has them.
fn decoder_config(decoder: &GgufFile, arch: &str) -> Result<Value> {
    let a = arch;
    let vocab = decoder
        .header
        .get_array("tokenizer.ggml.tokens")
        .map_err(|e| gguf_error(&decoder.path, e))?
        .len();
    let mut c = json!({
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_act": "silu",
        "hidden_size": decoder.u(&format!("{a}.embedding_length"))?,
        "intermediate_size": decoder.u(&format!("{a}.feed_forward_length"))?,
        "num_hidden_layers": decoder.u(&format!("{a}.block_count"))?,
        "num_attention_heads": decoder.u(&format!("{a}.attention.head_count"))?,
        "num_key_value_heads": decoder.u(&format!("{a}.attention.head_count_kv"))?,
        "max_position_embeddings": decoder.u(&format!("{a}.context_length"))?,
        "rms_norm_eps": decoder.f(&format!("{a}.attention.layer_norm_rms_epsilon"))?,
        "rope_theta": decoder.f(&format!("{a}.rope.freq_base"))?,
        "vocab_size": vocab,
        "tie_word_embeddings": decoder.header.tensor("output.weight").is_none(),
    });
    if decoder
        .header
        .get(&format!("{a}.rope.scaling.type"))
        .is_some()
    {
        return Err(gguf_error(
            &decoder.path,
            format!("RoPE scaling keys ({a}.rope.scaling.*) are not supported from GGUF yet"),
        ));
    }
    for (key, to) in [
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
    ] {
        if let Ok(id) = decoder.header.get_u64(key) {
            c[to] = json!(id);
        }
    }
    Ok(c)
}

/// The remote-code `config.json` (`InternVLChatModel`) of an InternVL pair (`docs/gguf.md`,
/// "InternVL"): the ViT's sizes from the mmproj's keys and tensors (qkv bias, qk-norm and
/// LayerNorm vs RMSNorm from which tensors exist), the pixel shuffle from its scale factor, the
/// tiling bounds from its preprocessing keys, the chat template from the decoder's Jinja
/// template (InternVL2.5/3's system message, else InternVL2's Hermes-2).
fn internvl_config_json(decoder: &GgufFile, vision: &GgufFile) -> Result<Value> {
    for t in ["<img>", "</img>", "<IMG_CONTEXT>"] {
        token_id(decoder, t, "InternVL")?;
    }
    let has = |name: &str| vision.header.tensor(name).is_some();
    let scale = vision
        .header
        .get_u64("clip.vision.projector.scale_factor")
        .unwrap_or(2);
    let image_size = vision.u("clip.vision.image_size")?;
    let template = match decoder.header.get_str("tokenizer.chat_template") {
        Ok(t) if t.contains("书生·万象") => "internvl2_5",
        _ => "Hermes-2",
    };
    let tiles = |key: &str, default: u64| vision.header.get_u64(key).unwrap_or(default);
    Ok(json!({
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "template": template,
        "select_layer": -1,
        "downsample_ratio": 1.0 / scale as f64,
        "ps_version": "v2",
        "force_image_size": image_size,
        "dynamic_image_size": true,
        "use_thumbnail": true,
        "min_dynamic_patch": tiles("clip.vision.preproc_min_tiles", 1),
        "max_dynamic_patch": tiles("clip.vision.preproc_max_tiles", 12),
        "vision_config": {
            "model_type": "intern_vit_6b",
            "hidden_act": "gelu",
            "hidden_size": vision.u("clip.vision.embedding_length")?,
            "intermediate_size": vision.u("clip.vision.feed_forward_length")?,
            "num_attention_heads": vision.u("clip.vision.attention.head_count")?,
            "num_hidden_layers": vision.u("clip.vision.block_count")?,
            "image_size": image_size,
            "patch_size": vision.u("clip.vision.patch_size")?,
            "num_channels": 3,
            "qkv_bias": has("v.blk.0.attn_q.bias"),
            "qk_normalization": has("v.blk.0.attn_q_norm.weight"),
            "norm_type": if has("v.blk.0.ln1.bias") { "layer_norm" } else { "rms_norm" },
            "layer_norm_eps": vision.f("clip.vision.attention.layer_norm_epsilon")?,
        },
        "llm_config": decoder_config(decoder, "qwen2")?,
    }))
}

/// `config.json` and `preprocessor_config.json` of the checkpoint the pair was converted from,
/// as far as the files tell (`docs/gguf.md`, "Not in the files": the special-token ids come
/// from the vocabulary, the merge size and temporal patch from llama.cpp's defaults for this
/// projector, the pixel limits from Qwen2-VL's processor defaults).
fn config_json(decoder: &GgufFile, vision: &GgufFile) -> Result<(Value, Value)> {
    let a = "qwen2vl";
    let id_of = |t: &str| token_id(decoder, t, "Qwen2-VL");
    let sections: Vec<i64> = decoder
        .header
        .get_array(&format!("{a}.rope.dimension_sections"))
        .map_err(|e| gguf_error(&decoder.path, e))?
        .iter()
        .filter_map(|v| v.as_i64())
        .take(3)
        .collect();
    let width = vision.u("clip.vision.embedding_length")?;
    // The converter writes the merger's output as feed_forward_length; the MLP width is fc1's.
    let fc1 = GgufFile::shape_of(vision.info("v.blk.0.ffn_up.weight")?);
    if width == 0 || !fc1[0].is_multiple_of(width) {
        return Err(gguf_error(
            &vision.path,
            format!(
                "the vision MLP width {} is not a multiple of the width {width}",
                fc1[0]
            ),
        ));
    }
    let patch = GgufFile::shape_of(vision.info("v.patch_embd.weight")?);
    let merge = vision
        .header
        .get_u64("clip.vision.spatial_merge_size")
        .unwrap_or(2);
    // Qwen2-VL's flat config: the decoder's keys at the top, beside the vision's and the ids.
    let mut config = decoder_config(decoder, a)?;
    for (key, value) in [
        ("architectures", json!(["Qwen2VLForConditionalGeneration"])),
        ("model_type", json!("qwen2_vl")),
        (
            "rope_scaling",
            json!({"type": "mrope", "mrope_section": sections}),
        ),
        ("vision_start_token_id", json!(id_of("<|vision_start|>")?)),
        ("vision_end_token_id", json!(id_of("<|vision_end|>")?)),
        ("vision_token_id", json!(id_of("<|vision_pad|>")?)),
        ("image_token_id", json!(id_of("<|image_pad|>")?)),
        ("video_token_id", json!(id_of("<|video_pad|>")?)),
        (
            "vision_config",
            json!({
                "depth": vision.u("clip.vision.block_count")?,
                "embed_dim": width,
                "hidden_size": vision.u("clip.vision.projection_dim")?,
                "mlp_ratio": fc1[0] / width,
                "num_heads": vision.u("clip.vision.attention.head_count")?,
                "patch_size": vision.u("clip.vision.patch_size")?,
                "spatial_merge_size": merge,
                "temporal_patch_size": 2,
                "in_channels": patch.get(1).copied().unwrap_or(3),
            }),
        ),
    ] {
        config[key] = value;
    }
    let floats = |key: &str| -> Result<Vec<f64>> {
        Ok(vision
            .header
            .get_array(key)
            .map_err(|e| gguf_error(&vision.path, e))?
            .iter()
            .filter_map(|v| v.as_f64())
            .collect())
    };
    let preprocessor = json!({
        "image_mean": floats("clip.vision.image_mean")?,
        "image_std": floats("clip.vision.image_std")?,
        "patch_size": vision.u("clip.vision.patch_size")?,
        "merge_size": merge,
        "temporal_patch_size": 2,
    });
    Ok((config, preprocessor))
}

/// Qwen2's pre-tokenizer split (llama.cpp's `qwen2` pre type; the `Split` of Qwen2's
/// `tokenizer.json`).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The `tokenizer.json` of a GGUF decoder's vocabulary (`tokenizer.ggml.*`): byte-level BPE
/// with Qwen2's pre-tokenizer, the control and user-defined tokens as added tokens, unused
/// padding entries left out.
pub fn tokenizer_json(model: &Path) -> Result<Value> {
    let file = GgufFile::open(model)?;
    let h = &file.header;
    let e = |err: Error| gguf_error(model, err);
    let kind = h.get_str("tokenizer.ggml.model").map_err(e)?;
    let pre = h.get_str("tokenizer.ggml.pre").unwrap_or("default");
    if kind != "gpt2" || pre != "qwen2" {
        return Err(gguf_error(
            model,
            format!("tokenizer `{kind}` with pre-tokenizer `{pre}` is not supported (Qwen2's: gpt2 + qwen2)"),
        ));
    }
    let tokens = h.get_str_array("tokenizer.ggml.tokens").map_err(e)?;
    let types: Vec<i64> = h
        .get_array("tokenizer.ggml.token_type")
        .map_err(e)?
        .iter()
        .map(|v| v.as_i64().unwrap_or(1))
        .collect();
    let merges = h.get_str_array("tokenizer.ggml.merges").map_err(e)?;
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        match types.get(id).copied().unwrap_or(1) {
            // CONTROL and USER_DEFINED: matched whole before the split.
            3 | 4 => added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": types[id] == 3,
            })),
            // UNUSED: the embedding's padding rows, no token.
            5 => {}
            _ => {
                vocab.insert(tok.to_string(), json!(id));
            }
        }
    }
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
            byte_level,
        ]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    }))
}
