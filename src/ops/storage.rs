//! How an executor keeps a model's weights: the storage (f32, bf16, f16, or ggml's 8- and 4-bit
//! blocks) a user asks for and its resolution against the checkpoint (`auto`: the weights' own
//! precision). The GPU places each weight by it (`gpu/placement.rs`), the CPU converts the
//! weights it keeps at upload.

use crate::error::Result;
use crate::gguf::GgmlType;
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
    /// ggml's Q8_0 (blocks of 32: int8 values and an f16 scale, 8.5 bits per weight), quantized
    /// at load as llama.cpp does; f32 arithmetic on the widened values.
    Q8_0,
    /// ggml's Q4_0 (blocks of 32: 4-bit values and an f16 scale, 4.5 bits per weight).
    Q4_0,
    /// ggml's Q4_K (super-blocks of 256 with 6-bit sub-block scales and mins, 4.5 bits per
    /// weight). Weights whose rows are not a multiple of 256 take Q4_0.
    Q4K,
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
            WeightStorage::Q8_0 => "q8_0",
            WeightStorage::Q4_0 => "q4_0",
            WeightStorage::Q4K => "q4_k",
        }
    }

    /// True for ggml's block formats.
    pub fn is_blocks(self) -> bool {
        matches!(
            self,
            WeightStorage::Q8_0 | WeightStorage::Q4_0 | WeightStorage::Q4K
        )
    }

    /// The ggml block type a linear weight with rows of `cols` values takes under this storage,
    /// None for the float storages. Rows that are not a multiple of a type's block take the
    /// next smaller block (Q4_K → Q4_0, as 4 bits still), or bf16 (None) when no block fits
    /// (e.g. a vision patch embedding of 3·14·14 = 588 values per row).
    pub fn block_type(self, cols: usize) -> Option<GgmlType> {
        let fits = |block: usize| cols.is_multiple_of(block);
        match self {
            WeightStorage::Q4K if fits(crate::quant::QK_K) => Some(GgmlType::Q4_K),
            WeightStorage::Q4K | WeightStorage::Q4_0 if fits(32) => Some(GgmlType::Q4_0),
            WeightStorage::Q8_0 if fits(32) => Some(GgmlType::Q8_0),
            _ => None,
        }
    }

    /// The ggml block type an embedding table with rows of `cols` values takes under this
    /// storage, None for the float storages or where no block fits (bf16 then). As
    /// llama.cpp's Q4_K_M keeps its (tied) output table: Q6_K for the 4-bit storages, Q8_0
    /// where rows are not a multiple of 256 and for `q8_0` — the table is also the tied
    /// lm_head, whose errors reach every logit.
    pub fn table_block_type(self, cols: usize) -> Option<GgmlType> {
        let fits = |block: usize| cols.is_multiple_of(block);
        match self {
            WeightStorage::Q4K | WeightStorage::Q4_0 if fits(crate::quant::QK_K) => {
                Some(GgmlType::Q6_K)
            }
            s if s.is_blocks() && fits(32) => Some(GgmlType::Q8_0),
            _ => None,
        }
    }

    /// Bits one linear weight takes (block formats: with their scales; the fallbacks of
    /// [`WeightStorage::block_type`] aside).
    pub fn bits_per_weight(self) -> f64 {
        match self {
            WeightStorage::F32 => 32.0,
            WeightStorage::F16 | WeightStorage::Bf16 => 16.0,
            WeightStorage::Q8_0 => 8.5,
            WeightStorage::Q4_0 | WeightStorage::Q4K => 4.5,
        }
    }

    /// The values a linear weight (`table`: an embedding table) holds under this storage, as
    /// f32: quantized to its block type and widened back (the CPU twin of the GPU's block
    /// kernels, which widen the same way); bf16-rounded where no block fits; unchanged for the
    /// float storages.
    pub fn round_trip(self, cols: usize, values: &[f32], table: bool) -> Result<Vec<f32>> {
        if !self.is_blocks() {
            return Ok(values.to_vec());
        }
        let ty = match table {
            true => self.table_block_type(cols),
            false => self.block_type(cols),
        };
        match ty {
            Some(ty) => {
                let blocks = crate::quant::quantize(ty, values)?;
                crate::quant::dequantize(ty, &blocks, values.len())
            }
            None => Ok(values
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect()),
        }
    }
}

/// How the CPU multiplies weights held in ggml blocks by the activations (`--cpu-activations`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum Activations {
    /// Each 32 activations quantized to int8 with their own f32 scale, integer dot products
    /// (llama.cpp's way on the CPU): 2–3× faster 4-bit decoding; each product is off by at
    /// most half an activation step times the weights' absolute sum per block.
    #[default]
    Int8,
    /// f32 activations, each weight widened to f32: exactly the values the GPU's block kernels
    /// compute (its twin), slower.
    F32,
}

/// How the CPU multiplies activations by bf16 weights (`--cpu-products`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum Products {
    /// f32 activations, the weights widened exactly: the GPU's values up to summation order.
    #[default]
    F32,
    /// The activations rounded to bf16 (nearest, ties to even), sums in f32: products of many
    /// rows (prefill, the vision encoders, LinVT) and attention's two products (16 queries and
    /// keys or more) on AMX tiles, as PyTorch multiplies a bf16 model on these CPUs; decoding's
    /// few rows by AVX512-BF16 dot products, as llama.cpp decodes BF16 weights. About three
    /// times as fast in prefill and vision (a little in decoding), not the exact twin. Needs
    /// AMX-BF16 (Intel Xeon since Sapphire Rapids) and bf16 weights.
    Bf16,
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
    /// ggml's Q8_0, quantized at load: 8.5 bits per weight.
    #[cfg_attr(not(target_arch = "wasm32"), value(name = "q8_0"))]
    Q8_0,
    /// ggml's Q4_0, quantized at load: 4.5 bits per weight.
    #[cfg_attr(not(target_arch = "wasm32"), value(name = "q4_0"))]
    Q4_0,
    /// ggml's Q4_K (Q4_0 for rows not a multiple of 256), quantized at load: 4.5 bits.
    #[cfg_attr(not(target_arch = "wasm32"), value(name = "q4_k"))]
    Q4K,
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
            WeightChoice::Q8_0 => WeightStorage::Q8_0,
            WeightChoice::Q4_0 => WeightStorage::Q4_0,
            WeightChoice::Q4K => WeightStorage::Q4K,
        }
    }
}

impl From<WeightStorage> for WeightChoice {
    fn from(s: WeightStorage) -> Self {
        match s {
            WeightStorage::F32 => WeightChoice::F32,
            WeightStorage::F16 => WeightChoice::F16,
            WeightStorage::Bf16 => WeightChoice::Bf16,
            WeightStorage::Q8_0 => WeightChoice::Q8_0,
            WeightStorage::Q4_0 => WeightChoice::Q4_0,
            WeightStorage::Q4K => WeightChoice::Q4K,
        }
    }
}
