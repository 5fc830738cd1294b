//! `servebench compare A.json B.json`: which differences between two runs are larger than the
//! noise? Pure: two result files in, a table of differences out.
//!
//! Latency metrics carry their per-request spread (mean, std, count), so the difference of
//! means gets a Welch 95 % confidence interval; a difference whose interval excludes zero is
//! marked significant. Rates that are counts of requests — the success rate (completed of
//! attempted) and, for constrained runs, the `correct_rate` (valid of checked answers) — are
//! binomial proportions: their difference gets Newcombe's hybrid score interval (from each
//! side's Wilson interval), which stays honest near 0 and 100 % where the normal approximation
//! does not. Throughput is one number per run with no spread of its own: it is reported, and
//! called out only when it differs by more than `throughput_noise` (a relative band the user
//! sets from repeated runs; 5 % by default).

use crate::metrics::{Distribution, Summary};
use serde::Serialize;

/// One compared metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    /// `b − a`.
    pub delta: f64,
    /// `(b − a) / a`, when a ≠ 0.
    pub relative: Option<f64>,
    /// 95 % confidence interval of `b − a` (latency means only).
    pub ci95: Option<(f64, f64)>,
    pub significant: bool,
    /// Whether larger is better for this metric (throughput) or worse (latency).
    pub higher_is_better: bool,
}

/// The two-sided 97.5 % quantile of Student's t with `df` degrees of freedom (a table for small
/// df, the normal value beyond).
fn t975(df: f64) -> f64 {
    const T: [(f64, f64); 12] = [
        (1.0, 12.706),
        (2.0, 4.303),
        (3.0, 3.182),
        (4.0, 2.776),
        (5.0, 2.571),
        (7.0, 2.365),
        (10.0, 2.228),
        (15.0, 2.131),
        (20.0, 2.086),
        (30.0, 2.042),
        (60.0, 2.000),
        (120.0, 1.980),
    ];
    T.iter().find(|(d, _)| df <= *d).map_or(1.96, |(_, t)| *t)
}

/// Mean and the half-width of its 95 % confidence interval (Student's t), over repeated runs'
/// values of one figure. `None` half-width for fewer than two values.
pub fn mean_ci95(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (0.0, None);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, None);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some(t975(n - 1.0) * (var / n).sqrt()))
}

/// Welch's interval for the difference of two means.
fn welch(a: &Distribution, b: &Distribution) -> Option<(f64, f64)> {
    if a.count < 2 || b.count < 2 {
        return None;
    }
    let (na, nb) = (a.count as f64, b.count as f64);
    // Population std → sample variance.
    let va = a.std * a.std * na / (na - 1.0);
    let vb = b.std * b.std * nb / (nb - 1.0);
    let se2 = va / na + vb / nb;
    let d = b.mean - a.mean;
    if se2 == 0.0 {
        return Some((d, d));
    }
    let df = se2 * se2 / ((va / na).powi(2) / (na - 1.0) + (vb / nb).powi(2) / (nb - 1.0));
    let half = t975(df) * se2.sqrt();
    Some((d - half, d + half))
}

/// The 95 % Wilson score interval of the proportion `k / n`; `None` when `n` is 0.
fn wilson(k: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (k, n) = (k.min(n) as f64, n as f64);
    let z = 1.96_f64;
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    Some(((center - half).max(0.0), (center + half).min(1.0)))
}

/// Newcombe's hybrid score interval (his method 10, 1998) for `kb/nb − ka/na`, 95 %.
fn newcombe(ka: u64, na: u64, kb: u64, nb: u64) -> Option<(f64, f64)> {
    let (la, ua) = wilson(ka, na)?;
    let (lb, ub) = wilson(kb, nb)?;
    let (pa, pb) = (ka.min(na) as f64 / na as f64, kb.min(nb) as f64 / nb as f64);
    let d = pb - pa;
    let lo = d - ((pb - lb).powi(2) + (ua - pa).powi(2)).sqrt();
    let hi = d + ((ub - pb).powi(2) + (pa - la).powi(2)).sqrt();
    Some((lo, hi))
}

/// A rate of two counts, compared by Newcombe's interval, shown scaled by `scale` (1 for a
/// fraction, 100 for percent).
fn proportion(name: &str, a: (u64, u64), b: (u64, u64), scale: f64) -> Option<Difference> {
    let ci = newcombe(a.0, a.1, b.0, b.1)?;
    let (ra, rb) = (
        a.0 as f64 / a.1 as f64 * scale,
        b.0 as f64 / b.1 as f64 * scale,
    );
    Some(Difference {
        metric: name.into(),
        a: ra,
        b: rb,
        delta: rb - ra,
        relative: (ra != 0.0).then(|| (rb - ra) / ra),
        ci95: Some((ci.0 * scale, ci.1 * scale)),
        significant: ci.0 > 0.0 || ci.1 < 0.0,
        higher_is_better: true,
    })
}

