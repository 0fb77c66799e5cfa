//! GPU window_pool kernel family. (stub: to be written)

use super::kernel::Shader;

pub const SHADER: Shader = Shader {
    name: "window_pool",
    source: include_str!("../../shaders/window_pool.wgsl"),
};
