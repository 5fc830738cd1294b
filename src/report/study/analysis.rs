//! From cells to comparisons: per framework × workload figures (mean over repeats), per
//! framework figures over the workloads every framework ran, and the stated rules that turn
//! them into recommendations. Pure; every rule is written next to its result.

use super::model::{framework_label, Cell, GpuSummary, Study, WorkloadSpec};

/// Two results closer than this fraction of the better one are reported as a tie.
pub const TIE_FRACTION: f64 = 0.05;

/// A latency distribution as the report shows it, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Ladder {
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Ladder {
    /// The same ladder in another unit (e.g. × 1000 for seconds → milliseconds).
    pub fn scaled(self, k: f64) -> Ladder {
        Ladder {
            count: self.count,
            mean: self.mean * k,
            min: self.min * k,
            p50: self.p50 * k,
            p90: self.p90 * k,
            p95: self.p95 * k,
            p99: self.p99 * k,
            max: self.max * k,
        }
    }

    fn of(d: &crate::metrics::Distribution) -> Ladder {
        let s = |v: f64| v / 1000.0;
        let p = |q: f64| s(d.percentile(q).unwrap_or(0.0));
        Ladder {
            count: d.count,
            mean: s(d.mean),
            min: s(d.min),
            p50: p(50.0),
            p90: p(90.0),
            p95: p(95.0),
            p99: p(99.0),
            max: s(d.max),
        }
    }

    /// Field-wise mean (repeats of one cell); counts add up.
    fn mean_of(ladders: &[Ladder]) -> Ladder {
        let n = ladders.len().max(1) as f64;
        let avg = |f: fn(&Ladder) -> f64| ladders.iter().map(f).sum::<f64>() / n;
        Ladder {
            count: ladders.iter().map(|l| l.count).sum(),
            mean: avg(|l| l.mean),
            min: avg(|l| l.min),
            p50: avg(|l| l.p50),
            p90: avg(|l| l.p90),
            p95: avg(|l| l.p95),
            p99: avg(|l| l.p99),
            max: avg(|l| l.max),
        }
    }
}

/// One framework × workload, averaged over its repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub framework: String,
    pub workload: String,
    pub repeats: usize,
    pub spec: WorkloadSpec,
    pub output_tps: f64,
    pub total_tps: f64,
    pub rps: f64,
    pub attempted: u64,
    pub completed: u64,
    pub success_rate: f64,
    pub e2e: Ladder,
    pub ttft: Ladder,
    pub usd_per_hour: Option<f64>,
    pub usd_per_1m_output: Option<f64>,
    pub usd_per_1m_total: Option<f64>,
    pub usd_per_1k_good: Option<f64>,
    /// Mean of the repeats' mean utilization, max of their max, max of their memory.
    pub gpu: Option<GpuSummary>,
    pub gpu_unavailable: Option<String>,
    /// Mean over the repeats that reported one.
    pub prefix_cache_hit_rate: Option<f64>,
    /// Mean over the repeats of the mean TPOT, seconds.
    pub tpot_mean: f64,
    /// Structured output: (valid, checked) answers summed over the repeats; `None` when no
    /// answer was checked.
    pub structured: Option<(u64, u64)>,
    pub simulated: bool,
    pub result_files: Vec<String>,
}

impl Stats {
    /// Valid answers / checked answers × 100 (vLLM's `correct_rate`), pooled over repeats.
    pub fn correct_rate(&self) -> Option<f64> {
        self.structured
            .filter(|&(_, checked)| checked > 0)
            .map(|(valid, checked)| valid as f64 / checked as f64 * 100.0)
    }
}

/// The "Structured generation" row's validity bar: a framework whose answers are valid less
/// often than this is not recommended on speed.
pub const MIN_CORRECT_RATE: f64 = 99.0;

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Mean of the values when every cell has one (a cost missing in one repeat is not averaged away).
fn mean_all(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let values: Option<Vec<f64>> = values.into_iter().collect();
    values.filter(|v| !v.is_empty()).map(mean)
}

