//! Weights stored as texels: a tensor's values laid out as flat memory in a 2-D array texture of
//! 16-byte texels — four f32 values per `rgba32float` texel, eight bf16 values (packed two
//! per u32 as in bf16 buffers) or 16 bytes of ggml blocks (`super::blocks`) per `rgba32uint`
//! texel — [`ROW_TEXELS`] texels per texture row
//! and [`LAYER_ROWS`] rows per array layer. Texel `i` of the flat tensor is texel
//! (i mod 4096, ⌊i / 4096⌋ mod 4096) of layer ⌊i / 4096²⌋ — `texel_coords` in
//! `shaders/texels.wgsl`, the one place kernels learn the layout.
//!
//! Why: on CPU adapters (llvmpipe, Mesa 22.3) every storage-buffer load whose address differs
//! between lanes runs as a loop over the lanes with a bounds check and a branch per component,
//! while a texel fetch is one branch-free gather of 16 bytes per lane. The matrix-vector
//! products of token-by-token decoding are nothing but weight loads, so there the weights are
//! read twice as fast from texels (measured: 9728×896 GEMV 5.3 → 10.7–12.7 GB/s). A fetch costs
//! about the same whatever the texel format, so bf16 weights, eight per fetch, are read nearly
//! twice as fast again in values per second (2.5 → 4.8 G weights/s on the same product). Only
//! the linear kernel (weight operand) and the row gather (embedding lookup) read texels; any
//! other op refuses such a tensor with an error.

use std::borrow::Cow;
use std::sync::Arc;

use super::buffer::{Elem, GpuTensor, Store};
use super::context::GpuContext;
use crate::error::{Error, Result};

/// Texels per texture row (2¹²): matches `texel_coords` in `shaders/texels.wgsl`.
pub const ROW_TEXELS: u32 = 4096;
/// Texture rows per array layer (2¹²): matches `texel_coords`.
pub const LAYER_ROWS: u32 = 4096;
/// Bytes per texel (rgba32float, rgba32uint).
const TEXEL_BYTES: u64 = 16;

/// Texels `elements` values of `elem` take, or None when no kernel reads that element type from
/// texels (f16).
fn texels_for(elements: usize, elem: Elem) -> Option<u64> {
    match elem {
        Elem::F16 => None,
        _ => Some(elem.bytes_for(elements).div_ceil(TEXEL_BYTES)),
    }
}

/// Where a GPU executor stores linear weights and embedding tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// Storage buffers (what every kernel reads).
    Buffers,
    /// Textures (`upload_texels`): faster weight loads on CPU adapters.
    Texels,
}

impl WeightLayout {
    /// Texels on native CPU adapters (llvmpipe: weight loads twice as fast, see the module
    /// doc), buffers elsewhere: real GPUs load buffers at full bandwidth, and the browser's CPU
    /// adapter (SwiftShader) is unmeasured with texels.
    pub fn for_adapter(ctx: &GpuContext) -> Self {
        Self::for_device_type(ctx.info.device_type)
    }

    /// [`Self::for_adapter`] from the adapter's type alone.
    pub fn for_device_type(t: wgpu::DeviceType) -> Self {
        if t == wgpu::DeviceType::Cpu && !cfg!(target_arch = "wasm32") {
            WeightLayout::Texels
        } else {
            WeightLayout::Buffers
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightLayout::Buffers => "buffers",
            WeightLayout::Texels => "texels",
        }
    }
}

/// The texture behind a tensor stored as texels.
pub struct Texels {
    pub(crate) texture: wgpu::Texture,
    pub(crate) view: wgpu::TextureView,
    rows: u32,
    layers: u32,
}

/// (texture rows, array layers) holding `texels` texels: one partial layer of just enough rows,
/// or whole layers.
fn extent(texels: u64) -> (u32, u32) {
    let rows = texels.div_ceil(ROW_TEXELS as u64).max(1);
    if rows <= LAYER_ROWS as u64 {
        (rows as u32, 1)
    } else {
        (LAYER_ROWS, rows.div_ceil(LAYER_ROWS as u64) as u32)
    }
}

impl Texels {
    /// Bytes of the whole texture (what a read-back copies).
    pub fn byte_size(&self) -> u64 {
        ROW_TEXELS as u64 * self.rows as u64 * self.layers as u64 * TEXEL_BYTES
    }

    fn size(&self) -> wgpu::Extent3d {
        wgpu::Extent3d {
            width: ROW_TEXELS,
            height: self.rows,
            depth_or_array_layers: self.layers,
        }
    }

    /// Records a copy of the whole texture, in the flat layout, into `dst` (≥ `byte_size`).
    pub fn copy_to_buffer(&self, encoder: &mut wgpu::CommandEncoder, dst: &wgpu::Buffer) {
        encoder.copy_texture_to_buffer(
            self.texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: dst,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(ROW_TEXELS * TEXEL_BYTES as u32),
                    rows_per_image: Some(self.rows),
                },
            },
            self.size(),
        );
    }
}

impl GpuContext {
    /// True when `elements` values of `elem` fit one texel-stored tensor on this device (never
    /// for f16, which texels do not hold).
    pub fn fits_texels(&self, elements: usize, elem: Elem) -> bool {
        let Some(texels) = texels_for(elements, elem) else {
            return false;
        };
        let (rows, layers) = extent(texels);
        let side = self.limits.max_texture_dimension_2d;
        ROW_TEXELS <= side && rows <= side && layers <= self.limits.max_texture_array_layers
    }

