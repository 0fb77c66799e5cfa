//! Safetensors files past 4 GiB read by ranges, natively and in the browser (wasm32, where
//! `usize` is 32 bits): a single-file checkpoint such as InternVL2-2B's 4.4 GB
//! `model.safetensors` must load from the picked `File`. The file here is sparse — a mock
//! `ByteRanges` that serves the header and one tensor at 5 GiB and zeros elsewhere — so no
//! 5 GB file is written.

use std::sync::atomic::{AtomicU64, Ordering};

use linvt::weights::{ByteRanges, SafetensorsFile};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const GIB: u64 = 1 << 30;

/// A header, 5 GiB of padding (`pad0`…`pad4`: 1 GiB of U8 each) and `x` (4 f32) after it.
struct Sparse {
    head: Vec<u8>,
    x: Vec<u8>,
    /// The furthest byte read, to show the reads went past 4 GiB.
    furthest: AtomicU64,
}

impl Sparse {
    fn new() -> Self {
        // Five 1 GiB tensors (one tensor may not pass 4 GiB on wasm32: it could never be held).
        let pads: Vec<String> = (0..5)
            .map(|i| {
                let (start, end) = (i * GIB, (i + 1) * GIB);
                format!(
                    r#""pad{i}":{{"dtype":"U8","shape":[{GIB}],"data_offsets":[{start},{end}]}}"#
                )
            })
            .collect();
        let pad = 5 * GIB;
        let header = format!(
            r#"{{{},"x":{{"dtype":"F32","shape":[4],"data_offsets":[{pad},{}]}}}}"#,
            pads.join(","),
            pad + 16
        );
        let mut head = (header.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(header.as_bytes());
        let x = [1.5f32, -2.0, 3.25, 1e-3]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        Sparse {
            head,
            x,
            furthest: AtomicU64::new(0),
        }
    }
    fn x_at(&self) -> u64 {
        self.head.len() as u64 + 5 * GIB
    }
}

impl ByteRanges for Sparse {
    fn size(&self) -> u64 {
        self.x_at() + self.x.len() as u64
    }
    fn read(&self, start: u64, len: usize) -> linvt::Result<Vec<u8>> {
        let end = start + len as u64;
        assert!(end <= self.size(), "read past the end: {start}+{len}");
        self.furthest.fetch_max(end, Ordering::Relaxed);
        Ok((start..end)
            .map(|at| {
                if at < self.head.len() as u64 {
                    self.head[at as usize]
                } else if at >= self.x_at() {
                    self.x[(at - self.x_at()) as usize]
                } else {
                    0
                }
            })
            .collect())
    }
}

struct Shared(std::sync::Arc<Sparse>);

impl ByteRanges for Shared {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read(&self, start: u64, len: usize) -> linvt::Result<Vec<u8>> {
        self.0.read(start, len)
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_tensor_past_4_gib_reads_back() {
    let sparse = std::sync::Arc::new(Sparse::new());
    let file = SafetensorsFile::from_ranges("sparse", Box::new(Shared(sparse.clone()))).unwrap();
    assert_eq!(file.shape("pad4"), Some(&[GIB as usize][..]));
    let x = file.tensor("x").unwrap().expect("x is in the file");
    assert_eq!(x.data(), &[1.5, -2.0, 3.25, 1e-3]);
    assert_eq!(sparse.furthest.load(Ordering::Relaxed), sparse.size());
    assert!(sparse.size() > 4 * GIB);
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn a_header_that_overstates_the_file_is_refused() {
    let mut sparse = Sparse::new();
    sparse.x.truncate(12);
    let e = SafetensorsFile::from_ranges("short", Box::new(sparse))
        .err()
        .expect("a file 4 bytes short is refused")
        .to_string();
    assert!(e.contains("cut short"), "{e}");
}