impl Stats {
    fn of(cells: &[&Cell]) -> Stats {
        let first = cells[0];
        let gpus: Option<Vec<&GpuSummary>> = cells.iter().map(|c| c.gpu.as_ref()).collect();
        let gpu = gpus.map(|g| GpuSummary {
            util_mean_pct: mean(g.iter().map(|s| s.util_mean_pct)),
            util_max_pct: g.iter().map(|s| s.util_max_pct).fold(0.0, f64::max),
            mem_max_gb: g.iter().map(|s| s.mem_max_gb).fold(0.0, f64::max),
            power_mean_w: mean_all(g.iter().map(|s| s.power_mean_w)),
            joules_per_output_token: mean_all(g.iter().map(|s| s.joules_per_output_token)),
            source: first
                .gpu
                .as_ref()
                .map(|s| s.source.clone())
                .unwrap_or_default(),
        });
        let gpu_unavailable = if gpu.is_some() {
            None
        } else {
            Some(
                cells
                    .iter()
                    .find_map(|c| c.gpu_unavailable.clone())
                    .unwrap_or_else(|| "no GPU telemetry was recorded for this run".into()),
            )
        };
        let cost = |f: fn(&crate::cost::CostSummary) -> Option<f64>| {
            mean_all(cells.iter().map(|c| c.cost.as_ref().and_then(f)))
        };
        let attempted = cells.iter().map(|c| c.summary.attempted).sum();
        let completed = cells.iter().map(|c| c.summary.completed).sum();
        Stats {
            framework: first.framework.clone(),
            workload: first.workload.clone(),
            repeats: cells.len(),
            spec: first.spec.clone(),
            output_tps: mean(cells.iter().map(|c| c.summary.output_throughput)),
            total_tps: mean(cells.iter().map(|c| c.summary.total_token_throughput)),
            rps: mean(cells.iter().map(|c| c.summary.request_throughput)),
            attempted,
            completed,
            success_rate: if attempted == 0 {
                0.0
            } else {
                completed as f64 / attempted as f64
            },
            e2e: Ladder::mean_of(
                &cells
                    .iter()
                    .map(|c| Ladder::of(&c.summary.e2el_ms))
                    .collect::<Vec<_>>(),
            ),
            ttft: Ladder::mean_of(
                &cells
                    .iter()
                    .map(|c| Ladder::of(&c.summary.ttft_ms))
                    .collect::<Vec<_>>(),
            ),
            usd_per_hour: cost(|c| Some(c.price.usd_per_hour)),
            usd_per_1m_output: cost(|c| c.usd_per_1m_output_tokens),
            usd_per_1m_total: cost(|c| c.usd_per_1m_total_tokens),
            usd_per_1k_good: cost(|c| c.usd_per_1k_good_requests),
            gpu,
            gpu_unavailable,
            prefix_cache_hit_rate: {
                let rates: Vec<f64> = cells
                    .iter()
                    .filter_map(|c| c.prefix_cache_hit_rate)
                    .collect();
                (!rates.is_empty()).then(|| mean(rates))
            },
            tpot_mean: mean(cells.iter().map(|c| c.summary.tpot_ms.mean / 1000.0)),
            structured: cells
                .iter()
                .filter_map(|c| c.summary.structured.as_ref())
                .map(|st| (st.valid, st.checked))
                .reduce(|a, b| (a.0 + b.0, a.1 + b.1)),
            simulated: cells.iter().any(|c| c.simulated),
            result_files: cells.iter().map(|c| c.result_file.clone()).collect(),
        }
    }
}

/// The study, grouped and ordered as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Frameworks in order of first appearance.
    pub frameworks: Vec<String>,
    /// Workloads in order of first appearance.
    pub workloads: Vec<String>,
    /// One entry per framework × workload that has cells, framework-major.
    pub stats: Vec<Stats>,
    /// Workloads that every framework ran, less those that exercise a feature (or are a
    /// feature workload's baseline) when any plain one is left: cross-framework means use only
    /// these, so a framework is not favoured for having skipped the hard workload, and the
    /// seed's tables keep comparing what the seed compared.
    pub common_workloads: Vec<String>,
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

