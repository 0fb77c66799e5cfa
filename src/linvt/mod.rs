//! The LinVT model: configuration + parameters, run on the CPU reference path or on a GPU.

pub mod forward;
pub mod gpu;
pub mod params;
pub mod provenance;
pub mod split;

use split::Tiled;

use std::sync::Arc;

use crate::config::{ConfigPatch, LinvtConfig};
use crate::error::{Error, Result};
use crate::gpu::placement::Placed;
pub use crate::gpu::WeightStorage;
use crate::gpu::{BufferPool, GpuContext, GpuTensor, Placement};
use crate::ops::Device;
use crate::tensor::Tensor;
use crate::weights::TensorStore;
use forward::{forward, Dims, Want};
pub use params::{LinvtParams, LoadReport};
pub use provenance::Provenance;

/// Options for one condensation.
#[derive(Clone, Debug, Default)]
pub struct CondenseOptions {
    /// Also return each output token's weights over the input cells.
    pub provenance: bool,
    /// Time each stage (on the GPU this submits and waits at every stage boundary).
    pub profile: bool,
    /// Also return named intermediates (`svr_layer.{i}`, `svr_out`, `tta_layer.{i}`) for
    /// comparison with the released module's golden files.
    pub trace: bool,
    /// Split the work as if one storage binding held at most this many bytes (None: the
    /// adapter's own limit, and no split on the CPU). For tests of the split forward.
    pub binding_limit: Option<u64>,
}

impl CondenseOptions {
    pub(crate) fn want(&self) -> Want {
        Want {
            probs: self.provenance,
            trace: self.trace,
        }
    }
}

/// The result of one condensation, on the host.
#[derive(Clone, Debug)]
pub struct Condensed {
    /// (Q', E): the video tokens handed to the LLM.
    pub output: Tensor,
    /// Flat indices t·N + n of the selected tokens, in the config's selection order.
    pub selected_indices: Vec<u32>,
    /// Significance score of every input token (T·N).
    pub scores: Vec<f32>,
    pub frames: usize,
    pub tokens: usize,
    /// Tokens selected: min(top_k, T·N).
    pub k: usize,
    /// The configured top_k (larger than `k` when the clip is short).
    pub k_requested: usize,
    pub provenance: Option<Provenance>,
    /// Per-stage milliseconds when profiling.
    pub stage_ms: Vec<(String, f64)>,
    pub device: Device,
    /// Named intermediates when asked for (see `CondenseOptions::trace`).
    pub trace: Vec<(String, Tensor)>,
    /// Adapter name ("cpu" on the CPU path).
    pub adapter: String,
}

pub(crate) struct GpuState {
    pub(crate) ctx: Arc<GpuContext>,
    pub(crate) params: LinvtParams<GpuTensor>,
    pub(crate) pool: BufferPool,
}

pub struct Linvt {
    config: LinvtConfig,
    params: LinvtParams<Tensor>,
    pub(crate) gpu: Option<GpuState>,
}

impl std::fmt::Debug for Linvt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linvt")
            .field("config", &self.config)
            .finish()
    }
}

impl Linvt {
    /// A model from a config and parameters already in memory.
    pub fn new(config: LinvtConfig, params: LinvtParams<Tensor>) -> Result<Self> {
        config.validate()?;
        if params.svr.len() != config.num_layers || params.tta.len() != config.num_layers {
            return Err(Error::config(format!(
                "config has {} layers but the parameters hold {} SVR and {} TTA layers",
                config.num_layers,
                params.svr.len(),
                params.tta.len()
            )));
        }
        let q = params.query_tokens.rows();
        if params.query_tokens.cols() != config.embed_size {
            return Err(Error::config(format!(
                "query_tokens width {} differs from embed_size {}",
                params.query_tokens.cols(),
                config.embed_size
            )));
        }
        config.query_split(q)?;
        Ok(Linvt {
            config,
            params,
            gpu: None,
        })
    }

