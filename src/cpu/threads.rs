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