/// Compare two summaries; `throughput_noise` is the relative band within which throughput
/// differences are called noise.
pub fn compare(a: &Summary, b: &Summary, throughput_noise: f64) -> Vec<Difference> {
    let mut out = Vec::new();
    for (name, da, db) in [
        ("ttft_ms", &a.ttft_ms, &b.ttft_ms),
        ("tpot_ms", &a.tpot_ms, &b.tpot_ms),
        ("itl_ms", &a.itl_ms, &b.itl_ms),
        ("e2el_ms", &a.e2el_ms, &b.e2el_ms),
    ] {
        let ci = welch(da, db);
        out.push(Difference {
            metric: format!("mean_{name}"),
            a: da.mean,
            b: db.mean,
            delta: db.mean - da.mean,
            relative: (da.mean != 0.0).then(|| (db.mean - da.mean) / da.mean),
            ci95: ci,
            significant: ci.is_some_and(|(lo, hi)| lo > 0.0 || hi < 0.0),
            higher_is_better: false,
        });
    }
    for (name, va, vb) in [
        (
            "output_throughput",
            a.output_throughput,
            b.output_throughput,
        ),
        (
            "request_throughput",
            a.request_throughput,
            b.request_throughput,
        ),
    ] {
        let rel = (va != 0.0).then(|| (vb - va) / va);
        out.push(Difference {
            metric: name.into(),
            a: va,
            b: vb,
            delta: vb - va,
            relative: rel,
            ci95: None,
            significant: rel.is_some_and(|r| r.abs() > throughput_noise),
            higher_is_better: true,
        });
    }
    out.extend(proportion(
        "success_rate",
        (a.completed, a.attempted),
        (b.completed, b.attempted),
        1.0,
    ));
    if let (Some(sa), Some(sb)) = (&a.structured, &b.structured) {
        out.extend(proportion(
            "correct_rate",
            (sa.valid, sa.checked),
            (sb.valid, sb.checked),
            100.0,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(mean: f64, std: f64, count: u64) -> Distribution {
        Distribution {
            count,
            mean,
            std,
            ..Default::default()
        }
    }

    #[test]
    fn a_shift_far_beyond_the_spread_is_significant_and_one_inside_it_is_not() {
        let a = dist(100.0, 10.0, 200);
        let far = dist(110.0, 10.0, 200);
        let near = dist(100.5, 10.0, 200);
        let (lo, hi) = welch(&a, &far).unwrap();
        assert!(lo > 0.0 && hi > lo && (lo + hi) / 2.0 - 10.0 < 1e-9);
        let (lo, hi) = welch(&a, &near).unwrap();
        assert!(lo < 0.0 && hi > 0.0);
    }

    #[test]
    fn repeat_intervals_use_students_t() {
        let (m, h) = mean_ci95(&[10.0, 12.0, 11.0]);
        assert!((m - 11.0).abs() < 1e-12);
        // s = 1, n = 3, t(2) = 4.303 → 4.303 / sqrt(3)
        assert!((h.unwrap() - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(mean_ci95(&[5.0]), (5.0, None));
    }

    #[test]
    fn compare_marks_latency_by_interval_and_throughput_by_band() {
        let mut a = Summary::default();
        let mut b = Summary::default();
        a.ttft_ms = dist(50.0, 5.0, 500);
        b.ttft_ms = dist(60.0, 5.0, 500);
        a.e2el_ms = dist(1000.0, 100.0, 500);
        b.e2el_ms = dist(1001.0, 100.0, 500);
        a.output_throughput = 1000.0;
        b.output_throughput = 1030.0;
        a.request_throughput = 10.0;
        b.request_throughput = 12.0;
        let d = compare(&a, &b, 0.05);
        let get = |m: &str| d.iter().find(|x| x.metric == m).unwrap();
        assert!(get("mean_ttft_ms").significant);
        assert!(!get("mean_e2el_ms").significant);
        assert!(
            !get("output_throughput").significant,
            "3 % is inside the 5 % band"
        );
        assert!(get("request_throughput").significant);
        // Too few samples: no interval, never significant.
        assert!(get("mean_tpot_ms").ci95.is_none() && !get("mean_tpot_ms").significant);
    }

    #[test]
    fn wilson_and_newcombe_match_the_published_examples() {
        // Newcombe (1998), table II, example (a): 56/70 vs 48/80, θ = 0.2; method 10 gives
        // 0.0524 to 0.3339. Here the difference is b − a, so a = 48/80 and b = 56/70.
        let (lo, hi) = newcombe(48, 80, 56, 70).unwrap();
        assert!(
            (lo - 0.0524).abs() < 5e-4 && (hi - 0.3339).abs() < 5e-4,
            "{lo} {hi}"
        );
        // Wilson for 0 of 10 is [0, 0.2775]: never a negative rate, unlike the normal one.
        let (lo, hi) = wilson(0, 10).unwrap();
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 5e-4, "{lo} {hi}");
        assert!(wilson(0, 0).is_none());
    }

    #[test]
    fn success_and_correct_rates_are_compared_as_proportions() {
        use crate::metrics::StructuredOutput;
        let mut a = Summary::default();
        let mut b = Summary::default();
        (a.attempted, a.completed) = (200, 200);
        (b.attempted, b.completed) = (200, 199);
        a.structured = Some(StructuredOutput {
            checked: 200,
            valid: 198,
            invalid: 2,
            correct_rate: 99.0,
        });
        b.structured = Some(StructuredOutput {
            checked: 199,
            valid: 150,
            invalid: 49,
            correct_rate: 150.0 / 199.0 * 100.0,
        });
        let d = compare(&a, &b, 0.05);
        let get = |m: &str| d.iter().find(|x| x.metric == m).unwrap();
        // One failure in 200 is within the noise of a count that small.
        assert!(!get("success_rate").significant);
        let c = get("correct_rate");
        assert!(c.significant && c.delta < 0.0, "{c:?}");
        let (lo, hi) = c.ci95.unwrap();
        assert!(lo < c.delta && c.delta < hi && hi < 0.0, "{c:?}");
        // Without verdicts on both sides there is no correct_rate row.
        b.structured = None;
        assert!(compare(&a, &b, 0.05)
            .iter()
            .all(|x| x.metric != "correct_rate"));
    }
}