    /// Loads from a tensor store. Config precedence: `overrides` (flags over `--config`), then
    /// the store's `linvt_config` (model directory `config.json`, or safetensors metadata: a JSON
    /// string or plain keys), then preset defaults. Width and layer count fall back to what the
    /// weights hold.
    pub fn from_store(store: &TensorStore, overrides: &ConfigPatch) -> Result<(Self, LoadReport)> {
        let from_file = match store
            .config_json
            .as_ref()
            .and_then(|c| c.get("linvt_config"))
        {
            Some(v) => ConfigPatch::from_json(
                &v.to_string(),
                &format!("{} config.json `linvt_config`", store.name()),
            )?,
            None => ConfigPatch::from_metadata(&store.metadata(), store.name())?,
        };
        let mut patch = overrides.clone().over(&from_file);
        let stored = params::query_tokens_shape(store);
        if patch.embed_size.is_none() {
            patch.embed_size = stored.map(|(_, e)| e);
        }
        if patch.num_layers.is_none() {
            let prefix = params::linvt_prefix(store);
            let count = (0..)
                .take_while(|i| {
                    store.contains(&format!(
                        "{prefix}svt_module.attention_network.layers.{i}.spatial_attention.in_proj_weight"
                    ))
                })
                .count();
            if count > 0 {
                patch.num_layers = Some(count);
            }
        }
        let config = patch.resolve()?;
        if let (Some(want), Some((q, _))) = (patch.num_video_query_token, stored) {
            if want != q {
                return Err(Error::config(format!(
                    "num_video_query_token is {want} but query_tokens holds {q} queries"
                )));
            }
        }
        let (params, report) = LinvtParams::load(store, &config)?;
        Ok((Linvt::new(config, params)?, report))
    }

    pub fn config(&self) -> &LinvtConfig {
        &self.config
    }
    pub fn params(&self) -> &LinvtParams<Tensor> {
        &self.params
    }
    pub fn num_queries(&self) -> usize {
        self.params.query_tokens.rows()
    }
    /// Bytes of device buffers the attached GPU's pool holds idle (after a condensation: every
    /// intermediate buffer it made, an upper bound of its peak).
    pub fn gpu_pool_bytes(&self) -> u64 {
        self.gpu.as_ref().map_or(0, |g| g.pool.idle_bytes())
    }
    pub fn gpu_context(&self) -> Option<&Arc<GpuContext>> {
        self.gpu.as_ref().map(|g| &g.ctx)
    }

    /// Uploads the parameters to `ctx` in f32; later GPU condensations run there.
    pub fn attach_gpu(&mut self, ctx: Arc<GpuContext>) -> Result<()> {
        self.attach_gpu_with(ctx, WeightStorage::F32)
    }

    /// [`Self::attach_gpu`] with a choice of how the linear weights are stored on the device
    /// (placed by [`Placement::place`], as the video-LLM's weights are).
    pub fn attach_gpu_with(&mut self, ctx: Arc<GpuContext>, storage: WeightStorage) -> Result<()> {
        let placement = Placement::new(storage);
        let mut i = 0;
        let params = self.params.try_map_roles(|t, role| {
            i += 1;
            match placement.place(&ctx, &format!("param{i}"), t, role)? {
                Placed::One(t) => Ok(t),
                Placed::Chunked(_) => Err(Error::TensorTooLarge {
                    tensor: format!("LinVT parameter {i} {:?}", t.shape()),
                    bytes: (t.len() as f64 * storage.bits_per_weight() / 8.0) as u64,
                    limit: ctx.max_binding_bytes(),
                    hint: "use an adapter with a larger maxStorageBufferBindingSize".into(),
                }),
            }
        })?;
        self.gpu = Some(GpuState {
            ctx,
            params,
            pool: BufferPool::default(),
        });
        Ok(())
    }

