//! GPU topk kernel family. (stub: to be written)

use super::kernel::Shader;

pub const SHADER: Shader = Shader {
    name: "topk",
    source: include_str!("../../shaders/topk.wgsl"),
};
