//! When to send: open-loop arrival schedules as absolute offsets from one start instant.
//!
//! Every send time is computed from the run's start (`offset_n = gap_1 + … + gap_n`), never by
//! sleeping relative to the previous send, so a late wake-up does not shift every later request
//! (the drift bug of tools that `sleep(gap)` in a loop). This module only computes offsets; the
//! load driver does the waiting.
//!
//! Gaps follow `vllm bench serve`: a gamma distribution with shape = burstiness and
//! mean = 1/rate, so burstiness 1 is a Poisson process, < 1 is burstier, > 1 is smoother.
//!
//! A ramp (`--ramp-up-strategy`) changes the rate per request as vLLM's
//! `_get_current_request_rate` does: request i of n is sent at the rate the strategy gives at
//! progress i/(n−1), its gap drawn as above at that rate.

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

/// How a ramp goes from its start rate to its end rate (vLLM's `--ramp-up-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RampStrategy {
    /// start + (end − start) · progress
    Linear,
    /// start · (end / start)^progress
    Exponential,
}

impl fmt::Display for RampStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RampStrategy::Linear => "linear",
            RampStrategy::Exponential => "exponential",
        })
    }
}

/// A request-rate ramp: requests/s at the first request and at the last (integers, as vLLM's
/// `--ramp-up-start-rps` and `--ramp-up-end-rps`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RampUp {
    pub strategy: RampStrategy,
    pub start_rps: u32,
    pub end_rps: u32,
}

impl RampUp {
    /// The rate of request `index` of `total` (vLLM's `_get_current_request_rate`). Past the
    /// last request the rate stays at the end rate.
    pub fn rate_at(&self, index: u64, total: u64) -> f64 {
        let progress = (index as f64 / total.saturating_sub(1).max(1) as f64).min(1.0);
        let (start, end) = (f64::from(self.start_rps), f64::from(self.end_rps));
        match self.strategy {
            RampStrategy::Linear => start + (end - start) * progress,
            RampStrategy::Exponential => start * (end / start).powf(progress),
        }
    }