    /// Checks and flattens the inputs: video (T, N, C) or (1, T, N, C) → (T·N, C);
    /// text (L, C) or (1, L, C) → (L, C).
    pub fn prepare_inputs(&self, video: &Tensor, text: &Tensor) -> Result<(Tensor, Tensor, Dims)> {
        let e = self.config.embed_size;
        let (t, n, c) = match video.shape() {
            [t, n, c] | [1, t, n, c] => (*t, *n, *c),
            s => {
                return Err(Error::input(format!(
                    "video tokens must be (T, N, C) or (1, T, N, C); got shape {s:?}"
                )))
            }
        };
        if t == 0 || n == 0 {
            return Err(Error::input(format!(
                "the video is empty: T = {t} frames, N = {n} tokens per frame"
            )));
        }
        if c != e {
            return Err(Error::input(format!(
                "video tokens have width C = {c} but the model's embed_size is {e}; the tokens must come from the same LLM the weights were trained for"
            )));
        }
        let (l, tc) = match text.shape() {
            [l, c] | [1, l, c] => (*l, *c),
            s => {
                return Err(Error::input(format!(
                    "text embeddings must be (L, C) or (1, L, C); got shape {s:?}"
                )))
            }
        };
        if l == 0 {
            return Err(Error::input(
                "the text is empty (L = 0); LinVT conditions on at least one text token",
            ));
        }
        if tc != e {
            return Err(Error::input(format!(
                "text embeddings have width {tc} but the model's embed_size is {e}"
            )));
        }
        if let Some((i, v)) = video.first_non_finite() {
            return Err(Error::NonFinite {
                what: "the video tokens".into(),
                position: format!(
                    "frame {}, token {}, channel {}",
                    i / (n * c),
                    (i / c) % n,
                    i % c
                ),
                value: v,
            });
        }
        if let Some((i, v)) = text.first_non_finite() {
            return Err(Error::NonFinite {
                what: "the text embeddings".into(),
                position: format!("text token {}, channel {}", i / c, i % c),
                value: v,
            });
        }
        let dims = Dims {
            frames: t,
            tokens: n,
            text_len: l,
            k: crate::ops::clamp_k(self.config.top_k, t * n),
        };
        Ok((
            video.clone().reshape(&[t * n, e])?,
            text.clone().reshape(&[l, e])?,
            dims,
        ))
    }

    pub(crate) fn compose_provenance(
        &self,
        f: &forward::ForwardOut<impl crate::ops::Ops>,
        dims: Dims,
        indices: &[u32],
        probs: Vec<Tensor>,
    ) -> Provenance {
        provenance::of_forward(
            self.config.num_heads,
            self.num_queries(),
            dims,
            f,
            indices,
            &probs,
        )
    }

    /// Runs on the CPU reference path.
    pub fn condense_cpu(
        &self,
        video: &Tensor,
        text: &Tensor,
        opts: &CondenseOptions,
    ) -> Result<Condensed> {
        let (video, text, dims) = self.prepare_inputs(video, text)?;
        let mut ops = crate::cpu::CpuOps::new();
        ops.binding_limit = opts.binding_limit;
        let f = forward(
            &mut ops,
            &self.config,
            &self.params,
            &Tiled::whole(video, dims.frames, dims.tokens),
            &text,
            dims,
            self.num_queries(),
            opts.want(),
        )?;
        ops.clock.mark(None);
        let provenance = opts
            .provenance
            .then(|| self.compose_provenance(&f, dims, &f.indices, f.aggregation_probs.clone()));
        Ok(Condensed {
            output: f.output.clone(),
            selected_indices: f.indices.clone(),
            scores: f.scores.data().to_vec(),
            frames: dims.frames,
            tokens: dims.tokens,
            k: dims.k,
            k_requested: self.config.top_k,
            provenance,
            stage_ms: ops.clock.times,
            device: Device::Cpu,
            trace: f.trace.clone(),
            adapter: "cpu".into(),
        })
    }

    /// Blocking condensation on either device (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn condense(
        &self,
        device: Device,
        video: &Tensor,
        text: &Tensor,
        opts: &CondenseOptions,
    ) -> Result<Condensed> {
        match device {
            Device::Cpu => self.condense_cpu(video, text, opts),
            Device::Gpu => pollster::block_on(self.condense_gpu(video, text, opts)),
        }
    }
}
