//! Device tensors and the buffer pool.
//!
//! A `GpuTensor` is a view (element offset + shape) into a storage buffer of 4-byte elements
//! (f32 or u32), or of f16 or bf16 weights ([`Elem::F16`], [`Elem::Bf16`], read only by the
//! linear kernel's variants for them), or into a weight stored as texels (`super::texels`,
//! read only by the linear kernel and the row gather). Kernels take the offset as a parameter,
//! so row slices and weight sub-blocks are free. Intermediates come from a `BufferPool`: when the last view of a pooled buffer is
//! dropped, the buffer goes back to the pool and the next allocation of that size takes it —
//! also within one recording, which is safe because a queue runs its commands in order and wgpu
//! inserts the barriers between dispatches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[cfg(not(target_arch = "wasm32"))]
use wgpu::util::DeviceExt;

use super::context::GpuContext;
use crate::error::{Error, Result};

pub const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

#[derive(Default, Clone)]
pub struct BufferPool {
    free: Arc<Mutex<HashMap<u64, Vec<wgpu::Buffer>>>>,
}

impl BufferPool {
    /// Bytes of the buffers idle in the pool.
    pub fn idle_bytes(&self) -> u64 {
        self.free
            .lock()
            .map(|m| m.iter().map(|(size, v)| size * v.len() as u64).sum())
            .unwrap_or(0)
    }

    /// Buffers currently idle in the pool (for tests of reuse).
    pub fn idle_count(&self) -> usize {
        self.free
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

/// A buffer that returns to its pool when the last view of it is dropped.
pub struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: Option<BufferPool>,
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let (Some(buf), Some(pool)) = (self.buffer.take(), &self.pool) {
            if let Ok(mut free) = pool.free.lock() {
                free.entry(buf.size()).or_default().push(buf);
            }
        }
    }
}

/// What one element of a [`GpuTensor`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// 4 bytes: f32 (or u32 for indices).
    F32,
    /// 2 bytes: f16 weight storage (converted to f32 as the kernel loads it).
    F16,
    /// 2 bytes: bf16 weight storage, the upper half of an f32 (widened exactly as the kernel
    /// loads it; needs no device feature). Exact for checkpoints stored in bf16.
    Bf16,
    /// ggml's Q8_0 blocks (32 values, 8.5 bits each), in the device layout of `super::blocks`.
    Q8_0,
    /// ggml's Q4_0 blocks (32 values, 4.5 bits each).
    Q4_0,
    /// ggml's Q5_0 blocks (32 values, 5.5 bits each; GGUF files of models whose rows do not fit
    /// Q4_K use them).
    Q5_0,
    /// ggml's Q4_K super-blocks (256 values, 4.5 bits each).
    Q4K,
    /// ggml's Q6_K super-blocks (256 values, 6.5625 bits each).
    Q6K,
}

impl Elem {
    /// Bytes `elements` values take in a buffer of this type (before padding).
    pub fn bytes_for(self, elements: usize) -> u64 {
        match self.group() {
            None => elements as u64 * self.float_bytes(),
            Some((values, bytes)) => elements.div_ceil(values) as u64 * bytes,
        }
    }

    /// Bytes per value of a float type; for block types, the average rounded up (sizes are
    /// [`Elem::bytes_for`]'s).
    fn float_bytes(self) -> u64 {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::Bf16 => 2,
            Elem::Q8_0 | Elem::Q4_0 | Elem::Q5_0 | Elem::Q4K | Elem::Q6K => 1,
        }
    }

    /// Bits one value takes (block types: with their scales).
    pub fn bits_per_value(self) -> f64 {
        match self.group() {
            None => self.float_bytes() as f64 * 8.0,
            Some((values, bytes)) => bytes as f64 * 8.0 / values as f64,
        }
    }

    /// True for the block-quantized types.
    pub fn is_blocks(self) -> bool {
        self.group().is_some()
    }

    /// Values per quantization block (1 for floats): K must be a multiple of it.
    pub fn block_values(self) -> usize {
        super::blocks::ggml_type(self)
            .and_then(|t| t.block())
            .map_or(1, |(values, _)| values as usize)
    }

    /// (values, bytes) of one group of the device layout (`super::blocks`); None for floats.
    pub(crate) fn group(self) -> Option<(usize, u64)> {
        match self {
            Elem::F32 | Elem::F16 | Elem::Bf16 => None,
            Elem::Q8_0 => Some((256, 272)),
            Elem::Q4_0 => Some((256, 144)),
            Elem::Q5_0 => Some((256, 176)),
            Elem::Q4K => Some((256, 144)),
            Elem::Q6K => Some((2048, 1680)),
        }
    }
}

