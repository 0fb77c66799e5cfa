//! GPU norm kernel family. (stub: to be written)

use super::kernel::Shader;

pub const SHADER: Shader = Shader {
    name: "norm",
    source: include_str!("../../shaders/norm.wgsl"),
};
