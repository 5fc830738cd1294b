//! Bounds on every number a user gives (flags, suite files, datasets, traces), and the
//! machine's resources a plan is checked against (file descriptors, memory, cores).
//!
//! Each bound is here with why it is where it is; `docs/limits.md` is the same table for
//! users. A value outside its bound is a [`ConfigError`] naming the field, the value, the
//! allowed range and what to do — never a panic in `Duration::from_secs_f64`, a semaphore or
//! an allocator, and never an offset that wraps around to "now".

use super::{bad, ConfigError};
use std::time::Duration;

/// Longest `--request-timeout`: one week. Longer than any generation; beyond it the value is a
/// typo, and `Duration` arithmetic on it stays far from overflow.
pub const MAX_REQUEST_TIMEOUT_S: f64 = 7.0 * 86_400.0;
/// Shortest timeout or duration in seconds: one millisecond.
pub const MIN_SECONDS: f64 = 1e-3;
/// Longest `--ready-check-timeout-sec`: one day (a model download and load takes minutes).
pub const MAX_READY_CHECK_S: u64 = 86_400;
/// Longest `--telemetry-interval-ms`: one hour.
pub const MAX_TELEMETRY_INTERVAL_MS: u64 = 3_600_000;
/// Most `--repeats` (and a suite's `repeats`): each repeat is a whole run again; 1000 is
/// already days of runs.
pub const MAX_REPEATS: u64 = 1000;
/// Longest `--duration`: 30 days. Offsets are `u64` ns (584 years), so this keeps every
/// schedule offset and deadline exact; a longer study is a suite of shorter runs.
pub const MAX_DURATION_S: f64 = 30.0 * 86_400.0;
/// Longest simulated delay of the embedded server (`--ttft-ms`, `--itl-ms`, `--fault-stall-ms`)
/// and longest think time between turns: one hour.
pub const MAX_DELAY_MS: f64 = 3_600_000.0;
/// Lowest `--request-rate` / ramp rate: one request per 10 days. A lower rate would schedule
/// the second request past any `--duration` allowed here (1e-300 used to wrap to t = 0).
pub const MIN_RATE: f64 = 1.0 / (10.0 * 86_400.0);
/// Highest finite `--request-rate`: 10 million per second; for "as fast as possible" say `inf`.
pub const MAX_RATE: f64 = 1e7;
/// `--burstiness` (gamma shape): outside [0.001, 1000] the gaps are either all ~0 with rare
/// enormous ones, or constant; neither is what the flag is for.
pub const MIN_BURSTINESS: f64 = 1e-3;
pub const MAX_BURSTINESS: f64 = 1e3;
/// Most requests in one run: every completed request keeps a record until the summary is
/// written (~[`RECORD_BYTES`] each), so 100 million is ~50 GiB. A longer study is a suite.
pub const MAX_NUM_PROMPTS: u64 = 100_000_000;
/// Longest prompt or output length in tokens: 16 Mi, above every model's context window today.
/// A prompt is built in memory as text and body (~[`BYTES_PER_TOKEN`] per token), so 2^32
/// tokens would be a 64 GiB allocation.
pub const MAX_TOKENS: u32 = 16 * 1024 * 1024;
/// `--trace-time-scale`: a trace replayed more than a million times faster or slower is a
/// typo; its offsets must stay within [`MAX_DURATION_S`] as well.
pub const MIN_TIME_SCALE: f64 = 1e-6;
pub const MAX_TIME_SCALE: f64 = 1e6;
/// Threads per core for `--client-threads` / `--server-threads`: more only adds scheduling;
/// 20 000 threads aborted and 100 000 hung the process.
pub const THREADS_PER_CORE: usize = 8;
/// File descriptors the process needs besides its connections (journal, logs, runtime, stdio).
pub const FD_HEADROOM: u64 = 100;
/// Memory one request record takes until the summary (record, channel slot, metric arrays).
/// Measured: 40 000 vs 2 000 tiny requests against the embedded server, peak RSS 52.7 vs
/// 33.5 MB, ~520 B per request.
pub const RECORD_BYTES: u64 = 512;
/// Peak memory per token of the prompt being built (the word list, the text, the JSON body,
/// and the embedded server's copy). Measured: one 2 000 000-token prompt, +102 MB peak RSS.
pub const BYTES_PER_TOKEN: u64 = 64;
/// Memory per token of a prepared body waiting for its send. Measured: 2 000 bodies of 2 000
/// tokens held ahead, +41 MB peak RSS (~10 B per token).
pub const BYTES_PER_HELD_TOKEN: u64 = 12;
/// Bodies the producer prepares ahead of the load (`app::run::spawn_producer`'s AHEAD).
pub const PREPARED_AHEAD: u64 = 8192;

