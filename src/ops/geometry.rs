//! Where attention operands live in memory: shared by the CPU twin and the GPU kernel.

use super::Axis;

/// Where one operand's rows live: element offset, stride between groups, stride between rows.
/// Head h of a row starts at `h * head_dim` within the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operand {
    pub offset: usize,
    pub group_stride: usize,
    pub row_stride: usize,
}

impl Operand {
    /// Element index of (group, row, head, dim 0).
    #[inline]
    pub fn at(&self, group: usize, row: usize, head: usize, head_dim: usize) -> usize {
        self.offset + group * self.group_stride + row * self.row_stride + head * head_dim
    }
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
    pub fn along_axis(
        frames: usize,
        tokens: usize,
        embed: usize,
        heads: usize,
        axis: Axis,
    ) -> Self {
        let e = embed;
        let head_dim = e.checked_div(heads).unwrap_or(0);
        // (group stride, row stride) of the packed input and of the output.
        let ((in_gs, in_rs), (out_gs, out_rs), groups, len) = match axis {
            // One group per token position n; the sequence runs over the frames t.
            Axis::Frames => ((3 * e, tokens * 3 * e), (e, tokens * e), tokens, frames),
            // One group per frame t; the sequence runs over the tokens n.
            Axis::Tokens => ((tokens * 3 * e, 3 * e), (tokens * e, e), frames, tokens),
        };
        let op = |offset| Operand {
            offset,
            group_stride: in_gs,
            row_stride: in_rs,
        };
        AttnGeometry {
            groups,
            q_len: len,
            kv_len: len,
            heads,
            head_dim,
            scale: pytorch_scale(head_dim),
            q: op(0),
            k: op(e),
            v: op(2 * e),
            out: Operand {
                offset: 0,
                group_stride: out_gs,
                row_stride: out_rs,
            },
        }
    }

    /// Cross-attention: q (q_len, E), k and v (kv_len, E), out (q_len, E). Scale 1/√(E/heads).
    pub fn cross(q_len: usize, kv_len: usize, embed: usize, heads: usize) -> Self {
        let head_dim = embed.checked_div(heads).unwrap_or(0);
        let op = |rows: usize| Operand {
            offset: 0,
            group_stride: rows * embed,
            row_stride: embed,
        };
        AttnGeometry {
            groups: 1,
            q_len,
            kv_len,
            heads,
            head_dim,
            scale: pytorch_scale(head_dim),
            q: op(q_len),
            k: op(kv_len),
            v: op(kv_len),
            out: op(q_len),
        }
    }

    /// Attention within `blocks` equal consecutive row blocks of separate q, k, v (R, E) each,
    /// R = blocks · len, writing (R, E). Scale 1/√(E/heads).
    pub fn blocks(blocks: usize, len: usize, embed: usize, heads: usize) -> Self {
        let op = Operand {
            offset: 0,
            group_stride: len * embed,
            row_stride: embed,
        };
        AttnGeometry {
            groups: blocks,
            q_len: len,
            kv_len: len,
            heads,
            head_dim: embed.checked_div(heads).unwrap_or(0),
            scale: pytorch_scale(embed.checked_div(heads).unwrap_or(0)),
            q: op,
            k: op,
            v: op,
            out: op,
        }
    }

    /// Panics unless buffers of `lens` = (q, k, v, out) elements hold every element the geometry
    /// reaches: each operand's last group's last row's last head ends there, as every stride is
    /// non-negative. What code reading the operands through raw pointers checks first; a
    /// geometry with no group, head or row reaches nothing.
    pub fn assert_within(&self, (q, k, v, out): (usize, usize, usize, usize)) {
        let (g, h, hd) = (self.groups, self.heads, self.head_dim);
        let end = |o: &Operand, rows: usize| match g * h * rows {
            0 => 0,
            _ => o.at(g - 1, rows - 1, h - 1, hd) + hd,
        };
        assert!(
            end(&self.q, self.q_len) <= q
                && end(&self.k, self.kv_len) <= k
                && end(&self.v, self.kv_len) <= v
                && end(&self.out, self.q_len) <= out,
            "attention operands of ({q}, {k}, {v}, {out}) values do not hold {self:?}"
        );
    }

    /// Floating-point operations of one attention call (QKᵀ and PV, 2 flops per multiply-add).
    pub fn flops(&self) -> f64 {
        4.0 * (self.groups * self.heads * self.q_len * self.kv_len * self.head_dim) as f64
    }
}

/// PyTorch `MultiheadAttention` scales the logits by 1/√head_dim.
fn pytorch_scale(head_dim: usize) -> f32 {
    if head_dim == 0 {
        1.0
    } else {
        1.0 / (head_dim as f32).sqrt()
    }
}
