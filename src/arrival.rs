//! When to send: open-loop arrival schedules as absolute offsets from one start instant.
//!
//! Every send time is computed from the run's start (`offset_n = gap_1 + … + gap_n`), never by
//! sleeping relative to the previous send, so a late wake-up does not shift every later request
//! (the drift bug of tools that `sleep(gap)` in a loop). This module only computes offsets; the
//! load driver does the waiting.
//!
//! Gaps follow `vllm bench serve`: a gamma distribution with shape = burstiness and
//! mean = 1/rate, so burstiness 1 is a Poisson process, < 1 is burstier, > 1 is smoother.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};
use std::fmt;

/// The shape of an open-loop arrival process.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Arrival {
    /// Evenly spaced: exactly `1/rate` apart.
    Constant,
    /// Gamma-distributed gaps with shape `burstiness` (1.0 = Poisson).
    Gamma { burstiness: f64 },
}

impl Arrival {
    pub const POISSON: Arrival = Arrival::Gamma { burstiness: 1.0 };
}

impl fmt::Display for Arrival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arrival::Constant => write!(f, "constant"),
            Arrival::Gamma { burstiness } if *burstiness == 1.0 => write!(f, "poisson"),
            Arrival::Gamma { burstiness } => write!(f, "gamma(burstiness={burstiness})"),
        }
    }
}

/// An endless, seeded sequence of send offsets (nanoseconds since the schedule's start).
///
/// Deterministic for a seed: the same seed, rate and arrival give the same offsets on every
/// machine, so two runs (or a run and a `predict`) see the same traffic.
pub struct Schedule {
    gap: GapSource,
    rng: ChaCha8Rng,
    /// Accumulated in f64 seconds so rounding does not drift over long runs.
    elapsed_s: f64,
    /// Requests handed out so far; a constant schedule is `n / rate` exactly, not a running sum.
    n: u64,
}

enum GapSource {
    Fixed(f64),
    Gamma(Gamma<f64>),
}

impl Schedule {
    /// `rate` in requests per second, finite and > 0 (validated by config; an infinite rate is
    /// not a schedule: the load driver sends everything at once instead).
    pub fn new(rate: f64, arrival: Arrival, seed: u64) -> Result<Schedule, String> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!(
                "request rate must be a positive number, got {rate}"
            ));
        }
        let gap = match arrival {
            Arrival::Constant => GapSource::Fixed(1.0 / rate),
            Arrival::Gamma { burstiness } => {
                if !(burstiness.is_finite() && burstiness > 0.0) {
                    return Err(format!("burstiness must be > 0, got {burstiness}"));
                }
                // mean = shape * scale = 1/rate
                let scale = 1.0 / (rate * burstiness);
                GapSource::Gamma(
                    Gamma::new(burstiness, scale).map_err(|e| format!("invalid gamma: {e}"))?,
                )
            }
        };
        Ok(Schedule {
            gap,
            rng: ChaCha8Rng::seed_from_u64(seed),
            elapsed_s: 0.0,
            n: 0,
        })
    }
}

impl Iterator for Schedule {
    type Item = u64;

    /// The first request goes at offset 0 (the run starts with a send, as in vLLM), each later
    /// one a sampled gap after the previous offset.
    fn next(&mut self) -> Option<u64> {
        let n = self.n;
        self.n += 1;
        if n == 0 {
            return Some(0);
        }
        match &self.gap {
            GapSource::Fixed(g) => self.elapsed_s = n as f64 * g,
            GapSource::Gamma(d) => self.elapsed_s += d.sample(&mut self.rng),
        }
        Some((self.elapsed_s * 1e9).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_evenly_spaced_from_zero() {
        let s: Vec<u64> = Schedule::new(4.0, Arrival::Constant, 1)
            .unwrap()
            .take(5)
            .collect();
        assert_eq!(
            s,
            vec![0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]
        );
    }

    #[test]
    fn poisson_mean_rate_and_cv_are_right() {
        let n = 200_000;
        let offs: Vec<u64> = Schedule::new(1000.0, Arrival::POISSON, 7)
            .unwrap()
            .take(n)
            .collect();
        let gaps: Vec<f64> = offs
            .windows(2)
            .map(|w| (w[1] - w[0]) as f64 / 1e9)
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.001).abs() < 0.00002, "mean gap {mean}");
        // exponential: coefficient of variation 1
        let cv = var.sqrt() / mean;
        assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
    }

    #[test]
    fn burstiness_changes_variance_not_mean() {
        let gaps = |b: f64| -> (f64, f64) {
            let offs: Vec<u64> = Schedule::new(100.0, Arrival::Gamma { burstiness: b }, 3)
                .unwrap()
                .take(100_000)
                .collect();
            let g: Vec<f64> = offs.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
            let m = g.iter().sum::<f64>() / g.len() as f64;
            let v = g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / g.len() as f64;
            (m, v.sqrt() / m)
        };
        let (m_bursty, cv_bursty) = gaps(0.25);
        let (m_smooth, cv_smooth) = gaps(4.0);
        assert!((m_bursty / 1e7 - 1.0).abs() < 0.03);
        assert!((m_smooth / 1e7 - 1.0).abs() < 0.03);
        // gamma cv = 1/sqrt(shape)
        assert!((cv_bursty - 2.0).abs() < 0.1, "{cv_bursty}");
        assert!((cv_smooth - 0.5).abs() < 0.03, "{cv_smooth}");
    }

    #[test]
    fn same_seed_same_schedule_and_offsets_never_decrease() {
        let a: Vec<u64> = Schedule::new(50.0, Arrival::POISSON, 42)
            .unwrap()
            .take(1000)
            .collect();
        let b: Vec<u64> = Schedule::new(50.0, Arrival::POISSON, 42)
            .unwrap()
            .take(1000)
            .collect();
        let c: Vec<u64> = Schedule::new(50.0, Arrival::POISSON, 43)
            .unwrap()
            .take(1000)
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn bad_rate_or_burstiness_is_an_error_naming_the_value() {
        assert!(Schedule::new(0.0, Arrival::Constant, 1)
            .err()
            .unwrap()
            .contains('0'));
        assert!(Schedule::new(f64::INFINITY, Arrival::Constant, 1).is_err());
        let e = Schedule::new(1.0, Arrival::Gamma { burstiness: -1.0 }, 1)
            .err()
            .unwrap();
        assert!(e.contains("burstiness"), "{e}");
    }
}
