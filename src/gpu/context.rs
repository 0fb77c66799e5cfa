//! The GPU context: adapter choice, device with the adapter's own limits, error capture.
//!
//! Creation is async (a browser cannot block); `GpuContext::new_blocking` wraps it for native
//! callers. Device loss and uncaptured validation errors are stored and surfaced as `Error`s by
//! `GpuContext::check`, which every submission path calls: nothing panics, nothing hangs silently.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// How to pick an adapter. `from_env` reads `LINVT_BACKEND` (vulkan, metal, dx12, gl, webgpu)
/// and `LINVT_ADAPTER` (a case-insensitive substring of the adapter name).
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    pub backend: Option<String>,
    pub adapter_name: Option<String>,
}

impl GpuOptions {
    pub fn from_env() -> Self {
        let var = |a: &str, b: &str| std::env::var(a).or_else(|_| std::env::var(b)).ok();
        GpuOptions {
            backend: var("LINVT_BACKEND", "WGPU_BACKEND"),
            adapter_name: var("LINVT_ADAPTER", "WGPU_ADAPTER_NAME"),
        }
    }

    fn backends(&self) -> Result<wgpu::Backends> {
        let Some(name) = &self.backend else {
            // GL is left out unless asked for: it probes the display stack (noisy, slow) and
            // every machine with GL also has one of the primary backends or none at all.
            return Ok(wgpu::Backends::PRIMARY);
        };
        let b = match name.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "opengl" | "gles" => wgpu::Backends::GL,
            "webgpu" | "browser" => wgpu::Backends::BROWSER_WEBGPU,
            "all" | "" => wgpu::Backends::all(),
            other => {
                return Err(Error::config(format!(
                    "unknown GPU backend `{other}` in LINVT_BACKEND; use vulkan, metal, dx12, gl or webgpu"
                )))
            }
        };
        Ok(b)
    }
}

/// One adapter as `linvt info` shows it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub features: Vec<String>,
    pub limits: wgpu::Limits,
    /// Where the executors store linear weights on this adapter.
    pub weight_layout: super::texels::WeightLayout,
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let f = adapter.features();
        let interesting = [
            (wgpu::Features::SHADER_F16, "SHADER_F16"),
            (wgpu::Features::SUBGROUP, "SUBGROUP"),
            (wgpu::Features::TIMESTAMP_QUERY, "TIMESTAMP_QUERY"),
        ];
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            features: interesting
                .iter()
                .filter(|(bit, _)| f.contains(*bit))
                .map(|(_, n)| n.to_string())
                .collect(),
            limits: adapter.limits(),
            weight_layout: super::texels::WeightLayout::for_device_type(info.device_type),
        }
    }
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub(crate) pipelines: super::kernel::PipelineCache,
    error_slot: Arc<Mutex<Option<Error>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish()
    }
}

fn instance(opts: &GpuOptions) -> Result<wgpu::Instance> {
    quiet_device_select();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = opts.backends()?;
    Ok(wgpu::Instance::new(desc))
}

/// Mesa's Vulkan device-select layer (loaded implicitly with Mesa's drivers) asks Wayland for
/// the display's GPU while the adapters are enumerated; without `XDG_RUNTIME_DIR` (headless
/// machines, containers, CI) libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set"
/// each time, which reads as a failure. With no session there is no display to choose by, so
/// the layer is switched off by its own switch (`NODEVICE_SELECT=1`) unless the user set it.
/// Done once, before the first instance (std serialises its own environment access).
fn quiet_device_select() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let session = std::env::var_os("XDG_RUNTIME_DIR")
                .is_some_and(|d| std::path::Path::new(&d).is_dir());
            if !session && std::env::var_os("NODEVICE_SELECT").is_none() {
                std::env::set_var("NODEVICE_SELECT", "1");
            }
        });
    }
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// Every adapter wgpu can see under `opts` (the backend filter applies, the name filter does not).
pub async fn list_adapters(opts: &GpuOptions) -> Result<Vec<AdapterSummary>> {
    let inst = instance(opts)?;
    let adapters = inst.enumerate_adapters(opts.backends()?).await;
    Ok(adapters.iter().map(AdapterSummary::of).collect())
}