/// Where a tensor's elements live.
pub(crate) enum Store {
    Buffer(PooledBuffer),
    Texels(super::texels::Texels),
}

#[derive(Clone)]
pub struct GpuTensor {
    pub(crate) store: Arc<Store>,
    /// Offset of the first element, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub elem: Elem,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuTensor({:?} @ {}, {:?}{})",
            self.shape,
            self.offset,
            self.elem,
            if self.is_texels() { ", texels" } else { "" }
        )
    }
}

impl GpuTensor {
    /// The storage buffer holding this tensor; an error for a weight stored as texels, which
    /// only the kernels that read texels take.
    pub fn buffer(&self) -> Result<&wgpu::Buffer> {
        match &*self.store {
            Store::Buffer(b) => Ok(b.buffer.as_ref().expect("buffer present until drop")),
            Store::Texels(_) => Err(Error::input(format!(
                "{self:?} is a weight stored as texels; only `linear` (as the weight) and `gather_rows` read such tensors"
            ))),
        }
    }
    /// The resource a kernel binds for this tensor: the whole buffer, or the texel view.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        match &*self.store {
            Store::Buffer(b) => b
                .buffer
                .as_ref()
                .expect("buffer present until drop")
                .as_entire_binding(),
            Store::Texels(t) => wgpu::BindingResource::TextureView(&t.view),
        }
    }
    /// True for a weight stored as texels (see `super::texels`).
    pub fn is_texels(&self) -> bool {
        matches!(&*self.store, Store::Texels(_))
    }
    pub(crate) fn texels(&self) -> Option<&super::texels::Texels> {
        match &*self.store {
            Store::Texels(t) => Some(t),
            Store::Buffer(_) => None,
        }
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    pub fn rows(&self) -> usize {
        self.len() / self.cols().max(1)
    }
    /// Offset as the u32 kernels take.
    pub fn off(&self) -> u32 {
        self.offset as u32
    }
    /// Rows `start..start+len` of this tensor seen as (rows, cols).
    pub fn rows_view(&self, start: usize, len: usize) -> GpuTensor {
        let c = self.cols();
        GpuTensor {
            store: self.store.clone(),
            offset: self.offset + start * c,
            shape: vec![len, c],
            elem: self.elem,
        }
    }
    /// Elements `start..start+len` as a 1-D view.
    pub fn slice(&self, start: usize, len: usize) -> GpuTensor {
        GpuTensor {
            store: self.store.clone(),
            offset: self.offset + start,
            shape: vec![len],
            elem: self.elem,
        }
    }
    /// Same elements, another shape.
    pub fn reshaped(&self, shape: &[usize]) -> GpuTensor {
        debug_assert_eq!(shape.iter().product::<usize>(), self.len());
        GpuTensor {
            store: self.store.clone(),
            offset: self.offset,
            shape: shape.to_vec(),
            elem: self.elem,
        }
    }
    /// True when both views share one buffer or texture (used to assert in-place safety).
    pub fn same_buffer(&self, other: &GpuTensor) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
    }
}

fn byte_size(elements: usize) -> u64 {
    padded_bytes(elements * 4)
}

/// Rounds to 256 bytes so pooled sizes coincide more often; never zero-sized.
fn padded_bytes(bytes: usize) -> u64 {
    ((bytes.max(1) as u64).div_ceil(256)) * 256
}

impl GpuContext {
    /// Checks that `elements` 4-byte values fit one storage binding on this device.
    pub fn check_fits(&self, name: &str, elements: usize) -> Result<()> {
        self.check_fits_bytes(name, (elements as u64) * 4)
    }

