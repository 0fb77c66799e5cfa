//! One error type for everything a user (or a device) can get wrong. Every message names what is
//! wrong and, where there is one, what to do about it.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cannot write {path}: {source}; check that its directory exists, is writable and has space"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not a readable safetensors file ({reason}); is it truncated or of another format?")]
    Safetensors { path: PathBuf, reason: String },

    #[error("tensor `{key}` is missing from {source_name}; the model needs it (keys may carry the `linVT.` prefix or not)")]
    MissingTensor { key: String, source_name: String },

    #[error("tensor `{key}` has shape {actual:?} but {expected:?} is expected{hint}")]
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
        hint: String,
    },

    #[error("tensor `{key}` has dtype {dtype}; supported are F32, F16, BF16{extra}")]
    UnsupportedDtype {
        key: String,
        dtype: String,
        extra: String,
    },

    #[error("{what} contains a non-finite value ({value}) at {position}; clean the input (or the weights) before condensing")]
    NonFinite {
        what: String,
        position: String,
        value: f32,
    },

    #[error("the score of frame {frame}, token {token} is not finite; the refined tokens overflowed or the weights hold NaN/Inf — check the weights and the input scale")]
    NonFiniteScore { frame: usize, token: usize },

    #[error("a value inside the model overflowed float32 (a normalisation's mean square is not finite), so any answer would be noise; its weights (or the inputs) hold values out of range — check the checkpoint")]
    Overflow,

    #[error("the decoder's logits are not finite (the first at token id {token}): the model overflowed float32, so any answer would be noise; its weights (or the visual tokens fed to it) hold values out of range — check the checkpoint")]
    NonFiniteLogits { token: u32 },

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("unknown preset `{0}`; choose `official` (the released PyTorch module) or `paper` (the paper's method)")]
    UnknownPreset(String),

    #[error("tensor `{tensor}` needs {bytes} bytes but this adapter binds at most {limit} bytes per storage buffer; {hint}")]
    TensorTooLarge {
        tensor: String,
        bytes: u64,
        limit: u64,
        hint: String,
    },

    #[error("no GPU adapter found{detail}. On a machine without a GPU, install a Vulkan driver that runs on the CPU (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`), or run on the CPU executor (`--backend cpu` on `ask`, `condense` and `bench`)")]
    NoAdapter { detail: String },

    #[error("GPU error: {0}")]
    Gpu(String),

    #[error("the GPU device was lost ({0}); create a new context and retry")]
    DeviceLost(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn input(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
}
