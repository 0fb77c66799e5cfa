//! GPU linear kernel family. (stub: to be written)

use super::kernel::Shader;

pub const SHADER: Shader = Shader {
    name: "linear",
    source: include_str!("../../shaders/linear.wgsl"),
};