    fn check_fits_bytes(&self, name: &str, bytes: u64) -> Result<()> {
        let limit = self.max_binding_bytes();
        if bytes > limit {
            return Err(Error::TensorTooLarge {
                tensor: name.to_string(),
                bytes,
                limit,
                hint: "reduce the number of frames (T) or tokens per frame (N), or use an adapter with a larger maxStorageBufferBindingSize".into(),
            });
        }
        Ok(())
    }

    /// A pooled, uninitialised tensor (contents are whatever the pool held).
    pub fn alloc(&self, pool: &BufferPool, name: &str, shape: &[usize]) -> Result<GpuTensor> {
        let elements: usize = shape.iter().product();
        self.check_fits(name, elements)?;
        let size = byte_size(elements);
        let reused = pool
            .free
            .lock()
            .ok()
            .and_then(|mut m| m.get_mut(&size).and_then(Vec::pop));
        let buffer = match reused {
            Some(b) => b,
            None => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size,
                usage: STORAGE_USAGE,
                mapped_at_creation: false,
            }),
        };
        Ok(GpuTensor {
            store: Arc::new(Store::Buffer(PooledBuffer {
                buffer: Some(buffer),
                pool: Some(pool.clone()),
            })),
            offset: 0,
            shape: shape.to_vec(),
            elem: Elem::F32,
        })
    }

    /// Uploads 4-byte elements (f32 or u32) into a new, unpooled tensor.
    pub fn upload<T: bytemuck::Pod>(
        &self,
        name: &str,
        shape: &[usize],
        data: &[T],
    ) -> Result<GpuTensor> {
        assert_eq!(std::mem::size_of::<T>(), 4, "tensors hold 4-byte elements");
        self.upload_elems(name, shape, data, Elem::F32)
    }

    /// Uploads `data` as f16 weights (rounded to nearest) into a new, unpooled tensor. Only the
    /// linear kernel reads such tensors, and only on adapters with SHADER_F16.
    pub fn upload_f16(&self, name: &str, shape: &[usize], data: &[f32]) -> Result<GpuTensor> {
        if !self.has_f16() {
            return Err(Error::input(format!(
                "`{name}`: f16 weights need an adapter with SHADER_F16; {} has none (use f32 weights)",
                self.adapter_name()
            )));
        }
        let halves: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
        self.upload_elems(name, shape, &halves, Elem::F16)
    }

    /// Uploads `data` as bf16 weights (rounded to nearest even; exact for values that came
    /// from bf16) into a new, unpooled tensor. Only the linear kernel reads such tensors.
    pub fn upload_bf16(&self, name: &str, shape: &[usize], data: &[f32]) -> Result<GpuTensor> {
        let halves: Vec<half::bf16> = data.iter().map(|&v| half::bf16::from_f32(v)).collect();
        self.upload_elems(name, shape, &halves, Elem::Bf16)
    }

    /// Uploads f32 `data` as `elem`s (rounded to f16 or bf16 where asked) into a new, unpooled
    /// tensor.
    pub fn upload_as(
        &self,
        name: &str,
        shape: &[usize],
        data: &[f32],
        elem: Elem,
    ) -> Result<GpuTensor> {
        match elem {
            Elem::F32 => self.upload(name, shape, data),
            Elem::F16 => self.upload_f16(name, shape, data),
            Elem::Bf16 => self.upload_bf16(name, shape, data),
            _ => self.upload_blocks(name, shape, data, elem, false),
        }
    }

    /// `data` (elements of `elem`'s size) into a new, unpooled buffer padded to 256 bytes.
    fn upload_elems<T: bytemuck::Pod>(
        &self,
        name: &str,
        shape: &[usize],
        data: &[T],
        elem: Elem,
    ) -> Result<GpuTensor> {
        let elements: usize = shape.iter().product();
        if elements != data.len() {
            return Err(Error::input(format!(
                "`{name}`: shape {shape:?} needs {elements} values, got {}",
                data.len()
            )));
        }
        self.upload_bytes(name, shape, bytemuck::cast_slice(data).to_vec(), elem)
    }

    /// `bytes` (the `shape` tensor's values as `elem`, in its device layout) into a new,
    /// unpooled buffer padded to 256 bytes.
    pub(crate) fn upload_bytes(
        &self,
        name: &str,
        shape: &[usize],
        mut bytes: Vec<u8>,
        elem: Elem,
    ) -> Result<GpuTensor> {
        let bytes_len = bytes.len();
        self.check_fits_bytes(name, bytes_len as u64)?;
        bytes.resize(padded_bytes(bytes_len) as usize, 0);
        // In the browser a buffer mapped at creation is a second copy in wasm memory until it is
        // unmapped; `write_buffer` copies straight from these bytes (a model's largest tensor
        // sets the page's peak memory).
        #[cfg(target_arch = "wasm32")]
        let buffer = {
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size: bytes.len() as u64,
                usage: STORAGE_USAGE,
                mapped_at_creation: false,
            });
            self.queue.write_buffer(&buffer, 0, &bytes);
            buffer
        };
        #[cfg(not(target_arch = "wasm32"))]
        let buffer = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents: &bytes,
                usage: STORAGE_USAGE,
            });
        Ok(GpuTensor {
            store: Arc::new(Store::Buffer(PooledBuffer {
                buffer: Some(buffer),
                pool: None,
            })),
            offset: 0,
            shape: shape.to_vec(),
            elem,
        })
    }

    /// Copies the given tensors to host memory with one submission (after `encoder`, if any).
    pub async fn read_back(
        &self,
        encoder: Option<wgpu::CommandEncoder>,
        tensors: &[&GpuTensor],
    ) -> Result<Vec<Vec<u8>>> {
        let mut encoder = encoder.unwrap_or_else(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("readback"),
                })
        });
        if let Some(t) = tensors.iter().find(|t| t.elem != Elem::F32) {
            return Err(Error::input(format!(
                "reading back {t:?}: only 4-byte tensors can be read back"
            )));
        }
        // (staging buffer, first byte of the tensor in it, bytes)
        let mut staging = Vec::with_capacity(tensors.len());
        for t in tensors {
            let staging_buffer = |size: u64| {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("staging"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            };
            if let Some(texels) = t.texels() {
                // The whole texture comes back; the view's elements are cut out on the host.
                let s = staging_buffer(texels.byte_size());
                texels.copy_to_buffer(&mut encoder, &s);
                staging.push((s, t.offset * 4, t.len() * 4));
                continue;
            }
            let bytes = (t.len().max(1) * 4) as u64;
            let s = staging_buffer(bytes);
            if !t.is_empty() {
                encoder.copy_buffer_to_buffer(t.buffer()?, t.offset as u64 * 4, &s, 0, bytes);
            }
            staging.push((s, 0, t.len() * 4));
        }
        self.queue.submit([encoder.finish()]);
        let mut receivers = Vec::with_capacity(staging.len());
        for (s, _, _) in &staging {
            let (tx, rx) = futures_channel::oneshot::channel();
            s.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            receivers.push(rx);
        }
        self.wait_idle()?;
        let mut out = Vec::with_capacity(staging.len());
        for ((s, start, len), rx) in staging.iter().zip(receivers) {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::Gpu(format!("reading results back failed: {e}"))),
                Err(_) => {
                    self.check()?;
                    return Err(Error::Gpu("reading results back was cancelled".into()));
                }
            }
            let view = s
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu(format!("mapping results failed: {e}")))?;
            out.push(view[*start..start + len].to_vec());
            drop(view);
            s.unmap();
        }
        self.check()?;
        Ok(out)
    }

    /// Reads f32 tensors back (blocking; native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(&self, t: &GpuTensor) -> Result<Vec<f32>> {
        let b = pollster::block_on(self.read_back(None, &[t]))?;
        Ok(bytemuck::pod_collect_to_vec(&b[0]))
    }
    /// Reads u32 tensors back (blocking; native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32(&self, t: &GpuTensor) -> Result<Vec<u32>> {
        let b = pollster::block_on(self.read_back(None, &[t]))?;
        Ok(bytemuck::pod_collect_to_vec(&b[0]))
    }
}
