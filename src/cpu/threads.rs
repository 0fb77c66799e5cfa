//! The CPU executor's threads: one rayon pool for every parallel op (the products through
//! `gemm`, attention over groups), sized once per process by `--threads`.

use crate::error::{Error, Result};

/// An output's raw pointer handed to the tasks of one parallel op (the products, attention),
/// which write disjoint parts of it.
#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub *mut f32);
// SAFETY: every user's tasks write only their own, disjoint elements of the output (each
// user states which), while the op's borrow of the output lasts.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Sizes the pool: `threads` workers, or by default one per physical core (SMT siblings share
/// one core's FMA units and memory port, so a second thread per core adds little to products
/// that are bound by either). `RAYON_NUM_THREADS`, when set, wins over the default but not
/// over an explicit `threads`. Returns the pool's size. The pool can be sized once; a second
/// call with another size is an error, the same size is fine.
pub fn init(threads: Option<usize>) -> Result<usize> {
    let want = match threads {
        Some(0) => return Err(Error::input("--threads must be at least 1")),
        Some(n) => Some(n),
        None if std::env::var_os("RAYON_NUM_THREADS").is_some() => None,
        None => Some(physical_cores()),
    };
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = want {
        builder = builder.num_threads(n);
    }
    match builder.build_global() {
        Ok(()) => Ok(rayon::current_num_threads()),
        Err(_) if want.is_none_or(|n| n == rayon::current_num_threads()) => {
            Ok(rayon::current_num_threads())
        }
        Err(e) => Err(Error::input(format!(
            "cannot size the CPU thread pool to {} threads: {e} (it already has {})",
            want.unwrap_or(0),
            rayon::current_num_threads()
        ))),
    }
}

/// Runs `work` on a worker of the pool and waits for it. Each parallel op called from a
/// thread outside the pool hands its work to the pool and sleeps until woken with the
/// result: two thread switches per op, a few hundred per decoded token. Called from a
/// worker, the op splits its work in place and this thread takes part. Measured on 2 threads:
/// decoding ~7–10 % faster, the vision encoder ~7 %.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// The pool's other workers kept awake while this lives ([`awake`]).
pub struct Awake {
    helpers: Option<std::sync::Arc<Helpers>>,
}

/// What an [`Awake`]'s helpers share: when to stop, how many started, how many spin now.
#[derive(Default)]
struct Helpers {
    done: std::sync::atomic::AtomicBool,
    started: std::sync::atomic::AtomicUsize,
    spinning: std::sync::atomic::AtomicUsize,
}

/// How long an [`awake`] helper spins without finding work before it leaves: well above the
/// gaps between a decode step's ops (tens to hundreds of µs), far below anything a user
/// would notice as a stall.
const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_millis(2);

impl Drop for Awake {
    fn drop(&mut self) {
        if let Some(helpers) = &self.helpers {
            helpers
                .done
                .store(true, std::sync::atomic::Ordering::Release);
            AWAKE.set(false);
        }
    }
}

thread_local!(static AWAKE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });

/// Keeps the pool's workers (all but the caller's) spinning, taking the pool's pending work,
/// until the returned guard drops. Between two parallel ops an idle rayon worker yields a few
/// dozen times and then sleeps; waking it costs a futex, an inter-processor interrupt and,
/// under a hypervisor, a halted vCPU's return — per op, a few hundred times per decoded token,
/// whose gaps between ops (norms, attention, sampling on one thread) outlast the yields.
/// Measured on 2 threads (the Qwen2-0.5B decode): q8_0 37 → 43 tokens/s, q4_0 48 → 58. The
/// price: while it lives the workers burn their cores between ops, as llama.cpp's threads do
/// while a graph runs, so hold it for a request's work only. Nested in another, or with one
/// thread, it does nothing. A helper with nothing to do for [`IDLE_LIMIT`] leaves early (the
/// worker then sleeps between ops as before).
pub fn awake() -> Awake {
    use std::sync::atomic::Ordering;
    let me = rayon::current_thread_index();
    if rayon::current_num_threads() < 2 || AWAKE.get() {
        return Awake { helpers: None };
    }
    AWAKE.set(true);
    let helpers = std::sync::Arc::new(Helpers::default());
    let shared = helpers.clone();
    // One task per worker, each on its own worker (a broadcast is never stolen); the caller's
    // own returns at once, as its thread has the work to do.
    rayon::spawn_broadcast(move |worker| {
        if Some(worker.index()) == me {
            return;
        }
        shared.started.fetch_add(1, Ordering::Relaxed);
        shared.spinning.fetch_add(1, Ordering::Relaxed);
        let mut idle_since = None;
        while !shared.done.load(Ordering::Acquire) {
            if rayon::yield_now() == Some(rayon::Yield::Executed) {
                idle_since = None;
                continue;
            }
            // A worker waiting inside a task (for the half of a split that another took) runs
            // queued tasks meanwhile, this one too; spinning there it would hold that task,
            // which the guard's owner may be waiting for, until the guard drops. Nothing to
            // do for a while means that, or a long stretch of serial work: either way leave.
            let now = std::time::Instant::now();
            if now - *idle_since.get_or_insert(now) > IDLE_LIMIT {
                break;
            }
            std::hint::spin_loop();
        }
        shared.spinning.fetch_sub(1, Ordering::Relaxed);
    });
    Awake {
        helpers: Some(helpers),
    }
}

