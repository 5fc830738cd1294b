//! A synthetic ShareGPT-like length distribution (no dataset can be downloaded here).
//!
//! ShareGPT conversations, tokenized with the Llama-3 tokenizer and filtered the way
//! `sglang.bench_serving` and vLLM's `benchmark_serving.py` filter them (prompt and output at least
//! 4 tokens, prompt at most 1024, prompt + output at most 2048), average about 202 prompt and 179
//! output tokens, with many short turns and a long tail. We draw both lengths from log-normal
//! distributions (σ = 1.0 for prompts, 0.8 for outputs — assumptions, chosen for a median well
//! below the mean as in the real data), apply the same filters by clipping, and rescale until the
//! sample means match the requested means. Deterministic for a seed.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};

/// Mean prompt tokens of a ShareGPT sample with the Llama-3 tokenizer.
pub const SHAREGPT_MEAN_PROMPT: f64 = 202.0;
/// Mean output tokens of a ShareGPT sample with the Llama-3 tokenizer.
pub const SHAREGPT_MEAN_OUTPUT: f64 = 179.0;

const SIGMA_PROMPT: f64 = 1.0;
const SIGMA_OUTPUT: f64 = 0.8;
const MIN_LEN: f64 = 4.0;
const MAX_PROMPT: f64 = 1024.0;
const MAX_TOTAL: f64 = 2048.0;

/// `n` (prompt, output) token lengths with the given means.
pub fn sharegpt_like(n: usize, seed: u64, mean_prompt: f64, mean_output: f64) -> Vec<(u32, u32)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let draw = |sigma: f64, rng: &mut ChaCha8Rng| -> Vec<f64> {
        // mu = ln(1) − σ²/2 gives a unit-mean log-normal; the means are set by scaling below.
        match LogNormal::new(-sigma * sigma / 2.0, sigma) {
            Ok(d) => (0..n).map(|_| d.sample(rng)).collect(),
            Err(_) => vec![1.0; n],
        }
    };
    let raw_p = draw(SIGMA_PROMPT, &mut rng);
    let raw_o = draw(SIGMA_OUTPUT, &mut rng);
    if n == 0 {
        return Vec::new();
    }
    let (mut sp, mut so) = (mean_prompt.max(MIN_LEN), mean_output.max(MIN_LEN));
    let mut out = Vec::new();
    // Clipping moves the mean; a few rescaling rounds bring it back to the target.
    for _ in 0..20 {
        out = raw_p
            .iter()
            .zip(&raw_o)
            .map(|(&p, &o)| {
                let p = (p * sp).round().clamp(MIN_LEN, MAX_PROMPT);
                let o = (o * so)
                    .round()
                    .clamp(MIN_LEN, (MAX_TOTAL - p).max(MIN_LEN));
                (p as u32, o as u32)
            })
            .collect();
        let (mp, mo) = means(&out);
        if (mp / mean_prompt - 1.0).abs() < 0.002 && (mo / mean_output - 1.0).abs() < 0.002 {
            break;
        }
        sp *= mean_prompt / mp;
        so *= mean_output / mo;
    }
    out
}

/// Mean prompt and output lengths of a sample.
pub fn means(lengths: &[(u32, u32)]) -> (f64, f64) {
    if lengths.is_empty() {
        return (0.0, 0.0);
    }
    let n = lengths.len() as f64;
    let p: f64 = lengths.iter().map(|l| f64::from(l.0)).sum();
    let o: f64 = lengths.iter().map(|l| f64::from(l.1)).sum();
    (p / n, o / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_match_and_filters_hold() {
        let s = sharegpt_like(5000, 1, SHAREGPT_MEAN_PROMPT, SHAREGPT_MEAN_OUTPUT);
        let (p, o) = means(&s);
        assert!((p - 202.0).abs() < 1.0, "{p}");
        assert!((o - 179.0).abs() < 1.0, "{o}");
        for &(p, o) in &s {
            assert!((4..=1024).contains(&p));
            assert!(o >= 4 && p + o <= 2048);
        }
        let mut sorted: Vec<u32> = s.iter().map(|x| x.0).collect();
        sorted.sort_unstable();
        assert!(
            f64::from(sorted[2500]) < p,
            "median below mean: a long tail"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_sample() {
        assert_eq!(
            sharegpt_like(100, 7, 202.0, 179.0),
            sharegpt_like(100, 7, 202.0, 179.0)
        );
        assert_ne!(
            sharegpt_like(100, 7, 202.0, 179.0),
            sharegpt_like(100, 8, 202.0, 179.0)
        );
    }
}