async fn choose_adapter(opts: &GpuOptions) -> Result<wgpu::Adapter> {
    let inst = instance(opts)?;
    let mut adapters = inst.enumerate_adapters(opts.backends()?).await;
    if adapters.is_empty() {
        // The browser backend does not enumerate; ask for its one adapter.
        if let Ok(a) = inst
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
        {
            adapters.push(a);
        }
    }
    let seen: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
    if let Some(want) = &opts.adapter_name {
        let want = want.to_lowercase();
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(&want));
        if adapters.is_empty() {
            return Err(Error::NoAdapter {
                detail: format!(
                    " whose name contains `{want}` (LINVT_ADAPTER); adapters present: {seen:?}"
                ),
            });
        }
    }
    adapters.sort_by_key(|a| type_rank(a.get_info().device_type));
    adapters.into_iter().next().ok_or_else(|| Error::NoAdapter {
        detail: match &opts.backend {
            Some(b) => format!(" for backend `{b}` (LINVT_BACKEND)"),
            None => String::new(),
        },
    })
}

impl GpuContext {
    /// Picks an adapter (see `GpuOptions`), requests its own limits and the optional features it
    /// has (SHADER_F16, SUBGROUP), and installs error capture.
    pub async fn new(opts: &GpuOptions) -> Result<Arc<Self>> {
        let adapter = choose_adapter(opts).await?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let optional = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let features = adapter.features() & optional;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("linvt"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Gpu(format!("cannot open adapter `{}`: {e}", info.name)))?;

        let error_slot: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        let slot = error_slot.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_none() {
                *s = Some(match e {
                    wgpu::Error::OutOfMemory { .. } => Error::Gpu(
                        "out of GPU memory; reduce the number of frames or tokens".into(),
                    ),
                    other => Error::Gpu(other.to_string()),
                });
            }
        }));
        let slot = error_slot.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_none() {
                *s = Some(Error::DeviceLost(format!("{reason:?}: {msg}")));
            }
        });

        Ok(Arc::new(GpuContext {
            device,
            queue,
            info,
            limits,
            features,
            pipelines: Default::default(),
            error_slot,
        }))
    }

    /// Blocking wrapper for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: &GpuOptions) -> Result<Arc<Self>> {
        pollster::block_on(Self::new(opts))
    }

    pub fn adapter_name(&self) -> &str {
        &self.info.name
    }
    pub fn backend_name(&self) -> String {
        format!("{:?}", self.info.backend)
    }
    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// Largest byte size one storage binding (and one buffer) may have on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Returns (and clears) the first error the device reported since the last check.
    pub fn check(&self) -> Result<()> {
        let mut s = self.error_slot.lock().unwrap_or_else(|p| p.into_inner());
        match s.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for all submitted work (native); a no-op in the browser, where mapping awaits.
    pub fn wait_idle(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
        self.check()
    }
}

/// The process-wide GPU context the video-LLM runs on (created on first use), so a loaded
/// model can own its executor; each executor brings its own buffer pool (see `Recorder`).
/// Native only: the browser creates its context asynchronously and its GPU objects are not
/// `Sync`.
#[cfg(not(target_arch = "wasm32"))]
pub fn shared_gpu() -> Result<&'static GpuContext> {
    use std::sync::{Arc, OnceLock};
    static CTX: OnceLock<std::result::Result<Arc<GpuContext>, String>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        GpuContext::new_blocking(&GpuOptions::from_env()).map_err(|e| e.to_string())
    });
    match ctx {
        Ok(c) => Ok(c.as_ref()),
        // The adapter error already says what to do (install a driver or use the CPU).
        Err(e) => Err(Error::Gpu(e.clone())),
    }
}
