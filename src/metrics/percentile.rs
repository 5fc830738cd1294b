//! The one percentile rule every servebench number uses.
//!
//! Linear interpolation between closest ranks — `numpy.percentile`'s default (`method="linear"`),
//! which is what `vllm bench serve`, SGLang's bench_serving and most published tables use, so a
//! P99 here means the same as a P99 there. For `n` sorted values and `p` in [0, 100] the rank is
//! `h = (n − 1)·p/100` and the value `x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`.

/// The `p`-th percentile (0–100) of `n` ascending values read through `value_at(rank)`.
///
/// This is the single implementation; [`percentile`] reads a sorted slice through it and the
/// per-token ITL reads its weighted (value, count) runs through it, so both follow one rule.
/// `None` when there are no values or `p` is not a number in [0, 100].
pub fn percentile_of_ranks(n: usize, p: f64, value_at: impl Fn(usize) -> f64) -> Option<f64> {
    if n == 0 || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let h = (n - 1) as f64 * p / 100.0;
    let lo = (h.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let (a, b) = (value_at(lo), value_at(hi));
    let t = h - lo as f64;
    // Clamped so rounding can never step outside the two neighbours: this keeps the result
    // monotone in `p` and inside [min, max] (both are property-tested).
    let v = a + (b - a) * t;
    Some(v.clamp(a.min(b), a.max(b)))
}

/// The `p`-th percentile (0–100) of an ascending slice; `None` when it is empty or `p` is out of
/// range. The caller sorts (with `f64::total_cmp`): sorting once serves every percentile asked.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    percentile_of_ranks(sorted.len(), p, |i| sorted[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A deliberately plain transcription of numpy's linear method, to check against.
    fn naive(values: &[f64], p: f64) -> f64 {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let h = (v.len() - 1) as f64 * p / 100.0;
        let lo = h.floor() as usize;
        if lo + 1 >= v.len() {
            return v[v.len() - 1];
        }
        v[lo] + (h - lo as f64) * (v[lo + 1] - v[lo])
    }

    fn sorted(mut v: Vec<f64>) -> Vec<f64> {
        v.sort_by(f64::total_cmp);
        v
    }

    #[test]
    fn matches_numpy_on_known_values() {
        // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 90, 99, 100])
        // → [1.0, 1.75, 2.5, 3.7, 3.97, 4.0]
        let x = [1.0, 2.0, 3.0, 4.0];
        let got: Vec<f64> = [0.0, 25.0, 50.0, 90.0, 99.0, 100.0]
            .iter()
            .map(|&p| percentile(&x, p).unwrap())
            .collect();
        let want = [1.0, 1.75, 2.5, 3.7, 3.97, 4.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn empty_and_out_of_range_give_none() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0], -0.1), None);
        assert_eq!(percentile(&[1.0], 100.1), None);
        assert_eq!(percentile(&[1.0], f64::NAN), None);
        assert_eq!(percentile(&[7.0], 37.0), Some(7.0));
    }

    fn values() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(-1e9f64..1e9, 1..200)
    }

    proptest! {
        #[test]
        fn monotone_in_p(v in values(), p in 0.0f64..=100.0, q in 0.0f64..=100.0) {
            let s = sorted(v);
            let (lo, hi) = if p <= q { (p, q) } else { (q, p) };
            prop_assert!(percentile(&s, lo).unwrap() <= percentile(&s, hi).unwrap());
        }

        #[test]
        fn within_min_max_and_ends_are_min_max(v in values(), p in 0.0f64..=100.0) {
            let s = sorted(v);
            let x = percentile(&s, p).unwrap();
            prop_assert!(s[0] <= x && x <= s[s.len() - 1]);
            prop_assert_eq!(percentile(&s, 0.0).unwrap(), s[0]);
            prop_assert_eq!(percentile(&s, 100.0).unwrap(), s[s.len() - 1]);
        }

        #[test]
        fn matches_naive_reference(v in values(), p in 0.0f64..=100.0) {
            let got = percentile(&sorted(v.clone()), p).unwrap();
            let want = naive(&v, p);
            prop_assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "{} vs {}", got, want);
        }

        #[test]
        fn invariant_to_input_order(v in values(), p in 0.0f64..=100.0, seed in any::<u64>()) {
            let mut shuffled = v.clone();
            // A seeded Fisher–Yates, so the property needs no extra RNG crate.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(percentile(&sorted(v), p), percentile(&sorted(shuffled), p));
        }

        #[test]
        fn constant_input_gives_the_constant(c in -1e9f64..1e9, n in 1usize..100, p in 0.0f64..=100.0) {
            prop_assert_eq!(percentile(&vec![c; n], p), Some(c));
        }
    }
}
