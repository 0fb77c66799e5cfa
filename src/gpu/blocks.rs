//! Block-quantized weights on the GPU (ggml's Q8_0, Q4_0, Q5_0, Q4_K, Q6_K): their device layout and
//! upload. The linear kernels read them through one prelude per format
//! (`shaders/linear_a_q*.wgsl`), which widen each value to f32 exactly as `crate::quant`'s
//! dequantizers do, so the CPU twin of a quantized product is the f32 product over the
//! dequantized weights.
//!
//! The device layout keeps ggml's bytes per value but puts every field on a 16-byte boundary,
//! so kernels read whole quads (a vec4<u32> load, or one texel — `super::texels` — on CPU
//! adapters, where buffer loads loop over the lanes):
//! - Q4_K (144 bytes per 256 values) as ggml stores it: d, dmin and the 12 scale bytes fill the
//!   first quad;
//! - Q8_0 (34 bytes per 32), Q4_0 (18 per 32) and Q6_K (210 per 256) in groups of eight blocks:
//!   the eight f16 scales `d` in the group's first quad, then each block's remaining bytes in
//!   ggml's order (32, 16 and 208 bytes: whole quads). 272, 144 and 1680 bytes per group;
//! - Q5_0 (22 bytes per 32) the same way, 176 bytes per group; its blocks' remaining 20 bytes
//!   (the high-bit word, 16 bytes of nibbles) are read word by word.
//!
//! Values are one row-major stream over the tensor, so a group may span rows; K only has to be
//! a multiple of the block. The last group is filled up with zero blocks.

use super::buffer::{Elem, GpuTensor};
use super::context::GpuContext;
use crate::error::{Error, Result};
use crate::gguf::GgmlType;

/// The block element types and the ggml types they hold: the one table both directions read.
const BLOCK_TYPES: [(Elem, GgmlType); 5] = [
    (Elem::Q8_0, GgmlType::Q8_0),
    (Elem::Q4_0, GgmlType::Q4_0),
    (Elem::Q5_0, GgmlType::Q5_0),
    (Elem::Q4K, GgmlType::Q4_K),
    (Elem::Q6K, GgmlType::Q6_K),
];

/// The ggml type of a block element type (None for the float types).
pub fn ggml_type(elem: Elem) -> Option<GgmlType> {
    BLOCK_TYPES
        .iter()
        .find(|(e, _)| *e == elem)
        .map(|&(_, t)| t)
}

/// The element type the linear kernels read ggml type `ty` as, if they read it.
pub fn elem_for(ty: GgmlType) -> Option<Elem> {
    BLOCK_TYPES.iter().find(|(_, t)| *t == ty).map(|&(e, _)| e)
}

/// ggml block bytes of `elem` (as `crate::quant` writes and GGUF files hold them) regrouped into
/// the device layout.
pub fn device_layout(elem: Elem, ggml: &[u8]) -> Result<Vec<u8>> {
    let ty = ggml_type(elem)
        .ok_or_else(|| Error::input(format!("{elem:?} is not a block-quantized type")))?;
    let block_bytes = ty.block().map_or(0, |(_, b)| b as usize);
    if block_bytes == 0 || !ggml.len().is_multiple_of(block_bytes) {
        return Err(Error::input(format!(
            "{ty} data of {} bytes is not a whole number of {block_bytes}-byte blocks",
            ggml.len()
        )));
    }
    let Some((group_values, group_bytes)) = elem.group() else {
        unreachable!("block types have groups")
    };
    let blocks = ggml.len() / block_bytes;
    let per_group = group_values / elem.block_values();
    if per_group == 1 {
        return Ok(ggml.to_vec());
    }
    // Where the scale `d` sits in a ggml block (the rest is copied in order).
    let d_at = match elem {
        Elem::Q6K => 208,
        _ => 0,
    };
    let zero = vec![0u8; block_bytes];
    let groups = blocks.div_ceil(per_group);
    let mut out = Vec::with_capacity(groups * group_bytes as usize);
    for g in 0..groups {
        let block = |i: usize| {
            let b = g * per_group + i;
            match b < blocks {
                true => &ggml[b * block_bytes..(b + 1) * block_bytes],
                false => &zero[..],
            }
        };
        for i in 0..per_group {
            out.extend_from_slice(&block(i)[d_at..d_at + 2]);
        }
        for i in 0..per_group {
            let b = block(i);
            out.extend_from_slice(&b[..d_at]);
            out.extend_from_slice(&b[d_at + 2..]);
        }
        debug_assert_eq!(out.len(), (g + 1) * group_bytes as usize);
    }
    Ok(out)
}

impl GpuContext {
    /// Quantizes `data` (a (rows, K) weight; K a multiple of `elem`'s block) to `elem` with
    /// `crate::quant` and uploads it in the device layout, into a buffer or (`texels`) as
    /// texels.
    pub fn upload_blocks(
        &self,
        name: &str,
        shape: &[usize],
        data: &[f32],
        elem: Elem,
        texels: bool,
    ) -> Result<GpuTensor> {
        let ty = ggml_type(elem)
            .ok_or_else(|| Error::input(format!("`{name}`: {elem:?} is not a block type")))?;
        let cols = shape.last().copied().unwrap_or(1);
        if !cols.is_multiple_of(elem.block_values()) {
            return Err(Error::input(format!(
                "`{name}` {shape:?}: {ty} needs rows of a multiple of {} values",
                elem.block_values()
            )));
        }
        let ggml =
            crate::quant::quantize(ty, data).map_err(|e| Error::input(format!("`{name}`: {e}")))?;
        self.upload_ggml_blocks_in(name, shape, &ggml, elem, texels)
    }

    /// Uploads ggml block bytes (as a GGUF file holds them) of a `shape` tensor of `elem` into a
    /// buffer.
    pub fn upload_ggml_blocks(
        &self,
        name: &str,
        shape: &[usize],
        ggml: &[u8],
        elem: Elem,
    ) -> Result<GpuTensor> {
        self.upload_ggml_blocks_in(name, shape, ggml, elem, false)
    }

    /// [`GpuContext::upload_ggml_blocks`] into a buffer, or (`texels`) as u32 texels.
    pub fn upload_ggml_blocks_in(
        &self,
        name: &str,
        shape: &[usize],
        ggml: &[u8],
        elem: Elem,
        texels: bool,
    ) -> Result<GpuTensor> {
        let elements: usize = shape.iter().product();
        let ty = ggml_type(elem)
            .ok_or_else(|| Error::input(format!("`{name}`: {elem:?} is not a block type")))?;
        if ty.size_bytes(elements as u64) != Some(ggml.len() as u64) {
            return Err(Error::input(format!(
                "`{name}`: {} bytes of {ty} do not hold a {shape:?} tensor",
                ggml.len()
            )));
        }
        let bytes = device_layout(elem, ggml)?;
        match texels {
            true => self.upload_texel_bytes(name, shape, &bytes, elem),
            false => self.upload_bytes(name, shape, bytes, elem),
        }
    }
}
