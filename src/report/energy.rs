//! GPU energy in the run's outputs: the console's one line and the CSV's few columns, from the
//! telemetry summary and the optional electricity cost. Renders only; computes nothing new.

use crate::cost::EnergyCost;
use crate::telemetry::summary::{EnergyMethod, GpuPowerFigures};
use crate::telemetry::{TelemetrySource, TelemetrySummary};

/// The CSV's energy columns, in order (after the run's other columns).
pub const ENERGY_COLUMNS: &[&str] = &[
    "gpu_energy_j",
    "gpu_energy_method",
    "joules_per_output_token",
    "gpu_power_mean_w",
    "gpu_power_max_w",
    "energy_usd_per_1m_output_tokens",
];

/// What the CSV's energy columns hold: all GPUs together; an empty field where a figure is
/// unavailable (the result JSON says why).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnergyColumns {
    pub energy_j: Option<f64>,
    pub method: Option<String>,
    pub joules_per_output_token: Option<f64>,
    pub power_mean_w: Option<f64>,
    pub power_max_w: Option<f64>,
    pub usd_per_1m_output_tokens: Option<f64>,
}

impl EnergyColumns {
    pub fn new(t: Option<&TelemetrySummary>, cost: Option<&EnergyCost>) -> Self {
        let Some(t) = t else {
            return EnergyColumns::default();
        };
        let g = &t.gpu_power;
        EnergyColumns {
            energy_j: g.energy_j,
            method: g
                .energy_method
                .map(|m| method_label(m, t.source).to_string()),
            joules_per_output_token: g.joules_per_output_token,
            power_mean_w: g.power_mean_w,
            power_max_w: g.power_max_w,
            usd_per_1m_output_tokens: cost.and_then(|c| c.usd_per_1m_output_tokens),
        }
    }

    /// The fields, in [`ENERGY_COLUMNS`] order.
    pub fn fields(&self) -> Vec<String> {
        let num = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
        vec![
            num(self.energy_j),
            self.method.clone().unwrap_or_default(),
            num(self.joules_per_output_token),
            num(self.power_mean_w),
            num(self.power_max_w),
            num(self.usd_per_1m_output_tokens),
        ]
    }
}

/// `counter`, `power_integral`, either prefixed `simulated_` when the readings came from the
/// simulator's server, or `simulated_model` for `predict`'s virtual-time model.
fn method_label(m: EnergyMethod, source: TelemetrySource) -> &'static str {
    match (m, source == TelemetrySource::Simulated) {
        (EnergyMethod::EnergyCounter, false) => "counter",
        (EnergyMethod::PowerIntegral, false) => "power_integral",
        (EnergyMethod::EnergyCounter, true) => "simulated_counter",
        (EnergyMethod::PowerIntegral, true) => "simulated_power_integral",
        (EnergyMethod::Modelled, _) => "simulated_model",
    }
}