impl Analysis {
    pub fn of(study: &Study) -> Analysis {
        let mut frameworks = Vec::new();
        let mut workloads = Vec::new();
        for c in &study.cells {
            push_unique(&mut frameworks, &c.framework);
            push_unique(&mut workloads, &c.workload);
        }
        let mut stats = Vec::new();
        for f in &frameworks {
            for w in &workloads {
                let cells: Vec<&Cell> = study
                    .cells
                    .iter()
                    .filter(|c| &c.framework == f && &c.workload == w)
                    .collect();
                if !cells.is_empty() {
                    stats.push(Stats::of(&cells));
                }
            }
        }
        let common: Vec<String> = workloads
            .iter()
            .filter(|w| {
                frameworks
                    .iter()
                    .all(|f| stats.iter().any(|s| &s.framework == f && &s.workload == *w))
            })
            .cloned()
            .collect();
        // The seed's tables compare the plain serving path. A workload that exercises a
        // feature (a shared prefix, an output constraint), or is such a workload's baseline,
        // has its own section and rule; it joins the cross-framework means only when the
        // study has nothing else.
        let featured = |w: &String| {
            stats.iter().any(|s| {
                &s.workload == w && s.spec.exercises_a_feature()
                    || s.spec.baseline.as_ref() == Some(w)
            })
        };
        let plain: Vec<String> = common.iter().filter(|w| !featured(w)).cloned().collect();
        let common_workloads = if plain.is_empty() { common } else { plain };
        Analysis {
            frameworks,
            workloads,
            stats,
            common_workloads,
        }
    }

    pub fn get(&self, framework: &str, workload: &str) -> Option<&Stats> {
        self.stats
            .iter()
            .find(|s| s.framework == framework && s.workload == workload)
    }

    /// Every framework's figures on the workloads the cross-framework comparisons use
    /// ([`common_workloads`](Self::common_workloads)): the discussion's ranges and spreads are
    /// over these, while feature workloads have their own sections.
    pub fn compared(&self) -> impl Iterator<Item = &Stats> {
        self.stats.iter().filter(|s| {
            self.common_workloads.is_empty() || self.common_workloads.contains(&s.workload)
        })
    }

    /// The same framework's run of the workload `s` names as its baseline, when there is one.
    pub fn baseline_of(&self, s: &Stats) -> Option<&Stats> {
        self.get(&s.framework, s.spec.baseline.as_deref()?)
    }

    /// The workloads a per-framework figure is taken over: the common ones, or, when no
    /// workload was run by every framework, each framework's own.
    pub fn basis(&self, framework: &str) -> Vec<&Stats> {
        self.stats
            .iter()
            .filter(|s| s.framework == framework)
            .filter(|s| {
                self.common_workloads.is_empty() || self.common_workloads.contains(&s.workload)
            })
            .collect()
    }

    /// Mean of `f` over [`basis`](Self::basis); `None` when any value is missing.
    pub fn framework_mean(
        &self,
        framework: &str,
        f: impl Fn(&Stats) -> Option<f64>,
    ) -> Option<f64> {
        mean_all(self.basis(framework).into_iter().map(f))
    }

    /// Cost per 1M output tokens at the framework's mean hourly price and mean output
    /// throughput over [`basis`](Self::basis) (Table 5.3's figure); `None` without a price or
    /// without output.
    pub fn framework_cost_per_1m(&self, framework: &str) -> Option<f64> {
        let hourly = self.framework_mean(framework, |s| s.usd_per_hour)?;
        let tps = self.framework_mean(framework, |s| Some(s.output_tps))?;
        crate::cost::usd_per_million_tokens(hourly, tps)
    }