/// A value outside its allowed range (`allowed` says the range and the fix).
pub fn out_of_range(field: &str, v: impl ToString, allowed: impl Into<String>) -> ConfigError {
    bad(field, v, allowed)
}

/// A float as a person would write it: `1e300`, not three hundred digits.
pub fn show(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && a.is_finite() && !(1e-4..1e9).contains(&a) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

fn range(lo: f64, hi: f64, unit: &str) -> String {
    format!("allowed: {lo}..={hi} {unit}")
}

/// A number of seconds in `(0, max]`, as a `Duration` (never `from_secs_f64` unchecked).
pub fn secs(field: &str, v: f64, max: f64, why: &str) -> Result<Duration, ConfigError> {
    if !(v.is_finite() && v > 0.0) {
        return Err(bad(
            field,
            show(v),
            format!(
                "must be a positive number of seconds ({}; {why})",
                range(0.0, max, "s")
            ),
        ));
    }
    if v > max {
        return Err(bad(
            field,
            show(v),
            format!("is above the limit of {max} s ({why}); lower it"),
        ));
    }
    // Below a millisecond nothing can be measured (and 1e-300 would round to a zero timeout).
    if v < MIN_SECONDS {
        return Err(bad(
            field,
            show(v),
            format!("is below the smallest useful value of {MIN_SECONDS} s; raise it"),
        ));
    }
    Duration::try_from_secs_f64(v).map_err(|e| bad(field, show(v), e.to_string()))
}

/// A number of milliseconds in `[0, MAX_DELAY_MS]`, as a `Duration`.
pub fn delay_ms(field: &str, v: f64) -> Result<Duration, ConfigError> {
    if !(v.is_finite() && (0.0..=MAX_DELAY_MS).contains(&v)) {
        return Err(bad(
            field,
            show(v),
            format!(
                "must be a number of milliseconds from 0 to {MAX_DELAY_MS} (one hour; a longer delay is a typo)"
            ),
        ));
    }
    Duration::try_from_secs_f64(v / 1000.0).map_err(|e| bad(field, show(v), e.to_string()))
}

/// A finite request rate in `[MIN_RATE, MAX_RATE]`.
pub fn rate(field: &str, v: f64) -> Result<f64, ConfigError> {
    if (MIN_RATE..=MAX_RATE).contains(&v) {
        Ok(v)
    } else {
        Err(bad(
            field,
            show(v),
            format!(
                "allowed: {MIN_RATE:.3e}..={MAX_RATE:e} requests per second (one per 10 days up to 10 million per second)"
            ),
        ))
    }
}

/// A run's request count within [`MAX_NUM_PROMPTS`]: given, or the workload's own size
/// (groups × prompts per group, conversations × turns), which multiplies bounded numbers into
/// an unbounded one.
pub fn requests(n: u64) -> Result<u64, ConfigError> {
    if n > MAX_NUM_PROMPTS {
        return Err(bad(
            "--num-prompts",
            n,
            format!(
                "is above the limit of {MAX_NUM_PROMPTS} requests (given, or the workload's size: groups × prompts per group, conversations × turns): every completed request keeps a ~{RECORD_BYTES} B record in memory until the summary; split the run (a suite repeats it)"
            ),
        ));
    }
    Ok(n)
}

/// A token length in `[1, MAX_TOKENS]`.
pub fn tokens(field: &str, v: u32) -> Result<u32, ConfigError> {
    if v == 0 {
        return Err(bad(field, v, "must be at least 1 token"));
    }
    if v > MAX_TOKENS {
        return Err(bad(
            field,
            v,
            format!(
                "is above the limit of {MAX_TOKENS} tokens (a prompt is built in memory at ~{BYTES_PER_TOKEN} bytes per token: this one would need {}); lower it",
                human_bytes(u64::from(v) * BYTES_PER_TOKEN)
            ),
        ));
    }
    Ok(v)
}

/// The cores this process may use (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Most worker threads: [`THREADS_PER_CORE`] × cores, at least 16.
pub fn max_threads() -> usize {
    (THREADS_PER_CORE * cores()).max(16)
}

/// A thread count in `[1, max_threads()]`.
pub fn threads(field: &str, n: usize) -> Result<usize, ConfigError> {
    let max = max_threads();
    if n == 0 {
        return Err(bad(field, n, "must be at least 1"));
    }
    if n > max {
        return Err(bad(
            field,
            n,
            format!(
                "is above the limit of {max} ({THREADS_PER_CORE} per core × {} cores, at least 16); more threads only add scheduling, lower it",
                cores()
            ),
        ));
    }
    Ok(n)
}

/// `1.5 GiB`-style figures for messages.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// The soft limit on open files (`ulimit -n`); `None` where it cannot be read or is unlimited.
pub fn fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own and reads nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0
            || rl.rlim_cur == libc::RLIM_INFINITY
        {
            return None;
        }
        #[allow(
            clippy::unnecessary_cast,
            reason = "rlim_t is not u64 on every platform"
        )]
        Some(rl.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raise the soft open-file limit to the hard one, as servers do at start: a run at high
/// concurrency needs one descriptor per connection (two with the embedded server), and the
/// usual soft default of 1024 (256 on macOS) is far below the hard limit. Best effort.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in fd_limit; setrlimit only reads the struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
                return;
            }
            let want = rl.rlim_max;
            // macOS refuses RLIM_INFINITY (and anything above OPEN_MAX) for the soft limit.
            #[cfg(target_os = "macos")]
            let want = want.min(10_240);
            if want > rl.rlim_cur {
                rl.rlim_cur = want;
                libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
            }
        }
    }
}

