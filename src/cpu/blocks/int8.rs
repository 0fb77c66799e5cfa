//! The int8 block kernels (`Activations::Int8`): activations quantized per 32 values, integer
//! dot products on 256-bit registers, row by row or over the interleaved 8-row groups of
//! `BlockRows::interleave`. Written once over the instruction that sums 4 products of unsigned
//! weight bytes and signed activation bytes into each 32-bit lane ([`IntDot`]): AVX-512 VNNI's
//! `vpdpbusd`, or on AVX2-only CPUs (most laptops, AMD before Zen 4) `vpmaddubsw` (pairs into
//! 16 bits) then `vpmaddwd` against ones (pairs into 32), as llama.cpp does there. The 16-bit
//! step saturates past ±32767: unsigned bytes up to 63 (Q4_0, Q4_K, Q5_0, Q6_K) times
//! activations up to ±127 stay far below it, and Q8_0's signed weights go in as |w| against
//! the activations with w's sign ([`IntDot::Q8_OFFSET`]).

use super::Run;
use crate::gguf::GgmlType;
use crate::tensor::INTERLEAVE_ROWS;
use std::arch::x86_64::*;

/// The instruction sets the int8 kernels are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 VNNI (+VL, BW): `vpdpbusd`.
    Vnni,
    /// AVX2 with FMA and F16C: `vpmaddubsw` + `vpmaddwd`.
    Avx2,
}

impl Isa {
    /// The best this CPU runs, if any. `LINVT_CPU_INT8=avx2` takes the AVX2 kernels on a VNNI
    /// CPU too (to measure what AVX2-only machines get).
    pub fn detect() -> Option<Isa> {
        static DETECTED: std::sync::OnceLock<Option<Isa>> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let forced = std::env::var("LINVT_CPU_INT8").ok();
            Isa::runnable()
                .into_iter()
                .find(|isa| forced.as_deref() != Some("avx2") || *isa == Isa::Avx2)
        })
    }

    /// Every instruction set of these kernels this CPU runs, best first.
    pub fn runnable() -> Vec<Isa> {
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("f16c")
            && std::is_x86_feature_detected!("fma");
        let vnni = avx2
            && std::is_x86_feature_detected!("avx512vnni")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512f");
        [(vnni, Isa::Vnni), (avx2, Isa::Avx2)]
            .into_iter()
            .filter_map(|(has, isa)| has.then_some(isa))
            .collect()
    }
}

/// acc + Σ of 4 products u·s per 32-bit lane (u unsigned bytes, s signed).
trait IntDot {
    /// Whether Q8_0's weights go in made unsigned by +128 (the sums start from −128·Σs), else
    /// as |w| against s with w's sign.
    const Q8_OFFSET: bool;
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// The 32 bytes each 0xFF where that bit of `bits` is set, else 0.
    unsafe fn bit_bytes(bits: u32) -> __m256i;
}

struct Vnni;
struct Avx2;

impl IntDot for Vnni {
    const Q8_OFFSET: bool = true;
    #[inline(always)]
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, s)
    }
    #[inline(always)]
    unsafe fn bit_bytes(bits: u32) -> __m256i {
        _mm256_movm_epi8(bits)
    }
}

impl IntDot for Avx2 {
    const Q8_OFFSET: bool = false;
    #[inline(always)]
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
    #[inline(always)]
    unsafe fn bit_bytes(bits: u32) -> __m256i {
        // Byte j takes byte j/8 of `bits` (each 128-bit half shuffles within itself; the word
        // is in every lane), keeps bit j%8, and becomes all ones where it is set.
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(bits as i32),
            _mm256_setr_epi64x(
                0,
                0x0101_0101_0101_0101,
                0x0202_0202_0202_0202,
                0x0303_0303_0303_0303,
            ),
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit)
    }
}

/// Q8_0's 32 signed weight bytes `w` against the activations `q` (see [`IntDot::Q8_OFFSET`]).
#[inline(always)]
unsafe fn q8_dot<D: IntDot>(acc: __m256i, w: __m256i, q: __m256i) -> __m256i {
    match D::Q8_OFFSET {
        true => D::dot(acc, _mm256_xor_si256(w, _mm256_set1_epi8(-128)), q),
        false => D::dot(acc, _mm256_abs_epi8(w), _mm256_sign_epi8(q, w)),
    }
}