    /// The ramp's own rules (vLLM's, plus: the end rate must be positive, since every gap
    /// after the first is drawn at a rate between the two).
    pub fn validate(&self) -> Result<(), String> {
        if self.start_rps > self.end_rps {
            return Err(format!(
                "the start rate {} is above the end rate {}; a ramp goes up",
                self.start_rps, self.end_rps
            ));
        }
        if self.end_rps == 0 {
            return Err("the end rate must be at least 1 request/s".into());
        }
        if self.strategy == RampStrategy::Exponential && self.start_rps == 0 {
            return Err("an exponential ramp cannot start at 0 requests/s".into());
        }
        Ok(())
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
    /// The rate changes per request; each gap is drawn at request n's rate.
    Ramp {
        ramp: RampUp,
        total: u64,
        arrival: Arrival,
    },
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

    /// A ramp over `total` requests. As for a fixed rate the first request goes at offset 0;
    /// request n ≥ 1 follows request n−1 by a gap drawn at request n's rate (vLLM draws a gap
    /// before its first request too, at the start rate, which a start rate of 0 would make
    /// infinite — vLLM asserts there; here a linear ramp from 0 works).
    pub fn ramp(ramp: RampUp, total: u64, arrival: Arrival, seed: u64) -> Result<Schedule, String> {
        ramp.validate()?;
        if let Arrival::Gamma { burstiness } = arrival {
            if !(burstiness.is_finite() && burstiness > 0.0) {
                return Err(format!("burstiness must be > 0, got {burstiness}"));
            }
        }
        Ok(Schedule {
            gap: GapSource::Ramp {
                ramp,
                total,
                arrival,
            },
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
            GapSource::Ramp {
                ramp,
                total,
                arrival,
            } => {
                // validate() keeps every rate after the first positive.
                let rate = ramp.rate_at(n, *total).max(f64::MIN_POSITIVE);
                self.elapsed_s += match *arrival {
                    Arrival::Constant => 1.0 / rate,
                    Arrival::Gamma { burstiness } => {
                        Gamma::new(burstiness, 1.0 / (rate * burstiness))
                            .map(|d| d.sample(&mut self.rng))
                            .unwrap_or(1.0 / rate)
                    }
                };
            }
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

    fn ramp(strategy: RampStrategy, start_rps: u32, end_rps: u32) -> RampUp {
        RampUp {
            strategy,
            start_rps,
            end_rps,
        }
    }

    #[test]
    fn ramp_rates_follow_vllms_formula() {
        let lin = ramp(RampStrategy::Linear, 2, 10);
        assert_eq!(lin.rate_at(0, 5), 2.0);
        assert_eq!(lin.rate_at(2, 5), 6.0);
        assert_eq!(lin.rate_at(4, 5), 10.0);
        assert_eq!(lin.rate_at(9, 5), 10.0, "past the end: the end rate");
        let exp = ramp(RampStrategy::Exponential, 1, 16);
        assert!((exp.rate_at(2, 5) - 4.0).abs() < 1e-12);
        assert!((exp.rate_at(4, 5) - 16.0).abs() < 1e-12);
        // One request: progress is i / max(n − 1, 1), so the only request gets the start rate.
        assert_eq!(lin.rate_at(0, 1), 2.0);
    }

    #[test]
    fn constant_linear_ramp_gaps_are_the_inverse_rates() {
        let offs: Vec<u64> =
            Schedule::ramp(ramp(RampStrategy::Linear, 0, 4), 5, Arrival::Constant, 1)
                .unwrap()
                .take(5)
                .collect();
        // rates of requests 1..4: 1, 2, 3, 4 req/s → gaps 1, 1/2, 1/3, 1/4 s
        let expect = [0.0, 1.0, 1.5, 1.5 + 1.0 / 3.0, 1.5 + 1.0 / 3.0 + 0.25];
        for (o, e) in offs.iter().zip(expect) {
            assert!((*o as f64 / 1e9 - e).abs() < 1e-6, "{offs:?}");
        }
    }

    #[test]
    fn poisson_ramp_speeds_up_seeded_and_sends_the_planned_count_in_the_expected_time() {
        let n = 20_000;
        let r = ramp(RampStrategy::Exponential, 10, 1000);
        let a: Vec<u64> = Schedule::ramp(r, n, Arrival::POISSON, 9)
            .unwrap()
            .take(n as usize)
            .collect();
        let b: Vec<u64> = Schedule::ramp(r, n, Arrival::POISSON, 9)
            .unwrap()
            .take(n as usize)
            .collect();
        assert_eq!(a, b, "same seed, same offsets");
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        // Mean gap over the first and last tenth follows the rate there.
        let tenth = (n / 10) as usize;
        let mean_gap = |w: &[u64]| (w[w.len() - 1] - w[0]) as f64 / 1e9 / (w.len() - 1) as f64;
        let early = mean_gap(&a[..tenth]);
        let late = mean_gap(&a[a.len() - tenth..]);
        assert!(early > 10.0 * late, "early {early} late {late}");
        // The expected total is the sum of 1/rate_i; Poisson noise over 20k gaps is < 2 %.
        let expected: f64 = (1..n).map(|i| 1.0 / r.rate_at(i, n)).sum();
        let got = a[a.len() - 1] as f64 / 1e9;
        assert!((got / expected - 1.0).abs() < 0.02, "{got} vs {expected}");
    }

    #[test]
    fn bad_ramps_are_refused_with_the_reason() {
        for (r, says) in [
            (ramp(RampStrategy::Linear, 5, 2), "goes up"),
            (ramp(RampStrategy::Linear, 0, 0), "at least 1"),
            (ramp(RampStrategy::Exponential, 0, 8), "cannot start at 0"),
        ] {
            let e = Schedule::ramp(r, 10, Arrival::POISSON, 1).err().unwrap();
            assert!(e.contains(says), "{r:?}: {e}");
        }
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
