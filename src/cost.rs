//! Cost: what a run's throughput costs at an instance's hourly price.
//!
//! Pure: a [`Price`] (from the instance catalog or the user's own figure) and a run's
//! [`Summary`] in, a [`CostSummary`] out. The formulas are the ones in `metrics.md`:
//!
//! - cost per 1M output tokens = `usd_per_hour / (output TPS × 3600) × 1e6`
//! - cost per 1M total tokens  = the same with total (prompt + output) token throughput
//! - cost per 1000 good requests = `usd_per_hour / (goodput × 3600) × 1000`, where goodput is
//!   successful requests/s that met every SLO, or successful requests/s when no SLO was given
//!   ([`GoodBasis`] says which).
//!
//! A zero (or non-finite) throughput gives `None`, never `inf` or `NaN`: nothing was produced,
//! so there is no price per unit, and JSON cannot hold either value.
//!
//! On-premises energy cost ([`energy_cost`]) is separate: an [`ElectricityPrice`] (USD/kWh and
//! the facility's PUE, 1.0 unless given) and the GPUs' measured energy over the run:
//!
//! - energy cost per 1M output tokens = `energy_J × PUE / 3.6e6 × usd_per_kwh / output_tokens × 1e6`
//!
//! It counts the GPUs' own draw only (NVML/DCGM board power: not the CPUs, fans or network
//! beyond what the PUE stands for). No energy figure gives `None` with the reason, never 0.

use crate::metrics::Summary;
use crate::sim::catalog::{Catalog, CatalogError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Seconds per hour, to turn an hourly price into a per-second one.
const SECONDS_PER_HOUR: f64 = 3600.0;

#[derive(Debug, Error)]
pub enum CostError {
    #[error("no price for instance {instance:?}: {source}; give the hourly price yourself (a price override) or add the instance to a catalog file")]
    UnknownInstance {
        instance: String,
        #[source]
        source: CatalogError,
    },
    #[error("price override {label:?}: hourly price {usd_per_hour} is not a non-negative number of dollars")]
    InvalidPrice { label: String, usd_per_hour: f64 },
}

/// Where a price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceOrigin {
    /// The instance catalog (built-in or merged from a user's catalog file).
    Catalog,
    /// An hourly price the user gave for this study.
    Override,
}

/// An hourly price for the whole instance the engine ran on, with where and when it was true.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Instance type (`g5.xlarge`) or the user's label for their machine.
    pub instance: String,
    /// GPU catalog name (`A10G`), empty when the user did not say.
    pub gpu: String,
    /// GPUs on the instance; the price is for all of them together.
    pub gpu_count: u32,
    pub region: String,
    pub usd_per_hour: f64,
    /// When the price was collected or given (as written in the catalog or by the user).
    pub date: String,
    /// The catalog entry's source, or the user's label for an override.
    pub source: String,
    pub origin: PriceOrigin,
}

/// The user's own hourly price (`--price`, a config's `[price]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    pub usd_per_hour: f64,
    /// Where the figure comes from ("my reserved-instance contract").
    pub label: String,
    /// When it was true.
    pub date: String,
    /// Region, when it matters to the reader.
    #[serde(default)]
    pub region: Option<String>,
}

impl Price {
    /// The catalog's price for `instance` (name or alias, case-insensitive).
    pub fn from_catalog(catalog: &Catalog, instance: &str) -> Result<Price, CostError> {
        let spec = catalog
            .instance(instance)
            .map_err(|source| CostError::UnknownInstance {
                instance: instance.to_string(),
                source,
            })?;
        Ok(Price {
            instance: spec.name.clone(),
            gpu: spec.gpu.clone(),
            gpu_count: spec.gpu_count,
            region: spec.region.clone(),
            usd_per_hour: spec.usd_per_hour,
            date: spec.date.clone(),
            source: spec.source.clone(),
            origin: PriceOrigin::Catalog,
        })
    }