    /// Workloads ordered by concurrency (then requests), for scaling statements.
    pub fn workloads_by_load(&self) -> Vec<&Stats> {
        let mut v: Vec<&Stats> = self.stats.iter().collect();
        v.sort_by_key(|s| (s.spec.concurrency.unwrap_or(u64::MAX), s.spec.requests));
        v
    }

    /// Text naming the basis workloads, for rules ("Small, Medium and Large").
    pub fn basis_text(&self) -> String {
        if self.common_workloads.is_empty() {
            "each framework's own workloads (no workload was run by every framework)".into()
        } else {
            join_and(&self.common_workloads)
        }
    }
}

/// `["a"]` → `a`; `["a","b"]` → `a and b`; `["a","b","c"]` → `a, b and c`.
pub fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The outcome of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    Winner(String),
    /// Frameworks within [`TIE_FRACTION`] of the best, best first.
    Tie(Vec<String>),
    /// The data cannot decide; the reason says why.
    NotMeasured(String),
}

impl Choice {
    /// How the choice reads in a table cell.
    pub fn label(&self) -> String {
        match self {
            Choice::Winner(f) => framework_label(f),
            Choice::Tie(fs) => format!(
                "{} (tie, within {:.0} %)",
                fs.iter()
                    .map(|f| framework_label(f))
                    .collect::<Vec<_>>()
                    .join(" or "),
                TIE_FRACTION * 100.0
            ),
            Choice::NotMeasured(why) => format!("not measured: {why}"),
        }
    }
}

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// The best of `values` by `better`, with everything within [`TIE_FRACTION`] of it tied.
/// Returns `None` when there are no values.
pub fn pick(values: &[(String, f64)], better: Better) -> Option<Choice> {
    let mut sorted: Vec<&(String, f64)> = values.iter().filter(|(_, v)| v.is_finite()).collect();
    sorted.sort_by(|a, b| match better {
        Better::Higher => b.1.total_cmp(&a.1),
        Better::Lower => a.1.total_cmp(&b.1),
    });
    let best = sorted.first()?.1;
    let tied: Vec<String> = sorted
        .iter()
        .filter(|(_, v)| (v - best).abs() <= TIE_FRACTION * best.abs())
        .map(|(f, _)| f.clone())
        .collect();
    Some(if tied.len() > 1 {
        Choice::Tie(tied)
    } else {
        Choice::Winner(sorted[0].0.clone())
    })
}

/// One row of 6.4 / one line of 7.2.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub use_case: &'static str,
    pub choice: Choice,
    pub gpu: String,
    /// The rule, in words, as the report prints it.
    pub rule: String,
    /// The numbers the rule looked at.
    pub evidence: String,
}

/// The figures per framework that a rule compares, and how they print.
fn values(
    a: &Analysis,
    f: impl Fn(&Analysis, &str) -> Option<f64>,
) -> (Vec<(String, f64)>, Vec<String>) {
    let mut missing = Vec::new();
    let mut vals = Vec::new();
    for fw in &a.frameworks {
        match f(a, fw) {
            Some(v) => vals.push((fw.clone(), v)),
            None => missing.push(fw.clone()),
        }
    }
    (vals, missing)
}

