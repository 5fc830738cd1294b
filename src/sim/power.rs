//! The simulator's modelled GPU power: a straight line from idle to the board's TDP in the
//! modelled busy fraction, per GPU.
//!
//! `power = idle + (TDP − idle) × busy`, with `idle = IDLE_FRACTION_OF_TDP × TDP`, and so the
//! energy of one GPU over a run is `idle × duration + (TDP − idle) × busy time`. Every
//! tensor-parallel rank is modelled as equally busy. TDP comes from the GPU catalog's `tdp_w`
//! (datasheet); a GPU without one has no modelled power. This is a model, not a measurement:
//! real boards rarely reach TDP when memory-bound (decode), so it is an upper estimate under load;
//! every figure built on it is labelled simulated.

use super::catalog::GpuSpec;

/// Idle draw as a fraction of TDP: an assumption, not a datasheet figure. Datacenter boards
/// with a model loaded and no kernel running draw roughly 10–25 % of their TDP.
pub const IDLE_FRACTION_OF_TDP: f64 = 0.15;

/// One GPU's modelled power.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerModel {
    pub idle_w: f64,
    pub tdp_w: f64,
}

impl PowerModel {
    /// The model for `gpu`, when the catalog gives its TDP.
    pub fn of(gpu: &GpuSpec) -> Option<PowerModel> {
        let tdp_w = gpu.tdp_w.filter(|w| w.is_finite() && *w > 0.0)?;
        Some(PowerModel {
            idle_w: IDLE_FRACTION_OF_TDP * tdp_w,
            tdp_w,
        })
    }

    /// Draw at a busy fraction (clamped to 0–1), W.
    pub fn power_w(&self, busy: f64) -> f64 {
        self.idle_w + (self.tdp_w - self.idle_w) * busy.clamp(0.0, 1.0)
    }

    /// Energy over `duration_s` of which `busy_s` was busy (clamped to the duration), J.
    pub fn energy_j(&self, duration_s: f64, busy_s: f64) -> f64 {
        let duration_s = duration_s.max(0.0);
        self.idle_w * duration_s + (self.tdp_w - self.idle_w) * busy_s.clamp(0.0, duration_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Catalog;

    #[test]
    fn idle_to_tdp_in_the_busy_fraction() {
        let h100 = Catalog::builtin().gpu("H100").unwrap().clone();
        let m = PowerModel::of(&h100).unwrap();
        assert_eq!(m.tdp_w, 700.0);
        assert_eq!(m.idle_w, 105.0);
        assert_eq!(m.power_w(0.0), 105.0);
        assert_eq!(m.power_w(1.0), 700.0);
        assert_eq!(m.power_w(0.5), 402.5);
        assert_eq!(m.power_w(7.0), 700.0);
        // 10 s, 4 s busy: 105 × 10 + 595 × 4 = 3430 J.
        assert_eq!(m.energy_j(10.0, 4.0), 3430.0);
        // The energy is the mean power × time.
        assert!((m.energy_j(10.0, 4.0) - m.power_w(0.4) * 10.0).abs() < 1e-9);
        let mut no_tdp = h100;
        no_tdp.tdp_w = None;
        assert_eq!(PowerModel::of(&no_tdp), None);
    }

    #[test]
    fn every_built_in_gpu_has_a_sourced_tdp() {
        for g in Catalog::builtin().gpus() {
            let tdp = g.tdp_w.unwrap_or_else(|| panic!("{} has no tdp_w", g.name));
            assert!((50.0..=1500.0).contains(&tdp), "{}: {tdp}", g.name);
            assert!(
                g.tdp_source.as_deref().is_some_and(|s| s.contains(" W")),
                "{}",
                g.name
            );
        }
    }
}
