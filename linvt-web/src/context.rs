//! The page's one GPU context (adapter requests are slow, so it is opened once and reused), and
//! an awaited error scope around GPU work, so validation and out-of-memory errors come back as
//! the call's `Error` instead of only reaching the uncaptured-error handler later.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use futures_channel::oneshot;
use linvt::gpu::{GpuContext, GpuOptions};
use linvt::{Error, Result};

thread_local! {
    static SHARED: RefCell<Option<Arc<GpuContext>>> = const { RefCell::new(None) };
}

fn options() -> GpuOptions {
    if cfg!(target_arch = "wasm32") {
        // The browser has exactly one backend; naming it skips the native enumeration path.
        GpuOptions {
            backend: Some("webgpu".into()),
            adapter_name: None,
        }
    } else {
        GpuOptions::from_env()
    }
}

/// The shared context, opened on first use. `GpuContext::new` requests the adapter's own limits,
/// so the device never asks the browser for more than its adapter offers.
pub async fn shared() -> Result<Arc<GpuContext>> {
    if let Some(ctx) = SHARED.with(|s| s.borrow().clone()) {
        return Ok(ctx);
    }
    let ctx = GpuContext::new(&options()).await?;
    #[cfg(target_arch = "wasm32")]
    let ctx = browser::named(ctx).await;
    SHARED.with(|s| *s.borrow_mut() = Some(ctx.clone()));
    Ok(ctx)
}

/// Forgets the shared context after its device was lost, so the next call opens a new one.
pub fn forget_if_lost(e: &Error) {
    if matches!(e, Error::DeviceLost(_)) {
        SHARED.with(|s| *s.borrow_mut() = None);
    }
}

/// Runs `work` inside validation and out-of-memory error scopes and awaits them (no blocking):
/// a GPU error raised while recording or running `work` is returned even if `work` itself
/// finished (it would have read back garbage).
///
/// Calls take turns: WebGPU error scopes form one stack per device, so two calls interleaving
/// at their awaits would pop each other's scopes. A second call waits for the first.
pub async fn scoped<T>(ctx: &GpuContext, work: impl Future<Output = Result<T>>) -> Result<T> {
    let _turn = Turn::take().await;
    let oom = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let result = work.await;
    let invalid = validation.pop().await;
    let out_of_memory = oom.pop().await;
    if out_of_memory.is_some() {
        return Err(Error::Gpu(
            "out of GPU memory; reduce the number of frames or tokens".into(),
        ));
    }
    if let Some(e) = invalid {
        return Err(Error::Gpu(e.to_string()));
    }
    result
}

/// First come, first served access to the GPU; dropping a `Turn` hands it to the next waiter.
struct Turn;

#[derive(Default)]
struct Waiters {
    busy: bool,
    queue: VecDeque<oneshot::Sender<()>>,
}

thread_local! {
    static WAITERS: RefCell<Waiters> = RefCell::default();
}

impl Turn {
    async fn take() -> Turn {
        let wait = WAITERS.with(|w| {
            let mut w = w.borrow_mut();
            if w.busy {
                let (tx, rx) = oneshot::channel();
                w.queue.push_back(tx);
                Some(rx)
            } else {
                w.busy = true;
                None
            }
        });
        if let Some(rx) = wait {
            // The sender is only dropped unsent if the thread's state is torn down.
            let _ = rx.await;
        }
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        WAITERS.with(|w| {
            let mut w = w.borrow_mut();
            // Skip waiters whose calls were abandoned (their receiver is gone).
            while let Some(next) = w.queue.pop_front() {
                if next.send(()).is_ok() {
                    return;
                }
            }
            w.busy = false;
        });
    }
}

/// wgpu names a browser adapter by `GPUAdapterInfo.description`, which Chromium leaves empty;
/// its vendor and architecture ("google", "swiftshader") do name it.
#[cfg(target_arch = "wasm32")]
mod browser {
    use std::sync::Arc;

    use js_sys::{Object, Promise, Reflect};
    use linvt::gpu::GpuContext;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    fn field(obj: &JsValue, key: &str) -> JsValue {
        Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
    }

    async fn info() -> Option<JsValue> {
        let gpu = field(&field(&js_sys::global(), "navigator"), "gpu");
        let request: js_sys::Function = field(&gpu, "requestAdapter").dyn_into().ok()?;
        let opts = Object::new();
        Reflect::set(&opts, &"powerPreference".into(), &"high-performance".into()).ok()?;
        let promise: Promise = request.call1(&gpu, &opts).ok()?.dyn_into().ok()?;
        let adapter = JsFuture::from(promise).await.ok()?;
        Some(field(&adapter, "info")).filter(|i| i.is_object())
    }

    /// The context with its adapter named, when wgpu left the name empty.
    pub async fn named(mut ctx: Arc<GpuContext>) -> Arc<GpuContext> {
        if let Some(c) = Arc::get_mut(&mut ctx) {
            if c.info.name.is_empty() {
                c.info.name = adapter_name().await;
            }
        }
        ctx
    }

    /// "description (vendor architecture device)", leaving out what the browser keeps empty.
    async fn adapter_name() -> String {
        let Some(info) = info().await else {
            return "WebGPU adapter".into();
        };
        let text = |k: &str| field(&info, k).as_string().unwrap_or_default();
        let parts: Vec<String> = ["vendor", "architecture", "device"]
            .iter()
            .map(|k| text(k))
            .filter(|s| !s.is_empty())
            .collect();
        match (text("description"), parts.join(" ")) {
            (d, p) if d.is_empty() && p.is_empty() => "WebGPU adapter".into(),
            (d, p) if d.is_empty() => p,
            (d, p) if p.is_empty() => d,
            (d, p) => format!("{d} ({p})"),
        }
    }
}