/// One row of activations quantized per 32 values: x ≈ d·q, d = amax/127 (f32), q rounded
/// to nearest (ties to even), so |x − d·q| ≤ d/2.
pub(crate) struct Int8Row {
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    /// d·Σq per block (Q4_K's mins multiply it).
    pub dsum: Vec<f32>,
    /// Per block, Σq over each 4 consecutive values (the lanes `vpdpbusd` sums into), times
    /// −8: the starting sums that take Q4_0's offset out exactly (shifted left for the other
    /// formats' offsets: −16, −32, −128).
    pub minus8: Vec<[i32; 8]>,
    /// Σq per block.
    pub sum: Vec<i32>,
}

impl Int8Row {
    /// x (a whole number of blocks of 32) quantized, with the instructions of `isa`.
    pub(crate) fn new(x: &[f32], isa: Isa) -> Int8Row {
        match isa {
            // SAFETY: `isa` is one `Isa::runnable` found.
            Isa::Vnni => unsafe { Int8Row::new_vnni(x) },
            Isa::Avx2 => unsafe { Int8Row::new_avx2(x) },
        }
    }

    /// [`Int8Row::new`] in plain arithmetic (compiled for AVX2): the same values as the
    /// AVX-512 form — the same amax, d, x·(1/d) in f32, rounded to nearest even.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn new_avx2(x: &[f32]) -> Int8Row {
        let nb = x.len() / 32;
        let mut row = Int8Row {
            q: Vec::with_capacity(nb * 32),
            d: Vec::with_capacity(nb),
            dsum: Vec::with_capacity(nb),
            minus8: Vec::with_capacity(nb),
            sum: Vec::with_capacity(nb),
        };
        for xs in x.chunks_exact(32) {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let q: [i8; 32] = std::array::from_fn(|i| (xs[i] * id).round_ties_even() as i8);
            let lanes: [i32; 8] =
                std::array::from_fn(|l| q[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum());
            let sum = lanes.iter().sum::<i32>();
            row.q.extend_from_slice(&q);
            row.d.push(d);
            row.sum.push(sum);
            row.dsum.push(d * sum as f32);
            row.minus8.push(lanes.map(|v| -8 * v));
        }
        row
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn new_vnni(x: &[f32]) -> Int8Row {
        let nb = x.len() / 32;
        let mut row = Int8Row {
            q: vec![0; nb * 32],
            d: Vec::with_capacity(nb),
            dsum: Vec::with_capacity(nb),
            minus8: Vec::with_capacity(nb),
            sum: Vec::with_capacity(nb),
        };
        let ones = _mm256_set1_epi8(1);
        for (b, xs) in x.chunks_exact(32).enumerate() {
            // SAFETY: xs holds 32 values, q 32 bytes from 32·b.
            unsafe {
                let v = [
                    _mm512_loadu_ps(xs.as_ptr()),
                    _mm512_loadu_ps(xs.as_ptr().add(16)),
                ];
                let amax =
                    _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
                let d = amax / 127.0;
                let id = _mm512_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
                for (h, v) in v.into_iter().enumerate() {
                    // Rounds to nearest, ties to even (the default rounding mode).
                    let q = _mm512_cvtps_epi32(_mm512_mul_ps(v, id));
                    let dst = row.q.as_mut_ptr().add(32 * b + 16 * h) as *mut __m128i;
                    _mm_storeu_si128(dst, _mm512_cvtepi32_epi8(q));
                }
                let q = _mm256_loadu_si256(row.q.as_ptr().add(32 * b) as *const __m256i);
                let mut lanes = [0i32; 8];
                let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q);
                _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sums);
                row.d.push(d);
                let sum = lanes.iter().sum::<i32>();
                row.sum.push(sum);
                row.dsum.push(d * sum as f32);
                row.minus8.push(lanes.map(|v| -8 * v));
            }
        }
        row
    }
}