    /// The user's price for `instance` running `gpu_count` × `gpu`.
    pub fn overridden(
        instance: &str,
        gpu: &str,
        gpu_count: u32,
        given: &PriceOverride,
    ) -> Result<Price, CostError> {
        if !(given.usd_per_hour.is_finite() && given.usd_per_hour >= 0.0) {
            return Err(CostError::InvalidPrice {
                label: given.label.clone(),
                usd_per_hour: given.usd_per_hour,
            });
        }
        Ok(Price {
            instance: instance.to_string(),
            gpu: gpu.to_string(),
            gpu_count,
            region: given.region.clone().unwrap_or_default(),
            usd_per_hour: given.usd_per_hour,
            date: given.date.clone(),
            source: given.label.clone(),
            origin: PriceOrigin::Override,
        })
    }

    /// The override when one is given (GPU and region from the catalog entry when the instance
    /// is known there), the catalog's price otherwise.
    pub fn resolve(
        catalog: &Catalog,
        instance: &str,
        given: Option<&PriceOverride>,
    ) -> Result<Price, CostError> {
        let Some(given) = given else {
            return Price::from_catalog(catalog, instance);
        };
        let known = catalog.instance(instance).ok();
        let mut price = Price::overridden(
            known.map_or(instance, |k| k.name.as_str()),
            known.map_or("", |k| k.gpu.as_str()),
            known.map_or(1, |k| k.gpu_count),
            given,
        )?;
        if price.region.is_empty() {
            price.region = known.map(|k| k.region.clone()).unwrap_or_default();
        }
        Ok(price)
    }

    /// One line for reports: `g5.xlarge (1× A10G, us-east-1) at $1.006/h, catalog 2026-11-28`.
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        if !self.gpu.is_empty() {
            what.push(format!("{}× {}", self.gpu_count, self.gpu));
        }
        if !self.region.is_empty() {
            what.push(self.region.clone());
        }
        let what = if what.is_empty() {
            String::new()
        } else {
            format!(" ({})", what.join(", "))
        };
        let origin = match self.origin {
            PriceOrigin::Catalog => "catalog price",
            PriceOrigin::Override => "price given by the user",
        };
        format!(
            "{}{what} at ${}/h ({origin}: {}, {})",
            self.instance,
            trim_price(self.usd_per_hour),
            self.source,
            self.date
        )
    }
}

/// `1.006` → `"1.006"`, `3.0` → `"3.00"`: prices as people write them.
pub fn trim_price(usd: f64) -> String {
    let s = format!("{usd:.4}");
    let s = s.trim_end_matches('0');
    match s.split_once('.') {
        Some((_, frac)) if frac.len() < 2 => format!("{usd:.2}"),
        _ => s.to_string(),
    }
}

/// Joules per kilowatt-hour.
const JOULES_PER_KWH: f64 = 3.6e6;

/// An electricity price for on-premises cost: `--electricity-price` (USD/kWh) and `--pue`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElectricityPrice {
    pub usd_per_kwh: f64,
    /// Power usage effectiveness: facility energy over IT energy (1.0 counts the GPUs alone;
    /// a typical data centre is 1.1–1.6).
    #[serde(default = "one")]
    pub pue: f64,
}

fn one() -> f64 {
    1.0
}

impl ElectricityPrice {
    /// A checked price: `usd_per_kwh` finite and ≥ 0, `pue` finite and ≥ 1.
    pub fn new(usd_per_kwh: f64, pue: f64) -> Result<Self, String> {
        if !(usd_per_kwh.is_finite() && usd_per_kwh >= 0.0) {
            return Err(format!(
                "electricity price {usd_per_kwh} is not a non-negative number of USD per kWh (e.g. 0.12)"
            ));
        }
        if !(pue.is_finite() && pue >= 1.0) {
            return Err(format!(
                "PUE {pue} must be a number of at least 1.0 (facility energy over IT energy; 1.0 counts the GPUs alone)"
            ));
        }
        Ok(ElectricityPrice { usd_per_kwh, pue })
    }
}

/// What a run's measured energy cost at an electricity price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyCost {
    pub price: ElectricityPrice,
    /// GPU energy × PUE over the measured phase, kWh.
    pub energy_kwh: Option<f64>,
    /// That energy at the price, USD.
    pub usd: Option<f64>,
    pub usd_per_1m_output_tokens: Option<f64>,
    /// Why the figures are missing, when they are.
    pub unavailable_reason: Option<String>,
    /// `measured` or `simulated`: where the energy came from.
    pub energy_source: String,
}