/// Memory available to a new run, in bytes: `SERVEBENCH_MEM_AVAILABLE_BYTES` when set (the
/// seam tests use), else /proc/meminfo's MemAvailable; `None` where neither is readable.
pub fn mem_available() -> Option<u64> {
    if let Ok(v) = std::env::var("SERVEBENCH_MEM_AVAILABLE_BYTES") {
        return v.trim().parse().ok();
    }
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// What a run will hold in memory at its peak: the prompts prepared ahead and the records kept
/// until the summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryPlan {
    pub requests: u64,
    /// The longest prompt, in tokens.
    pub max_prompt_tokens: u64,
    /// Prompts held at once: a run prepares at most [`PREPARED_AHEAD`] ahead of the load;
    /// `predict` builds every request before it simulates.
    pub held_prompts: u64,
}

impl MemoryPlan {
    pub fn bytes(&self) -> u64 {
        self.held_prompts
            .saturating_mul(self.max_prompt_tokens)
            .saturating_mul(BYTES_PER_HELD_TOKEN)
            .saturating_add(self.max_prompt_tokens.saturating_mul(BYTES_PER_TOKEN))
            .saturating_add(self.requests.saturating_mul(RECORD_BYTES))
    }

    /// Refuse a plan beyond `available` bytes, with the figures.
    pub fn check(&self, available: Option<u64>) -> Result<(), ConfigError> {
        let Some(available) = available else {
            return Ok(());
        };
        let need = self.bytes();
        if need > available {
            return Err(bad(
                "memory plan",
                format!(
                    "{} requests × {} prompt tokens",
                    self.requests, self.max_prompt_tokens
                ),
                format!(
                    "needs about {} ({} prompts held at ~{BYTES_PER_HELD_TOKEN} B per token, {RECORD_BYTES} B per request record) but this machine has {} available; lower --num-prompts or the lengths, or split the run",
                    human_bytes(need),
                    self.held_prompts,
                    human_bytes(available)
                ),
            ));
        }
        Ok(())
    }
}

