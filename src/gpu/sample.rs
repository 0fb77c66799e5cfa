//! GPU sampling kernel family (`shaders/sample.wgsl`): one token id from a row of logits, left
//! on the GPU for the caller to read back (4 bytes). Greedy is one `argmax` dispatch;
//! temperature sampling orders the candidates with the radix top-k (score order: logit
//! descending, ties to the lower id — the twin's order) and `pick`s one with the caller's
//! uniform number. CPU twin: `crate::cpu::sample::sample`.

use super::buffer::GpuTensor;
use super::kernel::{Recorder, Shader};
use super::topk::top_k;
use crate::error::{Error, Result};
use crate::ops::SamplingParams;
use crate::ops::TopKOrder;

pub const SHADER: Shader = Shader {
    name: "sample",
    parts: &[include_str!("../../shaders/sample.wgsl")],
};

/// Must match `Params` in shaders/sample.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    x_off: u32,
    i_off: u32,
    o_off: u32,
    temperature: f32,
    top_p: f32,
    uniform: f32,
    _pad: u32,
}

/// Records the choice of one token id from `logits` (one row of vocab values) into a new (2)
/// u32 tensor: the id, then the lowest id whose logit is not finite (u32::MAX when all are;
/// see [`logits_error`]). `uniform` ∈ [0, 1) is the caller's random number (unused when
/// greedy).
pub fn sample(
    rec: &mut Recorder,
    logits: &GpuTensor,
    s: &SamplingParams,
    uniform: f32,
) -> Result<GpuTensor> {
    let n = logits.len();
    if n == 0 || logits.rows() != 1 {
        return Err(Error::input(format!(
            "sample: logits {:?} must be one non-empty row",
            logits.shape
        )));
    }
    if !(0.0..1.0).contains(&uniform) {
        return Err(Error::input(format!(
            "sample: the uniform number must lie in [0, 1), got {uniform}"
        )));
    }
    if !s.temperature.is_finite() || s.top_p.is_nan() {
        return Err(Error::input(format!(
            "sampling: temperature and top_p must be numbers, got {} and {}",
            s.temperature, s.top_p
        )));
    }
    let n32 = u32::try_from(n).map_err(|_| Error::input("sample: vocabulary exceeds 32 bits"))?;
    let out = rec.alloc("sample.id", &[2])?;
    let flat = logits.reshaped(&[n]);
    if s.is_greedy() || n == 1 {
        let p = Params {
            n: n32,
            x_off: flat.off(),
            o_off: out.off(),
            ..Default::default()
        };
        let pipeline = rec.ctx.pipeline(&SHADER, "argmax", &[])?;
        rec.dispatch(&pipeline, bytemuck::bytes_of(&p), &[&flat, &out], [1, 1, 1]);
        return Ok(out);
    }
    let k = if s.top_k > 0 { s.top_k.min(n) } else { n };
    let candidates = top_k(rec, &flat, k, TopKOrder::Score)?;
    let ids = &candidates.indices;
    let p = Params {
        n: k as u32,
        x_off: flat.off(),
        i_off: ids.off(),
        o_off: out.off(),
        temperature: s.temperature,
        top_p: s.top_p,
        uniform,
        _pad: 0,
    };
    let pipeline = rec.ctx.pipeline(&SHADER, "pick", &[])?;
    rec.dispatch(
        &pipeline,
        bytemuck::bytes_of(&p),
        &[&flat, &out, ids],
        [1, 1, 1],
    );
    // The top-k's scan already found the lowest non-finite logit.
    rec.copy(&candidates.status, &out.slice(1, 1))?;
    Ok(out)
}

/// The error for a read-back health word of `sample` (`Ok` for u32::MAX): a logit that is not
/// finite means the decoder overflowed f32 (or was fed non-finite inputs), and any token chosen
/// from it would be noise. The CPU executor raises the same text.
pub fn logits_error(bad: u32) -> Result<()> {
    if bad == u32::MAX {
        return Ok(());
    }
    Err(Error::NonFiniteLogits { token: bad })
}