/// The energy cost of a run that used `energy_j` (the GPUs' energy over the measured phase,
/// `Err` with the reason when there is none) to produce `output_tokens`.
pub fn energy_cost(
    price: ElectricityPrice,
    energy_j: Result<f64, String>,
    output_tokens: u64,
    energy_source: &str,
) -> EnergyCost {
    let mut cost = EnergyCost {
        price,
        energy_kwh: None,
        usd: None,
        usd_per_1m_output_tokens: None,
        unavailable_reason: None,
        energy_source: energy_source.to_string(),
    };
    match energy_j {
        Ok(j) if j.is_finite() && j >= 0.0 => {
            let kwh = j * price.pue / JOULES_PER_KWH;
            let usd = kwh * price.usd_per_kwh;
            cost.energy_kwh = Some(kwh);
            cost.usd = Some(usd);
            if output_tokens > 0 {
                cost.usd_per_1m_output_tokens = Some(usd / output_tokens as f64 * 1e6);
            } else {
                cost.unavailable_reason = Some("no output tokens in the measured phase".into());
            }
        }
        Ok(j) => cost.unavailable_reason = Some(format!("energy figure {j} J is not usable")),
        Err(why) => cost.unavailable_reason = Some(format!("no GPU energy figure: {why}")),
    }
    cost
}

/// Which request rate the "per 1000 good requests" figure used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoodBasis {
    /// Successful requests/s that met every SLO given.
    SloGoodput,
    /// Successful requests/s: no SLO was given, so every success counts as good.
    SuccessfulNoSlo,
}

impl GoodBasis {
    pub fn describe(self) -> &'static str {
        match self {
            GoodBasis::SloGoodput => "successful requests that met every SLO",
            GoodBasis::SuccessfulNoSlo => "successful requests (no SLO given)",
        }
    }
}

/// What one run cost at one price. `None` figures: that throughput was zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostSummary {
    pub price: Price,
    pub usd_per_1m_output_tokens: Option<f64>,
    pub usd_per_1m_total_tokens: Option<f64>,
    pub usd_per_1k_good_requests: Option<f64>,
    /// The request rate the line above used, requests/s.
    pub good_requests_per_s: f64,
    pub good_basis: GoodBasis,
}

/// Dollars per million tokens at `tokens_per_s`; `None` when nothing was produced.
pub fn usd_per_million_tokens(usd_per_hour: f64, tokens_per_s: f64) -> Option<f64> {
    per_unit(usd_per_hour, tokens_per_s, 1e6)
}

/// Dollars per thousand requests at `requests_per_s`; `None` when none succeeded.
pub fn usd_per_thousand_requests(usd_per_hour: f64, requests_per_s: f64) -> Option<f64> {
    per_unit(usd_per_hour, requests_per_s, 1e3)
}

fn per_unit(usd_per_hour: f64, per_s: f64, units: f64) -> Option<f64> {
    if !(per_s.is_finite() && per_s > 0.0 && usd_per_hour.is_finite()) {
        return None;
    }
    let v = usd_per_hour / (per_s * SECONDS_PER_HOUR) * units;
    v.is_finite().then_some(v)
}