/// The console's one line: energy, J per output token, mean/peak power, SM clock, hottest
/// temperature and the clock-event reasons seen; or why there is none.
pub fn energy_line(t: &TelemetrySummary, cost: Option<&EnergyCost>) -> String {
    let g: &GpuPowerFigures = &t.gpu_power;
    let simulated = if t.source == TelemetrySource::Simulated {
        " (simulated)"
    } else {
        ""
    };
    let Some(energy) = g.energy_j else {
        let why = g
            .unavailable
            .get("energy_j")
            .map_or("no GPU telemetry", String::as_str);
        return format!("GPU energy{simulated}: unavailable ({why})");
    };
    let mut parts = vec![format!(
        "{energy:.1} J ({}, {})",
        g.energy_method.map_or("", |m| method_label(m, t.source)),
        t.source
    )];
    if let Some(j) = g.joules_per_output_token {
        parts.push(format!("{j:.3} J/out tok"));
    }
    match (g.power_mean_w, g.power_max_w) {
        (Some(mean), Some(max)) => parts.push(format!("{mean:.0} W mean / {max:.0} W peak")),
        (Some(mean), None) => parts.push(format!("{mean:.0} W mean")),
        _ => {}
    }
    if let Some(mhz) = g.sm_clock_mean_mhz {
        parts.push(format!("SM {mhz:.0} MHz"));
    }
    if let Some(c) = g.temp_max_c {
        parts.push(format!("max {c:.0} °C"));
    }
    if g.clock_event_samples > 0 {
        let reasons: Vec<String> = g
            .clock_event_reasons
            .iter()
            .filter(|(name, _)| name.as_str() != "gpu_idle")
            .map(|(name, f)| format!("{name} {:.0}%", f * 100.0))
            .collect();
        parts.push(if reasons.is_empty() {
            "no clock slowdown".into()
        } else {
            format!("clocks held back: {}", reasons.join(", "))
        });
    }
    if let Some(c) = cost {
        let at = if c.price.pue == 1.0 {
            format!("${}/kWh", crate::cost::trim_price(c.price.usd_per_kwh))
        } else {
            format!(
                "${}/kWh, PUE {}",
                crate::cost::trim_price(c.price.usd_per_kwh),
                c.price.pue
            )
        };
        parts.push(match (c.usd_per_1m_output_tokens, &c.unavailable_reason) {
            (Some(usd), _) => format!("${usd:.4}/1M out tok at {at}"),
            (None, Some(why)) => format!("energy cost unavailable: {why}"),
            (None, None) => "energy cost unavailable".into(),
        });
    }
    format!("GPU energy{simulated}: {}", parts.join(" · "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{energy_cost, ElectricityPrice};

    fn summary() -> TelemetrySummary {
        let mut g = GpuPowerFigures {
            gpu: "all".into(),
            energy_j: Some(1234.56),
            energy_method: Some(EnergyMethod::EnergyCounter),
            power_mean_w: Some(312.4),
            power_max_w: Some(450.0),
            sm_clock_mean_mhz: Some(1850.2),
            temp_max_c: Some(71.0),
            clock_event_samples: 10,
            ..GpuPowerFigures::default()
        };
        g.clock_event_reasons.insert("gpu_idle".into(), 0.3);
        g.clock_event_reasons.insert("sw_power_cap".into(), 0.12);
        TelemetrySummary {
            gpu_util_mean_pct: Some(50.0),
            gpu_util_max_pct: Some(90.0),
            gpu_mem_max_gb: Some(10.0),
            kv_usage_max: None,
            prefix_cache_hit_rate: None,
            running_max: None,
            waiting_max: None,
            source: TelemetrySource::Nvml,
            unavailable_reason: None,
            engine_unavailable_reason: None,
            gpu_samples: 10,
            gpu_power: g,
            gpu_power_per_gpu: vec![],
        }
    }

    #[test]
    fn one_compact_line_with_every_figure() {
        let mut t = summary();
        t.set_output_tokens(2000);
        let cost = energy_cost(
            ElectricityPrice::new(0.15, 1.0).unwrap(),
            Ok(1234.56),
            2000,
            "measured",
        );
        let line = energy_line(&t, Some(&cost));
        assert_eq!(
            line,
            "GPU energy: 1234.6 J (counter, nvml) · 0.617 J/out tok · 312 W mean / 450 W peak · \
             SM 1850 MHz · max 71 °C · clocks held back: sw_power_cap 12% · $0.0257/1M out tok at $0.15/kWh"
        );
        assert!(!line.contains('\n'));
        let cols = EnergyColumns::new(Some(&t), Some(&cost)).fields();
        assert_eq!(cols.len(), ENERGY_COLUMNS.len());
        assert_eq!(cols[0], "1234.56");
        assert_eq!(cols[1], "counter");
        assert_eq!(cols[2].parse::<f64>().unwrap(), 1234.56 / 2000.0);
    }

    #[test]
    fn no_energy_says_why_and_leaves_the_columns_empty() {
        let mut t = summary();
        t.gpu_power = GpuPowerFigures::default();
        t.gpu_power.unavailable.insert(
            "energy_j".into(),
            "nvml: libnvidia-ml.so.1 not found".into(),
        );
        assert_eq!(
            energy_line(&t, None),
            "GPU energy: unavailable (nvml: libnvidia-ml.so.1 not found)"
        );
        let cols = EnergyColumns::new(Some(&t), None).fields();
        assert!(cols.iter().all(String::is_empty), "{cols:?}");
        t.source = TelemetrySource::Simulated;
        assert!(energy_line(&t, None).starts_with("GPU energy (simulated): unavailable"));
        // Mean power without a peak (predict's model), and the PUE beside the price.
        let mut t = summary();
        t.gpu_power.power_max_w = None;
        t.gpu_power.clock_event_samples = 0;
        let cost = energy_cost(
            ElectricityPrice::new(0.12, 1.3).unwrap(),
            Ok(1234.56),
            0,
            "measured",
        );
        let line = energy_line(&t, Some(&cost));
        assert!(line.contains(" · 312 W mean · "), "{line}");
        assert!(
            line.ends_with(" · energy cost unavailable: no output tokens in the measured phase"),
            "{line}"
        );
    }
}