    /// Uploads f32 `data` of `shape` as a weight stored as f32 texels (see the module doc).
    pub fn upload_texels(&self, name: &str, shape: &[usize], data: &[f32]) -> Result<GpuTensor> {
        self.upload_texels_as(name, shape, data, Elem::F32)
    }

    /// Uploads f32 `data` of `shape` as a weight stored as texels of `elem`: f32, or bf16
    /// (rounded to nearest even; exact for values that came from bf16).
    pub fn upload_texels_as(
        &self,
        name: &str,
        shape: &[usize],
        data: &[f32],
        elem: Elem,
    ) -> Result<GpuTensor> {
        let elements: usize = shape.iter().product();
        if elements != data.len() {
            return Err(Error::input(format!(
                "`{name}`: shape {shape:?} needs {elements} values, got {}",
                data.len()
            )));
        }
        if elem.is_blocks() {
            return Err(Error::input(format!(
                "`{name}`: {elem:?} texels take block bytes (upload_blocks), not values"
            )));
        }
        // Texel contents as u32 words (four per texel): f32 bits, or bf16 pairs.
        let words: Cow<[u32]> = match elem {
            Elem::Bf16 => Cow::Owned(
                data.chunks(2)
                    .map(|pair| {
                        let bits = |v: f32| half::bf16::from_f32(v).to_bits() as u32;
                        bits(pair[0]) | pair.get(1).map_or(0, |&v| bits(v) << 16)
                    })
                    .collect(),
            ),
            _ => Cow::Borrowed(bytemuck::cast_slice(data)),
        };
        self.upload_texel_words(name, shape, &words, elem)
    }

    /// Uploads the device bytes of a `shape` tensor of a block type (`super::blocks`) as
    /// rgba32uint texels.
    pub(crate) fn upload_texel_bytes(
        &self,
        name: &str,
        shape: &[usize],
        bytes: &[u8],
        elem: Elem,
    ) -> Result<GpuTensor> {
        // The device layout is whole 16-byte quads, so whole words.
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(bytes);
        self.upload_texel_words(name, shape, &words, elem)
    }

    /// `words` (the texels' contents, four per texel) of a `shape` tensor of `elem` into a new
    /// texture.
    fn upload_texel_words(
        &self,
        name: &str,
        shape: &[usize],
        words: &[u32],
        elem: Elem,
    ) -> Result<GpuTensor> {
        let elements: usize = shape.iter().product();
        let Some(texels) = texels_for(elements, elem) else {
            return Err(Error::input(format!(
                "`{name}`: {elem:?} weights cannot be stored as texels (f32, bf16 and ggml blocks can)"
            )));
        };
        if !self.fits_texels(elements, elem) {
            let max_side = self.limits.max_texture_dimension_2d;
            return Err(Error::TensorTooLarge {
                tensor: name.to_string(),
                bytes: elem.bytes_for(elements),
                limit: ROW_TEXELS.min(max_side) as u64
                    * LAYER_ROWS.min(max_side) as u64
                    * self.limits.max_texture_array_layers as u64
                    * TEXEL_BYTES,
                hint: "store the weights in buffers (weight layout `buffers`) on this adapter"
                    .into(),
            });
        }
        let format = match elem {
            Elem::F32 => wgpu::TextureFormat::Rgba32Float,
            _ => wgpu::TextureFormat::Rgba32Uint,
        };
        let (rows, layers) = extent(texels);
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(name),
            size: wgpu::Extent3d {
                width: ROW_TEXELS,
                height: rows,
                depth_or_array_layers: layers,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::COPY_DST
                | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        // Written one band of rows at a time, so the staging copy stays small for big tables.
        let row_words = ROW_TEXELS as usize * 4;
        let band_rows = 1024usize;
        let total_rows = rows as usize * layers as usize;
        for first in (0..total_rows).step_by(band_rows) {
            let n = band_rows.min(total_rows - first);
            let start = (first * row_words).min(words.len());
            let end = ((first + n) * row_words).min(words.len());
            let mut band = words[start..end].to_vec();
            band.resize(n * row_words, 0);
            let (layer, row) = (first / LAYER_ROWS as usize, first % LAYER_ROWS as usize);
            // Bands never straddle layers: LAYER_ROWS is a multiple of the band height.
            self.queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture: &texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: row as u32,
                        z: layer as u32,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                bytemuck::cast_slice(&band),
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(ROW_TEXELS * TEXEL_BYTES as u32),
                    rows_per_image: Some(n as u32),
                },
                wgpu::Extent3d {
                    width: ROW_TEXELS,
                    height: n as u32,
                    depth_or_array_layers: 1,
                },
            );
        }
        let view = texture.create_view(&wgpu::TextureViewDescriptor {
            dimension: Some(wgpu::TextureViewDimension::D2Array),
            ..Default::default()
        });
        self.check()?;
        Ok(GpuTensor {
            store: Arc::new(Store::Texels(Texels {
                texture,
                view,
                rows,
                layers,
            })),
            offset: 0,
            shape: shape.to_vec(),
            elem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_uses_one_partial_layer_or_whole_layers() {
        assert_eq!(extent(0), (1, 1));
        assert_eq!(extent(1), (1, 1));
        assert_eq!(extent(4096), (1, 1));
        assert_eq!(extent(4097), (2, 1));
        let layer = 4096 * 4096;
        assert_eq!(extent(layer), (4096, 1));
        assert_eq!(extent(layer + 1), (4096, 2));
    }
}