/// Physical cores this process may use: distinct (package, core) pairs in /proc/cpuinfo on
/// Linux, capped by the CPUs the process is allowed; elsewhere the allowed CPUs.
pub fn physical_cores() -> usize {
    let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
    #[cfg(target_os = "linux")]
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
        let mut cores = std::collections::BTreeSet::new();
        let mut package = "";
        for line in info.lines() {
            let mut kv = line.splitn(2, ':').map(str::trim);
            match (kv.next(), kv.next()) {
                (Some("physical id"), Some(v)) => package = v,
                (Some("core id"), Some(v)) => {
                    cores.insert((package.to_string(), v.to_string()));
                }
                _ => {}
            }
        }
        if !cores.is_empty() {
            return cores.len().min(allowed);
        }
    }
    allowed
}

/// "cpu (N threads)": how reports name the CPU executor.
pub fn label() -> String {
    match rayon::current_num_threads() {
        1 => "cpu (1 thread)".to_string(),
        n => format!("cpu ({n} threads)"),
    }
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    fn until(what: &str, done: &dyn Fn() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed().as_secs() < 60, "{what}");
            std::thread::yield_now();
        }
    }

    fn sum(n: u64) -> u64 {
        (0..n).into_par_iter().map(|i| i * i % 7).sum::<u64>()
    }

    /// Parallel work under the guard gives the same result as without it, every other worker
    /// helps, a nested guard adds none, and once the guard drops the helpers stop.
    #[test]
    fn awake_workers_take_the_work_and_stop_with_the_guard() {
        use std::sync::atomic::Ordering;
        let threads = super::init(None).expect("the pool starts");
        let want = sum(1_000_000);
        let (got, helpers) = super::on_pool(|| {
            let outer = super::awake();
            let inner = super::awake();
            assert!(
                inner.helpers.is_none(),
                "a nested guard keeps no helpers of its own"
            );
            let got: Vec<u64> = (0..20).map(|_| sum(1_000_000)).collect();
            if let Some(h) = &outer.helpers {
                until("the other workers help", &|| {
                    h.started.load(Ordering::Relaxed) == threads - 1
                });
            }
            (got, outer.helpers.clone())
        });
        assert!(got.iter().all(|&v| v == want));
        assert_eq!(helpers.is_some(), threads > 1);
        if let Some(h) = helpers {
            until("the helpers stop with the guard", &|| {
                h.spinning.load(Ordering::Relaxed) == 0
            });
        }
    }

    /// Guards held at once by several threads, each splitting work over the pool, and guards
    /// made one after another while the last one's helpers still run: every thread finishes
    /// (a helper run inside a task that waits would otherwise hold it until its guard drops,
    /// while that guard's owner waits for the task).
    #[test]
    fn guards_of_several_threads_never_hold_each_other() {
        super::init(None).expect("the pool starts");
        let want = sum(200_000);
        let (tx, rx) = std::sync::mpsc::channel();
        for t in 0..3 {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let work = || {
                    (0..200)
                        .map(|_| {
                            let _awake = super::awake();
                            sum(200_000)
                        })
                        .all(|v| v == want)
                };
                // One thread from inside the pool (as the CLI runs), the others from outside.
                let ok = if t == 0 { super::on_pool(work) } else { work() };
                tx.send(ok).unwrap();
            });
        }
        for _ in 0..3 {
            let ok = rx.recv_timeout(std::time::Duration::from_secs(120));
            assert_eq!(
                ok,
                Ok(true),
                "a thread under a guard did not finish its work"
            );
        }
    }
}
