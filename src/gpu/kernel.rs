//! Shaders, the pipeline cache and the command recorder every kernel dispatches through.
//!
//! Binding convention shared by all WGSL files: `@group(0) @binding(0)` is a uniform `Params`
//! struct (u32/f32 scalars only, so its layout is plain; the recorder packs many dispatches'
//! parameters into one buffer), then the tensors at bindings 1, 2, … in the order the dispatch
//! function passes them: storage buffers, or the texture view of a weight stored as texels.
//! Pipelines use the layout derived from the shader and are cached under a readable key:
//! `file::entry[NAME=value,…]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::buffer::{BufferPool, GpuTensor};
use super::context::GpuContext;
use crate::error::Result;

/// One shader module: a kernel family's WGSL file, possibly after prelude files or lines
/// (the texel layout, how operand A is read). Kept as parts and joined when the module is
/// built, so variants of one family share the family's text in the binary (the browser bundle
/// has a size budget).
pub struct Shader {
    pub name: &'static str,
    pub parts: &'static [&'static str],
}

impl Shader {
    /// The module's WGSL source.
    pub fn source(&self) -> String {
        self.parts.concat()
    }
}

#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
}

pub fn pipeline_key(shader: &Shader, entry: &str, constants: &[(&str, f64)]) -> String {
    let c: Vec<String> = constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}::{}[{}]", shader.name, entry, c.join(","))
}

impl GpuContext {
    /// The compute pipeline for `entry` of `shader` with the given `override` constants.
    pub fn pipeline(
        &self,
        shader: &Shader,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = pipeline_key(shader, entry, constants);
        if let Some(p) = self.pipelines.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        // Native: a pipeline error is caught here, synchronously. The browser cannot block on the
        // scope; there a bad pipeline surfaces through the uncaptured-error handler (and
        // linvt-web wraps each whole condensation in an awaited error scope).
        #[cfg(not(target_arch = "wasm32"))]
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = {
            let mut modules = self.pipelines.modules.lock().unwrap();
            modules
                .entry(shader.name)
                .or_insert_with(|| {
                    self.device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(shader.name),
                            source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                        })
                })
                .clone()
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&key),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(crate::error::Error::Gpu(format!(
                "building pipeline {key} failed: {e}"
            )));
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines
            .pipelines
            .lock()
            .unwrap()
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }
}

/// Splits `count` workgroups over x and y so neither exceeds the device limit. Kernels rebuild
/// the flat id as `wid.x + wid.y * nwg.x` and skip ids ≥ count.
pub fn grid(ctx: &GpuContext, count: u32) -> [u32; 3] {
    let max = ctx.limits.max_compute_workgroups_per_dimension.max(1);
    if count <= max {
        [count.max(1), 1, 1]
    } else {
        let y = count.div_ceil(max);
        [count.div_ceil(y), y, 1]
    }
}

/// Stage timing collected when a recorder profiles (native only): each `stage` call submits
/// the work so far and waits, so stage times are real but the whole pass is slower.
#[derive(Clone, Debug, Default)]
pub struct StageTimes(pub Vec<(String, f64)>);

struct Profile {
    current: String,
    #[cfg(not(target_arch = "wasm32"))]
    started: std::time::Instant,
    times: StageTimes,
}

/// Bytes of one shared buffer of dispatch parameters (256 dispatches at the usual 256-byte
/// offset alignment).
const UNIFORM_CHUNK: u64 = 64 << 10;

/// The uniform parameters of recorded dispatches, packed at aligned offsets into shared
/// buffers: one buffer per [`UNIFORM_CHUNK`] bytes instead of one per dispatch (a buffer
/// creation and upload per dispatch was most of the host's recording cost). The bytes are
/// staged on the host and written before the recording is submitted.
struct UniformArena {
    /// The buffer being filled and its staged contents.
    current: Option<(wgpu::Buffer, Vec<u8>)>,
}