/// out[r·m + i] = x_i · W row r for the rows of `run`; false (nothing written) for a type
/// without an integer kernel.
///
/// # Safety
/// `isa` is one [`Isa::runnable`] found.
pub(super) unsafe fn dots(isa: Isa, run: &Run, x: &[Int8Row], out: &mut [f32]) -> bool {
    match isa {
        Isa::Vnni => dots_vnni(run, x, out),
        Isa::Avx2 => dots_avx2(run, x, out),
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dots_vnni(run: &Run, x: &[Int8Row], out: &mut [f32]) -> bool {
    dots_with::<Vnni>(run, x, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots_avx2(run: &Run, x: &[Int8Row], out: &mut [f32]) -> bool {
    dots_with::<Avx2>(run, x, out)
}

/// [`dots`] for one instruction set: inlined, with every kernel, into a function compiled
/// for it.
#[inline(always)]
unsafe fn dots_with<D: IntDot>(run: &Run, x: &[Int8Row], out: &mut [f32]) -> bool {
    if !super::keeps(run.ty) {
        return false;
    }
    let m = x.len();
    let row_bytes = run.bytes.len() / run.rows;
    let (grouped, rest) = run.bytes.split_at(run.grouped * row_bytes);
    let (out_grouped, out_rest) = out.split_at_mut(run.grouped * m);
    // Interleaved groups: eight rows at a time, STREAMS groups side by side.
    let nb = row_bytes / run.ty.block().map_or(1, |b| b.1 as usize);
    let group_bytes = INTERLEAVE_ROWS * row_bytes;
    let mut groups = grouped.chunks_exact(STREAMS * group_bytes);
    let mut outs = out_grouped.chunks_exact_mut(STREAMS * INTERLEAVE_ROWS * m);
    for (groups, out) in groups.by_ref().zip(outs.by_ref()) {
        streams::<D, STREAMS>(run.ty, x, groups, nb, out);
    }
    let (rest_groups, rest_out) = (groups.remainder(), outs.into_remainder());
    for (group, out) in rest_groups
        .chunks_exact(group_bytes)
        .zip(rest_out.chunks_mut(INTERLEAVE_ROWS * m))
    {
        streams::<D, 1>(run.ty, x, group, nb, out);
    }
    // Rows after row: one row kernel per type, so each inlines into its loop.
    #[inline(always)]
    fn each(
        x: &[Int8Row],
        bytes: &[u8],
        row_bytes: usize,
        out: &mut [f32],
        dot: impl Fn(&Int8Row, &[u8]) -> f32,
    ) {
        for (row, out) in bytes.chunks_exact(row_bytes).zip(out.chunks_mut(x.len())) {
            for (o, x) in out.iter_mut().zip(x) {
                *o = dot(x, row);
            }
        }
    }
    match run.ty {
        GgmlType::Q8_0 => each(x, rest, row_bytes, out_rest, |x, r| q8_0::<D>(x, r)),
        GgmlType::Q4_0 => each(x, rest, row_bytes, out_rest, |x, r| q4_0::<D>(x, r)),
        GgmlType::Q5_0 => each(x, rest, row_bytes, out_rest, |x, r| q5_0::<D>(x, r)),
        GgmlType::Q4_K => each(x, rest, row_bytes, out_rest, |x, r| q4_k::<D>(x, r)),
        _ => each(x, rest, row_bytes, out_rest, |x, r| q6_k::<D>(x, r)),
    }
    true
}

/// Interleaved groups read side by side by the decode kernels, block by block. Each group is
/// one stream of bytes; on 4 KiB pages a stream stalls at every page it enters (a TLB miss,
/// and the hardware prefetcher starting over), and several streams in flight overlap those
/// stalls (llama.cpp's AMX-layout decode reads 4 as well). Measured on the Qwen2-0.5B decode
/// (2 threads, 4 KiB pages): q8_0 29.5 → 34–36 tokens/s, q4_0 +9 %, q4_k +11 %; 2 streams
/// gained less, 8 no more.
const STREAMS: usize = 4;

/// `S` interleaved groups (`groups`: S·8 rows, one group after another) against each row of
/// x, block by block in step: out[r·m + i] for the S·8 rows r.
#[inline(always)]
unsafe fn streams<D: IntDot, const S: usize>(
    ty: GgmlType,
    x: &[Int8Row],
    groups: &[u8],
    nb: usize,
    out: &mut [f32],
) {
    let m = x.len();
    let group_bytes = groups.len() / S;
    let group: [&[u8]; S] = std::array::from_fn(|g| &groups[g * group_bytes..][..group_bytes]);
    for (i, xi) in x.iter().enumerate() {
        let sums = match ty {
            GgmlType::Q4_0 => q4_0_x8::<D, S>(xi, group, nb),
            GgmlType::Q4_K => q4_k_x8::<D, S>(xi, group, nb),
            _ => q8_0_x8::<D, S>(xi, group, nb),
        };
        for (g, sums) in sums.into_iter().enumerate() {
            let mut lanes = [0f32; INTERLEAVE_ROWS];
            _mm256_storeu_ps(lanes.as_mut_ptr(), sums);
            for (r, v) in lanes.into_iter().enumerate() {
                out[(g * INTERLEAVE_ROWS + r) * m + i] = v;
            }
        }
    }
}

/// Bytes ahead of the block being read that the interleaved kernels ask the memory for. A
/// decode step streams every weight from memory once; these kernels spend more instructions
/// per byte than a copy, so without asking ahead the hardware prefetchers keep too few lines in
/// flight and each thread streams at a fraction of the memory's rate.
const PREFETCH_AHEAD: usize = 2048;

/// Asks for the `len` bytes at `at` + [`PREFETCH_AHEAD`] (a hint: addresses past the weight's
/// end are never read).
#[inline(always)]
unsafe fn prefetch_ahead(at: *const u8, len: usize) {
    for line in (0..len).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH_AHEAD + line) as *const i8);
    }
}

/// The 4 activations from `at` as one 32-bit lane in all 8.
#[inline(always)]
unsafe fn quad(x: &Int8Row, at: usize) -> __m256i {
    _mm256_set1_epi32(std::ptr::read_unaligned(x.q.as_ptr().add(at) as *const i32))
}

/// S interleaved groups of 8 rows of a format whose blocks start with the 8 rows' f16 scales
/// (Q4_0, Q8_0: `block_bytes` per block of 8 rows) against x, block by block in step: each
/// group's 8 dot products, Σ over blocks of `dot(block, b)` (the 8 rows' integer sums) times
/// d_w·d_x.
#[inline(always)]
unsafe fn scaled_x8<const S: usize>(
    x: &Int8Row,
    groups: [&[u8]; S],
    nb: usize,
    block_bytes: usize,
    dot: impl Fn(*const u8, usize) -> __m256i,
) -> [__m256; S] {
    assert!(groups.iter().all(|g| g.len() >= nb * block_bytes) && x.d.len() >= nb);
    let mut acc = [[_mm256_setzero_ps(); 2]; S];
    for b in 0..nb {
        // One stream alternates two sums (a shorter chain); several are chains of their own.
        let half = if S == 1 { b % 2 } else { 0 };
        for (group, acc) in groups.iter().zip(acc.iter_mut()) {
            let column = group.as_ptr().add(block_bytes * b);
            prefetch_ahead(column, block_bytes);
            let scale = _mm256_mul_ps(
                _mm256_cvtph_ps(_mm_loadu_si128(column as *const __m128i)),
                _mm256_set1_ps(x.d[b]),
            );
            let dot = _mm256_cvtepi32_ps(dot(column, b));
            acc[half] = _mm256_fmadd_ps(dot, scale, acc[half]);
        }
    }
    acc.map(|[a, b]| _mm256_add_ps(a, b))
}

/// S interleaved groups of 8 Q4_0 rows (`nb` blocks each) against x ([`scaled_x8`]). Each
/// 32-byte load holds 4 nibble pairs of every row, so `vpdpbusd` adds 4 products per row
/// against 4 broadcast activations.
#[inline(always)]
unsafe fn q4_0_x8<D: IntDot, const S: usize>(
    x: &Int8Row,
    groups: [&[u8]; S],
    nb: usize,
) -> [__m256; S] {
    let low = _mm256_set1_epi8(0x0F);
    scaled_x8(x, groups, nb, 144, |column, b| {
        // Σ (q − 8)·x = Σ q·x − 8·Σx, the second term the same for every row.
        let mut dot = [_mm256_set1_epi32(-8 * x.sum[b]), _mm256_setzero_si256()];
        for c in 0..4 {
            let v = _mm256_loadu_si256(column.add(16 + 32 * c) as *const __m256i);
            let lo = _mm256_and_si256(v, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            dot[0] = D::dot(dot[0], lo, quad(x, 32 * b + 4 * c));
            dot[1] = D::dot(dot[1], hi, quad(x, 32 * b + 16 + 4 * c));
        }
        _mm256_add_epi32(dot[0], dot[1])
    })
}

/// S interleaved groups of 8 Q4_K rows against x, block by block in step. Per block the 8
/// rows' 6-bit scales and mins are unpacked 8 rows at a time (each of the 12 scale bytes of
/// the 8 rows is one 64-bit word); per sub-block of 32: Σ q·x̂ for the 8 rows in one
/// register, times d·sc·d_x, less dmin·m·d_x·Σq.
#[inline(always)]
unsafe fn q4_k_x8<D: IntDot, const S: usize>(
    x: &Int8Row,
    groups: [&[u8]; S],
    nb: usize,
) -> [__m256; S] {
    assert!(groups.iter().all(|g| g.len() >= nb * 1152) && x.d.len() >= 8 * nb);
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [[_mm256_setzero_ps(); 2]; S];
    let mut mins = [_mm256_setzero_ps(); S];
    for b in 0..nb {
        for g in 0..S {
            let column = groups[g].as_ptr().add(1152 * b);
            prefetch_ahead(column, 1152);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(column as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(column.add(16) as *const __m128i));
            let q: [u64; 12] = std::array::from_fn(|i| {
                std::ptr::read_unaligned(column.add(32 + 8 * i) as *const u64)
            });
            // `get_scale_min_k4` on 8 rows at once (bytewise on 64-bit words).
            const LOW6: u64 = 0x3F3F_3F3F_3F3F_3F3F;
            const LOW4: u64 = 0x0F0F_0F0F_0F0F_0F0F;
            const TOP2: u64 = 0x0303_0303_0303_0303;
            let scale_min = |j: usize| match j {
                0..4 => (q[j] & LOW6, q[j + 4] & LOW6),
                _ => (
                    (q[j + 4] & LOW4) | (((q[j - 4] >> 6) & TOP2) << 4),
                    ((q[j + 4] >> 4) & LOW4) | (((q[j] >> 6) & TOP2) << 4),
                ),
            };
            let widen =
                |v: u64| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v as i64)));
            for sub in 0..4 {
                let mut dot = [_mm256_setzero_si256(); 2];
                for c in 0..8 {
                    let v =
                        _mm256_loadu_si256(column.add(128 + 32 * (8 * sub + c)) as *const __m256i);
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    let xb = 8 * b + 2 * sub;
                    dot[0] = D::dot(dot[0], lo, quad(x, 32 * xb + 4 * c));
                    dot[1] = D::dot(dot[1], hi, quad(x, 32 * (xb + 1) + 4 * c));
                }
                for (h, dot) in dot.into_iter().enumerate() {
                    let xb = 8 * b + 2 * sub + h;
                    let (sc, m) = scale_min(2 * sub + h);
                    let scale = _mm256_mul_ps(_mm256_mul_ps(d, widen(sc)), _mm256_set1_ps(x.d[xb]));
                    acc[g][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[g][h]);
                    let min = _mm256_mul_ps(dmin, widen(m));
                    mins[g] = _mm256_fmadd_ps(min, _mm256_set1_ps(x.dsum[xb]), mins[g]);
                }
            }
        }
    }
    std::array::from_fn(|g| _mm256_sub_ps(_mm256_add_ps(acc[g][0], acc[g][1]), mins[g]))
}