/// Refuse a load whose connections cannot fit the open-file limit.
/// `connections`: the peak number of requests in flight; `embedded`: the server is in this
/// process, so every connection costs two descriptors.
pub fn check_fds(
    field: &str,
    connections: u64,
    embedded: bool,
    limit: Option<u64>,
) -> Result<(), ConfigError> {
    let Some(limit) = limit else { return Ok(()) };
    let per = if embedded { 2 } else { 1 };
    let need = connections.saturating_mul(per).saturating_add(FD_HEADROOM);
    if need > limit {
        return Err(bad(
            field,
            connections,
            format!(
                "needs ~{need} file descriptors ({connections} connections{} + {FD_HEADROOM}); this process may open {limit} (ulimit -n); raise it or lower the concurrency",
                if embedded { " × 2 with the embedded server in this process" } else { "" }
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_and_non_finite_durations_are_refused_not_panicked() {
        for v in [1e20, 1e300, f64::INFINITY, f64::NAN, -1.0, 0.0] {
            let e = secs("--request-timeout", v, MAX_REQUEST_TIMEOUT_S, "x").unwrap_err();
            assert_eq!(e.field, "--request-timeout");
        }
        assert_eq!(
            secs("--duration", 1.5, MAX_DURATION_S, "x").unwrap(),
            Duration::from_millis(1500)
        );
        for v in [1e300, MAX_DELAY_MS + 1.0, f64::NAN, -0.5] {
            assert!(delay_ms("--ttft-ms", v).is_err(), "{v}");
        }
        assert_eq!(delay_ms("--itl-ms", 0.0).unwrap(), Duration::ZERO);
    }

    #[test]
    fn rates_lengths_and_threads_have_ranges_with_the_figure() {
        assert!(rate("--request-rate", 1e-300).is_err());
        assert!(rate("--request-rate", 1e300).is_err());
        assert_eq!(rate("--request-rate", 5.0).unwrap(), 5.0);
        let e = tokens("--random-input-len", u32::MAX).unwrap_err();
        assert!(e.problem.contains("256.0 GiB"), "{}", e.problem);
        assert!(tokens("--random-input-len", 0).is_err());
        assert!(threads("--client-threads", 20_000).is_err());
        assert!(threads("--client-threads", 0).is_err());
        assert_eq!(threads("--client-threads", 1).unwrap(), 1);
    }

    #[test]
    fn memory_plan_is_refused_beyond_what_is_available_with_the_figures() {
        let plan = MemoryPlan {
            requests: 1_000_000,
            max_prompt_tokens: 1000,
            held_prompts: PREPARED_AHEAD,
        };
        // 8192 × 1000 × 12 B + 1000 × 64 B + 1e6 × 512 B ≈ 0.57 GiB.
        assert!(plan.check(Some(64 << 30)).is_ok());
        assert!(plan.check(None).is_ok());
        let e = plan.check(Some(100 << 20)).unwrap_err();
        assert!(e.problem.contains("100.0 MiB available"), "{}", e.problem);
        assert_eq!(
            parse_meminfo("MemTotal: 10 kB\nMemAvailable:    2048 kB\n"),
            Some(2 << 20)
        );
    }

    #[test]
    fn connections_beyond_the_fd_limit_are_refused_with_the_figures() {
        let e = check_fds("--max-concurrency", 5000, false, Some(256)).unwrap_err();
        assert!(
            e.problem.contains("~5100 file descriptors"),
            "{}",
            e.problem
        );
        assert!(e.problem.contains("may open 256"), "{}", e.problem);
        assert!(check_fds("--max-concurrency", 100, false, Some(256)).is_ok());
        assert!(check_fds("--max-concurrency", 100, true, Some(256)).is_err());
        assert!(check_fds("--max-concurrency", 1 << 40, true, None).is_ok());
    }
}