/// The cost figures of one run's `summary` at `price`.
pub fn cost_summary(price: &Price, summary: &Summary) -> CostSummary {
    let (good, basis) = match &summary.goodput {
        Some(g) => (g.request_goodput, GoodBasis::SloGoodput),
        None => (summary.request_throughput, GoodBasis::SuccessfulNoSlo),
    };
    let hourly = price.usd_per_hour;
    CostSummary {
        price: price.clone(),
        usd_per_1m_output_tokens: usd_per_million_tokens(hourly, summary.output_throughput),
        usd_per_1m_total_tokens: usd_per_million_tokens(hourly, summary.total_token_throughput),
        usd_per_1k_good_requests: usd_per_thousand_requests(hourly, good),
        good_requests_per_s: if good.is_finite() { good } else { 0.0 },
        good_basis: basis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Goodput, Slo};
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    fn g5() -> Price {
        Price::from_catalog(&Catalog::builtin(), "g5.xlarge").unwrap()
    }

    #[test]
    fn catalog_price_carries_its_provenance() {
        let p = g5();
        assert_eq!(p.usd_per_hour, 1.006);
        assert_eq!(p.gpu, "A10G");
        assert_eq!(p.gpu_count, 1);
        assert_eq!(p.region, "us-east-1");
        assert_eq!(p.origin, PriceOrigin::Catalog);
        assert!(!p.date.is_empty() && p.source.contains("AWS"));
        assert_eq!(
            Price::from_catalog(&Catalog::builtin(), "G5.XLARGE").unwrap(),
            p
        );
        let d = p.describe();
        assert!(
            d.starts_with("g5.xlarge (1× A10G, us-east-1) at $1.006/h (catalog price"),
            "{d}"
        );
    }

    #[test]
    fn an_unknown_instance_says_what_to_do() {
        let err = Price::from_catalog(&Catalog::builtin(), "x9.huge")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x9.huge") && err.contains("override"), "{err}");
    }

    #[test]
    fn an_override_wins_and_keeps_the_catalog_facts() {
        let given = PriceOverride {
            usd_per_hour: 0.5,
            label: "spot, my account".into(),
            date: "2026-11-01".into(),
            region: None,
        };
        let p = Price::resolve(&Catalog::builtin(), "g5.xlarge", Some(&given)).unwrap();
        assert_eq!(p.usd_per_hour, 0.5);
        assert_eq!(p.origin, PriceOrigin::Override);
        assert_eq!((p.gpu.as_str(), p.region.as_str()), ("A10G", "us-east-1"));
        assert_eq!(p.source, "spot, my account");
        // An instance the catalog does not know is fine with an override.
        let p = Price::resolve(&Catalog::builtin(), "my-box", Some(&given)).unwrap();
        assert_eq!((p.instance.as_str(), p.gpu.as_str()), ("my-box", ""));
        let bad = PriceOverride {
            usd_per_hour: f64::NAN,
            ..given
        };
        assert!(Price::resolve(&Catalog::builtin(), "g5.xlarge", Some(&bad)).is_err());
    }

    #[test]
    fn hand_computed_costs() {
        // g5.xlarge at 1000 output tok/s: 1.006 / 3.6e6 × 1e6 = $0.27944… per 1M.
        assert!(close(
            usd_per_million_tokens(1.006, 1000.0).unwrap(),
            0.279_444_444_444_444_4
        ));
        // 2 req/s: 1.006 / 7200 × 1000 = $0.139722… per 1000 requests.
        assert!(close(
            usd_per_thousand_requests(1.006, 2.0).unwrap(),
            0.139_722_222_222_222_2
        ));
        let summary = Summary {
            output_throughput: 1000.0,
            total_token_throughput: 2500.0,
            request_throughput: 2.0,
            ..Summary::default()
        };
        let c = cost_summary(&g5(), &summary);
        assert!(close(
            c.usd_per_1m_output_tokens.unwrap(),
            0.279_444_444_444_444_4
        ));
        // 1.006 / (2500 × 3600) × 1e6 = 0.111777…
        assert!(close(
            c.usd_per_1m_total_tokens.unwrap(),
            0.111_777_777_777_777_8
        ));
        assert!(close(
            c.usd_per_1k_good_requests.unwrap(),
            0.139_722_222_222_222_2
        ));
        assert_eq!(c.good_basis, GoodBasis::SuccessfulNoSlo);
    }

    #[test]
    fn goodput_is_used_when_an_slo_was_given() {
        let summary = Summary {
            request_throughput: 2.0,
            goodput: Some(Goodput {
                slo: Slo {
                    ttft_ms: Some(200.0),
                    ..Slo::default()
                },
                good: 10,
                request_goodput: 0.5,
                good_fraction: 0.25,
            }),
            ..Summary::default()
        };
        let c = cost_summary(&g5(), &summary);
        assert_eq!(c.good_basis, GoodBasis::SloGoodput);
        assert_eq!(c.good_requests_per_s, 0.5);
        // 1.006 / 1800 × 1000 = 0.558888…
        assert!(close(
            c.usd_per_1k_good_requests.unwrap(),
            0.558_888_888_888_888_9
        ));
    }

    #[test]
    fn zero_throughput_has_no_cost_and_serializes_as_null() {
        let c = cost_summary(&g5(), &Summary::default());
        assert_eq!(c.usd_per_1m_output_tokens, None);
        assert_eq!(c.usd_per_1m_total_tokens, None);
        assert_eq!(c.usd_per_1k_good_requests, None);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"usd_per_1m_output_tokens\":null"), "{json}");
        assert!(!json.contains("inf") && !json.contains("NaN"));
        assert_eq!(usd_per_million_tokens(1.0, f64::INFINITY), None);
        assert_eq!(usd_per_million_tokens(1.0, -3.0), None);
    }

    #[test]
    fn prices_print_as_people_write_them() {
        assert_eq!(trim_price(1.006), "1.006");
        assert_eq!(trim_price(3.06), "3.06");
        assert_eq!(trim_price(3.0), "3.00");
        assert_eq!(trim_price(0.8048), "0.8048");
        assert_eq!(trim_price(98.32), "98.32");
    }

    #[test]
    fn energy_cost_by_hand_and_unavailable_without_energy() {
        // 3.6 MJ = 1 kWh; × PUE 1.5 = 1.5 kWh at $0.12 = $0.18 for 100 000 tokens → $1.80 per 1M.
        let price = ElectricityPrice::new(0.12, 1.5).unwrap();
        let c = energy_cost(price, Ok(3.6e6), 100_000, "measured");
        assert!(close(c.energy_kwh.unwrap(), 1.5));
        assert!(close(c.usd.unwrap(), 0.18));
        assert!(close(c.usd_per_1m_output_tokens.unwrap(), 1.8));
        assert_eq!(c.unavailable_reason, None);
        // PUE 1 (the default) counts the GPUs alone.
        let c = energy_cost(
            ElectricityPrice::new(0.12, 1.0).unwrap(),
            Ok(3.6e6),
            100_000,
            "measured",
        );
        assert!(close(c.usd_per_1m_output_tokens.unwrap(), 1.2));
        // No energy: unavailable with the reason, null in JSON, never 0.
        let c = energy_cost(
            price,
            Err("nvml: libnvidia-ml.so.1 not found".into()),
            100,
            "measured",
        );
        assert_eq!(
            (c.energy_kwh, c.usd, c.usd_per_1m_output_tokens),
            (None, None, None)
        );
        assert!(c
            .unavailable_reason
            .unwrap()
            .contains("libnvidia-ml.so.1 not found"));
        let c = energy_cost(price, Ok(1000.0), 0, "measured");
        assert_eq!(c.usd_per_1m_output_tokens, None);
        assert!(c.usd.is_some());
        let json =
            serde_json::to_string(&energy_cost(price, Err("x".into()), 1, "measured")).unwrap();
        assert!(json.contains("\"usd_per_1m_output_tokens\":null"), "{json}");
        // Bad inputs are refused with the fix.
        assert!(ElectricityPrice::new(-0.1, 1.0)
            .unwrap_err()
            .contains("USD per kWh"));
        assert!(ElectricityPrice::new(0.1, 0.9)
            .unwrap_err()
            .contains("at least 1.0"));
        assert!(ElectricityPrice::new(f64::NAN, 1.0).is_err());
    }

    proptest! {
        #[test]
        fn cost_is_finite_positive_and_inverse_to_throughput(
            hourly in 0.01f64..200.0, tps in 0.001f64..1e6
        ) {
            let c = usd_per_million_tokens(hourly, tps).unwrap();
            prop_assert!(c.is_finite() && c > 0.0);
            let doubled = usd_per_million_tokens(hourly, tps * 2.0).unwrap();
            prop_assert!((c / doubled - 2.0).abs() < 1e-9);
        }
    }
}