/// Records dispatches into one command encoder; `finish` hands the encoder back for one
/// submission together with the readback.
///
/// A pool's buffers must be recorded by one thread at a time: a buffer dropped while its
/// encoder is still unsubmitted goes back to the pool, and another recorder on another thread
/// could take it (as, say, a KV cache) and see it overwritten when the first encoder runs. So
/// every executor owns its pool (`BufferPool::default()`), shared only by its own recorders.
pub struct Recorder<'a> {
    pub ctx: &'a GpuContext,
    pub pool: BufferPool,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    profile: Option<Profile>,
    uniforms: UniformArena,
    /// The numerical-health word kernels flag an overflow in (see [`Recorder::health`]).
    health: Option<GpuTensor>,
    /// Whether the norm kernels check their rows (true but in the benchmark that measures what
    /// the checks cost).
    pub checks: bool,
}

impl<'a> Recorder<'a> {
    /// One u32 the norm kernels lower to the row where a mean square or variance overflowed
    /// f32 (u32::MAX while none has): an overflow anywhere upstream in the residual stream
    /// shows there. Created on first use; an executor reads it back with its results and
    /// resets it ([`Recorder::with_health`] hands it to the next recording).
    pub fn health(&mut self) -> Result<GpuTensor> {
        if let Some(h) = &self.health {
            return Ok(h.clone());
        }
        let h = self.ctx.upload("health", &[1], &[u32::MAX])?;
        self.health = Some(h.clone());
        Ok(h)
    }

    /// The health word so far, if any kernel used one.
    pub fn health_word(&self) -> Option<&GpuTensor> {
        self.health.as_ref()
    }

    /// This recorder flagging into `health` (an earlier recording's word).
    pub fn with_health(mut self, health: Option<GpuTensor>) -> Self {
        self.health = health;
        self
    }

    /// A recorder allocating from `pool` (shared with the pool's other handles).
    pub fn new(ctx: &'a GpuContext, pool: &BufferPool) -> Self {
        Recorder {
            ctx,
            pool: pool.clone(),
            encoder: None,
            pass: None,
            profile: None,
            uniforms: UniformArena { current: None },
            health: None,
            checks: true,
        }
    }

    /// Turns on per-stage timing (each stage boundary submits and waits).
    pub fn with_profiling(mut self) -> Self {
        self.profile = Some(Profile {
            current: "start".into(),
            #[cfg(not(target_arch = "wasm32"))]
            started: std::time::Instant::now(),
            times: StageTimes::default(),
        });
        self
    }

