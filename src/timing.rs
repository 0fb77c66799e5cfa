//! Wall-clock stage timing, native and in the browser (`web_time`: performance.now()).

/// Collects (stage name, milliseconds) as stages start one after another.
#[derive(Debug)]
pub struct StageClock {
    current: Option<String>,
    started: web_time::Instant,
    pub times: Vec<(String, f64)>,
}

impl Default for StageClock {
    fn default() -> Self {
        StageClock {
            current: None,
            started: web_time::Instant::now(),
            times: Vec::new(),
        }
    }
}

impl StageClock {
    /// Ends the running stage (if any) and starts `name` (None: just end).
    pub fn mark(&mut self, name: Option<&str>) {
        let now = web_time::Instant::now();
        if let Some(cur) = self.current.take() {
            self.times
                .push((cur, (now - self.started).as_secs_f64() * 1e3));
        }
        self.started = now;
        self.current = name.map(str::to_string);
    }
}

/// The median of `v` (the mean of the two middle values for an even count; NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
