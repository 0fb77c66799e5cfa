//! GPU attention kernel family. (stub: to be written)

use super::kernel::Shader;

pub const SHADER: Shader = Shader {
    name: "attention",
    source: include_str!("../../shaders/attention.wgsl"),
};