    pub fn alloc(&mut self, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        self.ctx.alloc(&self.pool, name, shape)
    }

    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        let device = &self.ctx.device;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("linvt"),
            })
        })
    }

    fn end_pass(&mut self) {
        self.pass = None;
    }

    /// One dispatch. `params` is the uniform `Params` struct's bytes; `tensors` bind at 1, 2, …
    /// (a buffer, or the texel view of a weight stored as texels).
    pub fn dispatch(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        params: &[u8],
        tensors: &[&GpuTensor],
        workgroups: [u32; 3],
    ) {
        let bound: Vec<(u32, &GpuTensor)> = (1..).zip(tensors.iter().copied()).collect();
        self.dispatch_bound(pipeline, params, &bound, workgroups);
    }

    /// [`Self::dispatch`] with each tensor's binding number given (an entry point that uses only
    /// some of its shader's bindings).
    pub fn dispatch_bound(
        &mut self,
        pipeline: &wgpu::ComputePipeline,
        params: &[u8],
        tensors: &[(u32, &GpuTensor)],
        workgroups: [u32; 3],
    ) {
        let size = (params.len().div_ceil(16).max(1) * 16) as u64;
        let (uniform, offset) = self.uniform_slot(size);
        let staged = &mut self.uniforms.current.as_mut().expect("slot just taken").1;
        staged.extend_from_slice(params);
        staged.resize((offset + size) as usize, 0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &uniform,
                offset,
                size: wgpu::BufferSize::new(size),
            }),
        }];
        for &(binding, t) in tensors {
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: t.binding(),
            });
        }
        let bind_group = self
            .ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
        if self.pass.is_none() {
            let pass = self
                .encoder()
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                })
                .forget_lifetime();
            self.pass = Some(pass);
        }
        let pass = self.pass.as_mut().expect("pass just opened");
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
    }

    /// Room for `size` bytes of parameters: (the arena buffer, the aligned offset), with the
    /// staged bytes padded up to that offset.
    fn uniform_slot(&mut self, size: u64) -> (wgpu::Buffer, u64) {
        let align = (self.ctx.limits.min_uniform_buffer_offset_alignment as u64).max(16);
        let aligned_end = |staged: &Vec<u8>| (staged.len() as u64).div_ceil(align) * align;
        let fits = self
            .uniforms
            .current
            .as_ref()
            .is_some_and(|(_, staged)| aligned_end(staged) + size <= UNIFORM_CHUNK);
        if !fits {
            self.write_uniforms();
            let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: UNIFORM_CHUNK.max(size),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.uniforms.current = Some((buffer, Vec::new()));
        }
        let (buffer, staged) = self.uniforms.current.as_mut().expect("just ensured");
        let offset = aligned_end(staged);
        staged.resize(offset as usize, 0);
        (buffer.clone(), offset)
    }

    /// Writes the staged parameters of the buffer being filled (before any submission that
    /// reads them) and retires it.
    fn write_uniforms(&mut self) {
        if let Some((buffer, staged)) = self.uniforms.current.take() {
            if !staged.is_empty() {
                self.ctx.queue.write_buffer(&buffer, 0, &staged);
            }
        }
    }

    /// Copies all of `src` into `dst` at its offset (same element count); both must be buffers.
    pub fn copy(&mut self, src: &GpuTensor, dst: &GpuTensor) -> Result<()> {
        debug_assert_eq!(src.len(), dst.len());
        if src.is_empty() {
            return Ok(());
        }
        let (sb, db) = (src.buffer()?.clone(), dst.buffer()?.clone());
        self.end_pass();
        self.encoder().copy_buffer_to_buffer(
            &sb,
            src.offset as u64 * 4,
            &db,
            dst.offset as u64 * 4,
            src.len() as u64 * 4,
        );
        Ok(())
    }

    /// Fills a whole tensor's buffer with zeros.
    pub fn clear(&mut self, t: &GpuTensor) -> Result<()> {
        let b = t.buffer()?.clone();
        self.end_pass();
        self.encoder().clear_buffer(&b, 0, None);
        Ok(())
    }

    /// Marks the start of a named stage. When profiling, the previous stage's work is submitted,
    /// waited for and timed.
    pub fn stage(&mut self, name: &str) -> Result<()> {
        if self.profile.is_none() {
            return Ok(());
        }
        self.flush()?;
        let p = self.profile.as_mut().expect("checked");
        #[cfg(not(target_arch = "wasm32"))]
        {
            let ms = p.started.elapsed().as_secs_f64() * 1e3;
            if p.current != "start" {
                p.times.0.push((p.current.clone(), ms));
            }
            p.started = std::time::Instant::now();
        }
        p.current = name.to_string();
        Ok(())
    }

    /// Submits what was recorded so far and waits for it (native).
    pub fn flush(&mut self) -> Result<()> {
        self.end_pass();
        self.write_uniforms();
        if let Some(enc) = self.encoder.take() {
            self.ctx.queue.submit([enc.finish()]);
        }
        self.ctx.wait_idle()
    }

    /// Ends recording; the encoder (if anything was recorded) and the stage times.
    pub fn finish(mut self) -> Result<(Option<wgpu::CommandEncoder>, StageTimes)> {
        let times = if self.profile.is_some() {
            self.stage("end")?;
            self.profile.take().map(|p| p.times).unwrap_or_default()
        } else {
            StageTimes::default()
        };
        self.end_pass();
        self.write_uniforms();
        Ok((self.encoder.take(), times))
    }

    /// Ends recording and submits without reading anything back.
    pub fn submit(self) -> Result<StageTimes> {
        let ctx = self.ctx;
        let (enc, times) = self.finish()?;
        if let Some(enc) = enc {
            ctx.queue.submit([enc.finish()]);
        }
        ctx.check()?;
        Ok(times)
    }
}