/// S interleaved groups of 8 Q8_0 rows against x ([`scaled_x8`], through [`q8_dot`]).
#[inline(always)]
unsafe fn q8_0_x8<D: IntDot, const S: usize>(
    x: &Int8Row,
    groups: [&[u8]; S],
    nb: usize,
) -> [__m256; S] {
    scaled_x8(x, groups, nb, 272, |column, b| {
        let start = match D::Q8_OFFSET {
            true => _mm256_set1_epi32(-128 * x.sum[b]),
            false => _mm256_setzero_si256(),
        };
        let mut dot = [start, _mm256_setzero_si256()];
        for c in 0..8 {
            let v = _mm256_loadu_si256(column.add(16 + 32 * c) as *const __m256i);
            dot[c % 2] = q8_dot::<D>(dot[c % 2], v, quad(x, 32 * b + 4 * c));
        }
        _mm256_add_epi32(dot[0], dot[1])
    })
}

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[inline(always)]
unsafe fn q32(x: &Int8Row, b: usize) -> __m256i {
    _mm256_loadu_si256(x.q.as_ptr().add(32 * b) as *const __m256i)
}

#[inline(always)]
unsafe fn lanes(v: &[i32; 8]) -> __m256i {
    _mm256_loadu_si256(v.as_ptr() as *const __m256i)
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Q8_0: Σ w·q exactly (through [`q8_dot`]), then d_w·d_x per block.
#[inline(always)]
unsafe fn q8_0<D: IntDot>(x: &Int8Row, row: &[u8]) -> f32 {
    let nb = row.len() / 34;
    assert!(row.len() == 34 * nb && x.d.len() >= nb);
    let mut acc = [_mm256_setzero_ps(); 2];
    for b in 0..nb {
        let p = row.as_ptr().add(34 * b);
        let w = _mm256_loadu_si256(p.add(2) as *const __m256i);
        let start = match D::Q8_OFFSET {
            true => _mm256_slli_epi32(lanes(&x.minus8[b]), 4),
            false => _mm256_setzero_si256(),
        };
        let dot = q8_dot::<D>(start, w, q32(x, b));
        let scale = _mm256_set1_ps(f16_at(p) * x.d[b]);
        acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[b % 2]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// Q4_0: the nibbles (0..16) against the activations, less 8·Σq, then d_w·d_x per block.
#[inline(always)]
unsafe fn q4_0<D: IntDot>(x: &Int8Row, row: &[u8]) -> f32 {
    let nb = row.len() / 18;
    assert!(row.len() == 18 * nb && x.d.len() >= nb);
    let low = _mm_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); 2];
    for b in 0..nb {
        let p = row.as_ptr().add(18 * b);
        let raw = _mm_loadu_si128(p.add(2) as *const __m128i);
        let nibbles = _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16(raw, 4), low),
            _mm_and_si128(raw, low),
        );
        let dot = D::dot(lanes(&x.minus8[b]), nibbles, q32(x, b));
        let scale = _mm256_set1_ps(f16_at(p) * x.d[b]);
        acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[b % 2]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// Q5_0: the 5-bit values (a nibble, and the fifth bit from `qh` as 16) against the
/// activations, less 16·Σq, then d_w·d_x per block.
#[inline(always)]
unsafe fn q5_0<D: IntDot>(x: &Int8Row, row: &[u8]) -> f32 {
    let nb = row.len() / 22;
    assert!(row.len() == 22 * nb && x.d.len() >= nb);
    let (low, sixteen) = (_mm_set1_epi8(0x0F), _mm256_set1_epi8(0x10));
    let mut acc = [_mm256_setzero_ps(); 2];
    for b in 0..nb {
        let p = row.as_ptr().add(22 * b);
        let qh = u32::from_le_bytes([*p.add(2), *p.add(3), *p.add(4), *p.add(5)]);
        let raw = _mm_loadu_si128(p.add(6) as *const __m128i);
        let nibbles = _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16(raw, 4), low),
            _mm_and_si128(raw, low),
        );
        let fifth = _mm256_and_si256(D::bit_bytes(qh), sixteen);
        let q = _mm256_or_si256(nibbles, fifth);
        let minus16 = _mm256_slli_epi32(lanes(&x.minus8[b]), 1);
        let dot = D::dot(minus16, q, q32(x, b));
        let scale = _mm256_set1_ps(f16_at(p) * x.d[b]);
        acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[b % 2]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// Q6_K: per 32 values the 6-bit values (4 low bits from `ql`, 2 high from `qh`) against
/// the activations, less 32·Σq per lane, then (d·sc)·d_x — the scale changing at the
/// middle lane (one per 16 values).
#[inline(always)]
unsafe fn q6_k<D: IntDot>(x: &Int8Row, row: &[u8]) -> f32 {
    let nb = row.len() / 210;
    assert!(row.len() == 210 * nb && x.d.len() >= 8 * nb);
    let (m4, m3) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3));
    let mut acc = [_mm256_setzero_ps(); 2];
    for b in 0..nb {
        let p = row.as_ptr().add(210 * b);
        let d = f16_at(p.add(208));
        let sc = p.add(192) as *const i8;
        for half in 0..2 {
            let load = |at: usize| _mm256_loadu_si256(p.add(at) as *const __m256i);
            let (l0, l1, hb) = (load(64 * half), load(64 * half + 32), load(128 + 32 * half));
            let high = |shift: i32| {
                let h = match shift {
                    0 => hb,
                    2 => _mm256_srli_epi16(hb, 2),
                    4 => _mm256_srli_epi16(hb, 4),
                    _ => _mm256_srli_epi16(hb, 6),
                };
                _mm256_slli_epi16(_mm256_and_si256(h, m3), 4)
            };
            // Values 32s.. of this half: low nibbles of l0, l1, then their high nibbles.
            let q = [
                _mm256_or_si256(_mm256_and_si256(l0, m4), high(0)),
                _mm256_or_si256(_mm256_and_si256(l1, m4), high(2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), high(4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), high(6)),
            ];
            for (s, q) in q.into_iter().enumerate() {
                let xb = 8 * b + 4 * half + s;
                let minus32 = _mm256_slli_epi32(lanes(&x.minus8[xb]), 2);
                let dot = D::dot(minus32, q, q32(x, xb));
                let k = d * x.d[xb];
                let (sa, sb) = (*sc.add(8 * half + 2 * s), *sc.add(8 * half + 2 * s + 1));
                let scale = _mm256_set_m128(_mm_set1_ps(k * sb as f32), _mm_set1_ps(k * sa as f32));
                acc[s % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[s % 2]);
            }
        }
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

/// Q4_K: per sub-block of 32, (d·sc)·Σ q·x̂ − (dmin·m)·Σx̂; the activation blocks line up
/// with the sub-blocks.
#[inline(always)]
unsafe fn q4_k<D: IntDot>(x: &Int8Row, row: &[u8]) -> f32 {
    let nb = row.len() / 144;
    assert!(row.len() == 144 * nb && x.d.len() >= 8 * nb);
    let low = _mm256_set1_epi8(0x0F);
    let zero = _mm256_setzero_si256();
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut mins = 0.0f32;
    for b in 0..nb {
        let p = row.as_ptr().add(144 * b);
        let (d, dmin) = (f16_at(p), f16_at(p.add(2)));
        let scales = std::slice::from_raw_parts(p.add(4), 12);
        for g in 0..4 {
            let v = _mm256_loadu_si256(p.add(16 + 32 * g) as *const __m256i);
            let halves = [
                _mm256_and_si256(v, low),
                _mm256_and_si256(_mm256_srli_epi16(v, 4), low),
            ];
            for (h, q) in halves.into_iter().enumerate() {
                let (sc, m) = super::avx512::scale_min(2 * g + h, scales);
                let xb = 8 * b + 2 * g + h;
                let dot = D::dot(zero, q, q32(x, xb));
                let scale = _mm256_set1_ps(d * sc * x.d[xb]);
                acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[h]);
                mins += dmin * m * x.dsum[xb];
            }
        }
    }
    hsum(_mm256_add_ps(acc[0], acc[1])) - mins
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::SeededRng;

    /// Both forms of the activations' quantization give the same bytes, scales and sums (the
    /// kernels of either instruction set see the same int8 activations), on random blocks, a
    /// zero block, a block whose amax is negative and one of exact ties (amax 127, so d = 1
    /// and the values ±0.5, ±1.5, … round to even).
    #[test]
    fn int8_rows_are_the_same_in_both_forms() {
        let vnni = Isa::runnable().contains(&Isa::Vnni);
        if !crate::cpu::kernels_for_tests(vnni, "AVX-512 VNNI", "LINVT_REQUIRE_AVX512") {
            return; // only the AVX2 form runs here: nothing to compare it with
        }
        let mut rng = SeededRng::new(4);
        let mut x = rng.vec(32 * 40, 3.0);
        x[32..64].fill(0.0);
        x[64] = -5.0;
        for (j, v) in x[96..128].iter_mut().enumerate() {
            *v = j as f32 - 15.5;
        }
        x[127] = 127.0;
        let (a, b) = (Int8Row::new(&x, Isa::Vnni), Int8Row::new(&x, Isa::Avx2));
        assert_eq!(a.q, b.q);
        assert_eq!(a.d, b.d);
        assert_eq!(a.dsum, b.dsum);
        assert_eq!(a.minus8, b.minus8);
        assert_eq!(a.sum, b.sum);
    }
}
