//! How an executor keeps a model's weights: the storage (f32, bf16, f16) a user asks for and
//! its resolution against the checkpoint (`auto`: the weights' own precision). The GPU places
//! each weight by it (`gpu/placement.rs`), the CPU converts the weights it keeps at upload.

use crate::weights::TensorStore;

/// How an executor stores the model's linear weights (and, where it can, embedding tables).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightStorage {
    /// f32, bit-faithful to the reference (the default).
    #[default]
    F32,
    /// f16 (round to nearest), f32 arithmetic: half the weight memory and traffic. Needs an
    /// adapter with SHADER_F16. Costs fidelity: on the official golden cases the scores move by
    /// ~1e-2, enough to reorder the selection and move outputs by up to 10%.
    F16,
    /// bf16 (round to nearest even), f32 arithmetic: half the weight memory and traffic, on any
    /// adapter. Exact for weights that were bf16 already (the released checkpoints); f32 weights
    /// lose their low 16 bits.
    Bf16,
}

impl WeightStorage {
    /// The storage that keeps `store`'s weights exactly as they are: bf16 when every float
    /// tensor in it is bf16 (the released checkpoints), else f32.
    pub fn exact_for(store: &TensorStore) -> Self {
        if store.floats_all_bf16() {
            WeightStorage::Bf16
        } else {
            WeightStorage::F32
        }
    }

    /// "f32", "f16" or "bf16".
    pub fn name(self) -> &'static str {
        match self {
            WeightStorage::F32 => "f32",
            WeightStorage::F16 => "f16",
            WeightStorage::Bf16 => "bf16",
        }
    }

    /// Bytes one weight takes.
    pub fn bytes_per_weight(self) -> u64 {
        match self {
            WeightStorage::F32 => 4,
            WeightStorage::F16 | WeightStorage::Bf16 => 2,
        }
    }
}

/// What a user asks for (`--gpu-weights`, `--cpu-weights`): a storage, or `auto` — the weights' own precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum WeightChoice {
    /// The weights' own precision: bf16 when all their floats are bf16, else f32.
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
}

impl WeightChoice {
    /// The storage for weights read from `store` (`auto`: their own precision).
    pub fn resolve(self, store: &TensorStore) -> WeightStorage {
        self.or(WeightStorage::exact_for(store))
    }

    /// The storage asked for, `auto` standing for `own` (the weights' own precision, when the
    /// caller knows it without a store: generated weights are f32).
    pub fn or(self, own: WeightStorage) -> WeightStorage {
        match self {
            WeightChoice::Auto => own,
            WeightChoice::F32 => WeightStorage::F32,
            WeightChoice::Bf16 => WeightStorage::Bf16,
            WeightChoice::F16 => WeightStorage::F16,
        }
    }
}

impl From<WeightStorage> for WeightChoice {
    fn from(s: WeightStorage) -> Self {
        match s {
            WeightStorage::F32 => WeightChoice::F32,
            WeightStorage::F16 => WeightChoice::F16,
            WeightStorage::Bf16 => WeightChoice::Bf16,
        }
    }
}
