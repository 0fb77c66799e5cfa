//! Wall-clock stage timing that also compiles for the browser (where it reports nothing).

/// Collects (stage name, milliseconds) as stages start one after another.
#[derive(Debug)]
pub struct StageClock {
    current: Option<String>,
    #[cfg(not(target_arch = "wasm32"))]
    started: std::time::Instant,
    pub times: Vec<(String, f64)>,
}

impl Default for StageClock {
    fn default() -> Self {
        StageClock {
            current: None,
            #[cfg(not(target_arch = "wasm32"))]
            started: std::time::Instant::now(),
            times: Vec::new(),
        }
    }
}

impl StageClock {
    /// Ends the running stage (if any) and starts `name` (None: just end).
    pub fn mark(&mut self, name: Option<&str>) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let now = std::time::Instant::now();
            if let Some(cur) = self.current.take() {
                self.times
                    .push((cur, (now - self.started).as_secs_f64() * 1e3));
            }
            self.started = now;
        }
        self.current = name.map(str::to_string);
    }
}
