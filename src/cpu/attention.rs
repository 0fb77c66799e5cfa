//! CPU twin of the attention kernel. (stub: to be written)

/// Which axis of a (T, N, ·) tensor a self-attention runs along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Over the T frames, independently for each token position n.
    Frames,
    /// Over the N tokens, independently for each frame t.
    Tokens,
}

/// Where one operand's rows live: element offset, stride between groups, stride between rows.
/// Head h of a row starts at `h * head_dim` within the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operand {
    pub offset: usize,
    pub group_stride: usize,
    pub row_stride: usize,
}

/// out[g, i, h] = Σ_j softmax_j(scale · q[g,i,h]·k[g,j,h]) v[g,j,h] for every group g, query row
/// i < q_len, head h; j < kv_len.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnGeometry {
    pub groups: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub q: Operand,
    pub k: Operand,
    pub v: Operand,
    pub out: Operand,
}

impl AttnGeometry {
    /// Self-attention along `axis` of a packed qkv tensor (T, N, 3E) = [q | k | v] per row,
    /// writing (T, N, E). Scale 1/√(E/heads).
    pub fn along_axis(frames: usize, tokens: usize, embed: usize, heads: usize, axis: Axis) -> Self {
        let _ = (frames, tokens, embed, heads, axis);
        unimplemented!("AttnGeometry::along_axis")
    }
    /// Cross-attention: q (q_len, E), k and v (kv_len, E), out (q_len, E). Scale 1/√(E/heads).
    pub fn cross(q_len: usize, kv_len: usize, embed: usize, heads: usize) -> Self {
        let _ = (q_len, kv_len, embed, heads);
        unimplemented!("AttnGeometry::cross")
    }
}

/// Writes the attention output into `out` at the places `g.out` names.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], g: &AttnGeometry) {
    let _ = (q, k, v, out, g);
    unimplemented!("cpu::attention")
}

/// The softmax weights, laid out (groups, heads, q_len, kv_len).
pub fn attention_probs(q: &[f32], k: &[f32], g: &AttnGeometry) -> Vec<f32> {
    let _ = (q, k, g);
    unimplemented!("cpu::attention_probs")
}