fn evidence(vals: &[(String, f64)], fmt: impl Fn(f64) -> String) -> String {
    vals.iter()
        .map(|(f, v)| format!("{} {}", framework_label(f), fmt(v.to_owned())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The four use cases of the seed's table 6.4, each decided by a stated rule.
pub fn recommendations(a: &Analysis, gpu: &str) -> Vec<Recommendation> {
    let basis = a.basis_text();
    let tie = format!(
        "a difference under {:.0} % is reported as a tie",
        TIE_FRACTION * 100.0
    );
    let mut out = Vec::new();

    let (tps, _) = values(a, |a, f| a.framework_mean(f, |s| Some(s.output_tps)));
    out.push(Recommendation {
        use_case: "High throughput",
        choice: pick(&tps, Better::Higher)
            .unwrap_or_else(|| Choice::NotMeasured("no cell in this study".into())),
        gpu: gpu.to_string(),
        rule: format!(
            "the framework with the highest mean output throughput (tok/s) over {basis}; {tie}"
        ),
        evidence: evidence(&tps, |v| format!("{v:.1} tok/s")),
    });

    let (p95, _) = values(a, |a, f| {
        a.framework_mean(f, |s| (s.e2e.count > 0).then_some(s.e2e.p95))
    });
    out.push(Recommendation {
        use_case: "Low latency",
        choice: pick(&p95, Better::Lower).unwrap_or_else(|| {
            Choice::NotMeasured("no successful request, so no latency was measured".into())
        }),
        gpu: gpu.to_string(),
        rule: format!(
            "the framework with the lowest mean P95 end-to-end latency over {basis}; {tie}"
        ),
        evidence: evidence(&p95, |v| format!("{v:.3} s")),
    });

    let (cost, missing) = values(a, |a, f| a.framework_cost_per_1m(f));
    let cost_choice = if !missing.is_empty() || cost.is_empty() {
        Choice::NotMeasured(format!(
            "no cost figure for {} (no price given, or no output tokens)",
            join_and(
                &missing
                    .iter()
                    .map(|f| framework_label(f))
                    .collect::<Vec<_>>()
            )
            .if_empty("any framework")
        ))
    } else {
        pick(&cost, Better::Lower).unwrap_or_else(|| Choice::NotMeasured("no cost figure".into()))
    };
    out.push(Recommendation {
        use_case: "Cost sensitive",
        choice: cost_choice,
        gpu: gpu.to_string(),
        rule: format!(
            "the framework with the lowest cost per 1M output tokens at its mean output throughput over \
             {basis} (Table 5.3); {tie}"
        ),
        evidence: evidence(&cost, |v| format!("${v:.4}")),
    });

    let shared: Vec<(String, f64)> = a
        .frameworks
        .iter()
        .filter_map(|f| {
            let s: Vec<f64> = a
                .stats
                .iter()
                .filter(|s| &s.framework == f && s.spec.shared_prefix)
                .map(|s| s.output_tps)
                .collect();
            (!s.is_empty()).then(|| (f.clone(), mean(s)))
        })
        .collect();
    out.push(Recommendation {
        use_case: "Prefix sharing",
        choice: pick(&shared, Better::Higher).unwrap_or_else(|| {
            Choice::NotMeasured("no shared-prefix workload in this study".into())
        }),
        gpu: if shared.is_empty() { "—".into() } else { gpu.to_string() },
        rule: format!(
            "the framework with the highest mean output throughput over the shared-prefix workloads \
             (requests sharing long system prompts, where prefix caching pays); {tie}"
        ),
        evidence: shared
            .iter()
            .map(|(f, v)| {
                // The server's own hit rate beside the throughput: a framework that wins here
                // without hitting its cache won for another reason, and the reader should see it.
                let hits: Vec<f64> = a
                    .stats
                    .iter()
                    .filter(|s| &s.framework == f && s.spec.shared_prefix)
                    .filter_map(|s| s.prefix_cache_hit_rate)
                    .collect();
                let hits = if hits.is_empty() {
                    "hit rate not reported".to_string()
                } else {
                    format!("{:.1} % prefix-cache hits", mean(hits) * 100.0)
                };
                format!("{} {v:.1} tok/s ({hits})", framework_label(f))
            })
            .collect::<Vec<_>>()
            .join(", "),
    });

    // Per framework over its structured-output workloads: pooled validity and mean output
    // throughput.
    let structured: Vec<(String, Option<f64>, f64)> = a
        .frameworks
        .iter()
        .filter_map(|f| {
            let s: Vec<&Stats> = a
                .stats
                .iter()
                .filter(|s| &s.framework == f && s.spec.structured_output)
                .collect();
            if s.is_empty() {
                return None;
            }
            let (valid, checked) = s
                .iter()
                .filter_map(|s| s.structured)
                .fold((0, 0), |acc, (v, c)| (acc.0 + v, acc.1 + c));
            let rate = (checked > 0).then(|| valid as f64 / checked as f64 * 100.0);
            Some((f.clone(), rate, mean(s.iter().map(|s| s.output_tps))))
        })
        .collect();
    let passing: Vec<(String, f64)> = structured
        .iter()
        .filter(|(_, rate, _)| rate.is_some_and(|r| r >= MIN_CORRECT_RATE))
        .map(|(f, _, tps)| (f.clone(), *tps))
        .collect();
    let rated: Vec<(String, f64)> = structured
        .iter()
        .filter_map(|(f, rate, _)| rate.map(|r| (f.clone(), r)))
        .collect();
    let choice = if structured.is_empty() {
        Choice::NotMeasured("no structured-output workload in this study".into())
    } else if let Some(c) = pick(&passing, Better::Higher) {
        c
    } else if let Some(c) = pick(&rated, Better::Higher) {
        c
    } else {
        Choice::NotMeasured("no answer of the structured-output workloads was checked".into())
    };
    out.push(Recommendation {
        use_case: "Structured generation",
        choice,
        gpu: if structured.is_empty() { "—".into() } else { gpu.to_string() },
        rule: format!(
            "among the frameworks whose structured-output answers were schema-valid at least {MIN_CORRECT_RATE:.0} % \
             of the time, the one with the highest mean output throughput over the structured-output workloads; \
             when none reaches that, the one with the highest validity rate; {tie}"
        ),
        evidence: structured
            .iter()
            .map(|(f, rate, tps)| {
                format!(
                    "{} {tps:.1} tok/s at {} valid",
                    framework_label(f),
                    rate.map_or("unchecked".into(), |r| format!("{r:.1} %"))
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    });
    out
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() {
            other.to_string()
        } else {
            self
        }
    }
}

/// `(a − b) / b` as a percentage, for "x % higher" sentences.
pub fn percent_more(a: f64, b: f64) -> Option<f64> {
    (b.abs() > 0.0 && a.is_finite() && b.is_finite()).then(|| (a - b) / b * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[(&str, f64)]) -> Vec<(String, f64)> {
        items.iter().map(|(f, x)| (f.to_string(), *x)).collect()
    }

    #[test]
    fn a_clear_winner_is_named() {
        let c = pick(&v(&[("vllm", 100.0), ("sglang", 80.0)]), Better::Higher).unwrap();
        assert_eq!(c, Choice::Winner("vllm".into()));
        let c = pick(&v(&[("vllm", 1.0), ("sglang", 0.8)]), Better::Lower).unwrap();
        assert_eq!(c, Choice::Winner("sglang".into()));
    }

    #[test]
    fn within_five_percent_is_a_tie_best_first() {
        let c = pick(&v(&[("vllm", 96.0), ("sglang", 100.0)]), Better::Higher).unwrap();
        assert_eq!(c, Choice::Tie(vec!["sglang".into(), "vllm".into()]));
        assert_eq!(c.label(), "SGLang or vLLM (tie, within 5 %)");
        // Just outside the band.
        let c = pick(&v(&[("vllm", 94.9), ("sglang", 100.0)]), Better::Higher).unwrap();
        assert_eq!(c, Choice::Winner("sglang".into()));
    }

    #[test]
    fn nothing_to_pick_from_is_none() {
        assert_eq!(pick(&[], Better::Higher), None);
        assert_eq!(pick(&v(&[("x", f64::NAN)]), Better::Higher), None);
    }

    #[test]
    fn join_and_reads_like_prose() {
        let s = |x: &[&str]| join_and(&x.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&[]), "");
        assert_eq!(s(&["a"]), "a");
        assert_eq!(s(&["a", "b"]), "a and b");
        assert_eq!(s(&["a", "b", "c"]), "a, b and c");
    }
}
