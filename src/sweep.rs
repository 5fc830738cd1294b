//! Sweeps and capacity: how does a deployment behave as load grows, and how much load can it
//! take while still meeting its latency objectives?
//!
//! The capacity search is pure logic over a `measure(rate) -> fraction good` function, so it
//! is tested with a fake deployment and driven by real runs in `app::sweep`.
//!
//! The search brackets: it doubles the rate while the goodput fraction meets the target, then
//! bisects between the last rate that met it and the first that did not, until the bracket is
//! within `tolerance` (relative). A point whose fraction lands within `noise` of the target is
//! measured again and the worse result kept, so one lucky run cannot raise the capacity.

use serde::{Deserialize, Serialize};

/// One measured point of a search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Requests/s offered.
    pub rate: f64,
    /// Fraction of requests that succeeded and met every objective.
    pub good_fraction: f64,
    pub met: bool,
}

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CapacitySearch {
    /// Fraction of requests that must be good, e.g. 0.95.
    pub target: f64,
    /// First rate tried, requests/s.
    pub start_rate: f64,
    /// Stop when (high − low) / low ≤ this.
    pub tolerance: f64,
    /// A fraction within this of the target is measured once more (the worse is kept).
    pub noise: f64,
    /// At most this many measurements in all.
    pub max_probes: usize,
    /// Never try above this rate.
    pub max_rate: f64,
}

impl Default for CapacitySearch {
    fn default() -> Self {
        CapacitySearch {
            target: 0.95,
            start_rate: 1.0,
            tolerance: 0.1,
            noise: 0.02,
            max_probes: 16,
            max_rate: 100_000.0,
        }
    }
}

/// Where the search ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityResult {
    /// The highest rate that met the target (0 when even the first did not).
    pub capacity: f64,
    /// The lowest rate that missed it, when one was found.
    pub first_miss: Option<f64>,
    /// Whether the bracket closed to the tolerance (false: stopped by max_probes/max_rate).
    pub converged: bool,
    pub probes: Vec<Probe>,
}

/// Run the search. `measure` runs the deployment at a rate and returns the good fraction (or
/// an error that ends the search).
pub fn search<E>(
    cfg: &CapacitySearch,
    mut measure: impl FnMut(f64) -> Result<f64, E>,
) -> Result<CapacityResult, E> {
    let mut probes = Vec::new();
    let mut lo: f64 = 0.0;
    let mut hi: Option<f64> = None;
    let mut rate = cfg.start_rate.max(f64::MIN_POSITIVE);
    let mut converged = false;
    while probes.len() < cfg.max_probes {
        let mut frac = measure(rate)?;
        if (frac - cfg.target).abs() <= cfg.noise && probes.len() + 1 < cfg.max_probes {
            probes.push(Probe {
                rate,
                good_fraction: frac,
                met: frac >= cfg.target,
            });
            frac = frac.min(measure(rate)?);
        }
        let met = frac >= cfg.target;
        probes.push(Probe {
            rate,
            good_fraction: frac,
            met,
        });
        if met {
            lo = lo.max(rate);
        } else {
            hi = Some(hi.map_or(rate, |h: f64| h.min(rate)));
        }
        match hi {
            Some(h) if lo > 0.0 && (h - lo) / lo <= cfg.tolerance => {
                converged = true;
                break;
            }
            Some(h) => rate = if lo > 0.0 { (lo + h) / 2.0 } else { h / 2.0 },
            None => {
                if rate >= cfg.max_rate {
                    break;
                }
                rate = (rate * 2.0).min(cfg.max_rate);
            }
        }
        // A deployment that misses even at a vanishing rate has no capacity under these SLOs.
        if lo == 0.0 && rate < cfg.start_rate / 1024.0 {
            break;
        }
    }
    Ok(CapacityResult {
        capacity: lo,
        first_miss: hi,
        converged,
        probes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A deployment that is perfect up to `cap` requests/s and falls off linearly after.
    fn fake(cap: f64) -> impl FnMut(f64) -> Result<f64, ()> {
        move |r| {
            Ok(if r <= cap {
                1.0
            } else {
                (1.0 - (r - cap) / cap).max(0.0)
            })
        }
    }

    #[test]
    fn brackets_and_converges_to_the_knee() {
        let cfg = CapacitySearch {
            target: 0.95,
            start_rate: 1.0,
            tolerance: 0.05,
            ..Default::default()
        };
        let r = search(&cfg, fake(37.0)).unwrap();
        assert!(r.converged);
        // Capacity is where the fraction crosses 0.95: 37 × 1.05 = 38.85.
        assert!(
            r.capacity <= 38.85 && r.capacity >= 38.85 / 1.05 - 1e-9,
            "{r:?}"
        );
        assert!(r.first_miss.unwrap() > r.capacity);
        assert!(r.probes.iter().all(|p| p.met == (p.good_fraction >= 0.95)));
    }

    #[test]
    fn no_capacity_when_nothing_meets() {
        let r = search(&CapacitySearch::default(), |_| Ok::<_, ()>(0.2)).unwrap();
        assert_eq!(r.capacity, 0.0);
        assert!(!r.converged);
    }

    #[test]
    fn a_point_near_the_target_is_measured_again_and_the_worse_kept() {
        let mut calls = 0;
        let cfg = CapacitySearch {
            target: 0.95,
            start_rate: 10.0,
            max_probes: 3,
            ..Default::default()
        };
        let r = search(&cfg, |_| {
            calls += 1;
            Ok::<_, ()>(if calls == 1 { 0.96 } else { 0.90 })
        })
        .unwrap();
        assert_eq!(r.probes[0].good_fraction, 0.96);
        assert!(!r.probes[1].met, "the remeasured (worse) value decides");
        assert_eq!(r.capacity, 0.0);
    }

    proptest! {
        #[test]
        fn capacity_is_always_a_rate_that_met_and_below_any_miss(cap in 0.5f64..500.0, start in 0.1f64..50.0) {
            let cfg = CapacitySearch { start_rate: start, ..Default::default() };
            let r = search(&cfg, fake(cap)).unwrap();
            if r.capacity > 0.0 {
                prop_assert!(r.probes.iter().any(|p| p.met && p.rate == r.capacity));
            }
            if let Some(m) = r.first_miss {
                prop_assert!(m > r.capacity);
            }
            prop_assert!(r.probes.len() <= cfg.max_probes);
        }
    }
}
