//! The contamination threshold: NumPy's percentile of the scores, by selection.

/// scikit-learn's `offset_ = np.percentile(score_samples, 100 * contamination)` turned
/// into a threshold on the anomaly score (`score_samples` = −score), reproducing NumPy's
/// "linear" method operation by operation so thresholds match exactly. Like NumPy, it
/// selects the two order statistics the percentile lies between (O(n)) rather than
/// sorting every score.
pub fn quantile_threshold(scores: &[f64], contamination: f64) -> f64 {
    let n = scores.len();
    if n == 0 {
        return f64::NAN;
    }
    // numpy: q = percentile / 100; "linear": virtual_index = (n - 1) * q
    let q = (100.0 * contamination) / 100.0;
    let virtual_index = (n as f64 - 1.0) * q;
    let previous = virtual_index.floor();
    let gamma = virtual_index - previous;
    let lo = (previous.max(0.0) as usize).min(n - 1);
    let (a, b) = if n >= RADIX_MIN_LEN && u32::try_from(n).is_ok() {
        negated_order_statistics_by_radix(scores, lo)
    } else {
        negated_order_statistics(scores, lo)
    };
    let diff = b - a;
    let offset = if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    };
    -offset
}

/// From this many scores the order statistics are found by a radix pass first.
const RADIX_MIN_LEN: usize = 1 << 16;
/// The leading bits of an order key that pick its bucket: sign, exponent and four
/// mantissa bits, so scores of one magnitude still spread over 16 buckets per octave.
const RADIX_BITS: u32 = 16;

/// The `k`-th smallest (from 0) of the negated scores by `total_cmp`, and the next one up
/// (the k-th itself when it is the largest).
fn negated_order_statistics(scores: &[f64], k: usize) -> (f64, f64) {
    let mut neg: Vec<f64> = scores.iter().map(|s| -s).collect();
    let (_, &mut a, above) = neg.select_nth_unstable_by(k, f64::total_cmp);
    // The next order statistic: the smallest of those selected above the k-th.
    let b = above.iter().copied().min_by(f64::total_cmp).unwrap_or(a);
    (a, b)
}

/// [`negated_order_statistics`] without copying every score: the counts of the order
/// keys' leading bits find the bucket the k-th lies in, then only that bucket's keys are
/// selected from, and the next one up is the smallest of the rest of the bucket or of the
/// next non-empty bucket. At most `u32::MAX` scores.
fn negated_order_statistics_by_radix(scores: &[f64], k: usize) -> (f64, f64) {
    let shift = 64 - RADIX_BITS;
    let bucket_of = |s: f64| (order_key(-s) >> shift) as usize;
    let mut counts = vec![0u32; 1 << RADIX_BITS];
    for &s in scores {
        counts[bucket_of(s)] += 1;
    }
    let (mut below, mut bucket) = (0usize, 0usize);
    for (i, &c) in counts.iter().enumerate() {
        if below + c as usize > k {
            bucket = i;
            break;
        }
        below += c as usize;
    }
    let next = counts[bucket + 1..]
        .iter()
        .position(|&c| c > 0)
        .map(|p| bucket + 1 + p);
    let mut inside = Vec::with_capacity(counts[bucket] as usize);
    let mut next_smallest = u64::MAX;
    for &s in scores {
        let key = order_key(-s);
        let at = (key >> shift) as usize;
        if at == bucket {
            inside.push(key);
        } else if Some(at) == next {
            next_smallest = next_smallest.min(key);
        }
    }
    let (_, &mut a, rest) = inside.select_nth_unstable(k - below);
    let b = match rest.iter().copied().min() {
        Some(b) => b,
        None if next.is_some() => next_smallest,
        None => a,
    };
    (from_order_key(a), from_order_key(b))
}

/// An unsigned key ordered as `f64::total_cmp` orders the values.
fn order_key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn from_order_key(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_order_statistics_equal_a_full_selection() {
        let n = RADIX_MIN_LEN + 1234;
        let spread: Vec<f64> = (0..n)
            .map(|i| ((i * 7919 % 100_003) as f64 / 977.0).sin() * 3.0)
            .collect();
        // Few distinct values with both zeros; one octave; values far apart.
        let ties: Vec<f64> = (0..n)
            .map(|i| [0.0, -0.0, 1.0, 0.25, -7.5][i % 5])
            .collect();
        let octave: Vec<f64> = (0..n).map(|i| 1.0 + (i % 1000) as f64 / 1000.0).collect();
        let mut far: Vec<f64> = vec![1.0; n];
        far[17] = -1e300;
        far[99] = 1e300;
        far[n - 1] = f64::MIN_POSITIVE;
        for scores in [spread, ties, octave, far] {
            for k in [0, 1, 17, n / 10, n / 2, n - 2, n - 1] {
                let (a, b) = negated_order_statistics(&scores, k);
                let (ra, rb) = negated_order_statistics_by_radix(&scores, k);
                assert_eq!(
                    (a.to_bits(), b.to_bits()),
                    (ra.to_bits(), rb.to_bits()),
                    "k {k}"
                );
            }
        }
        for v in [0.0, -0.0, 1.5, -1.5, f64::MAX, -f64::MAX, f64::MIN_POSITIVE] {
            assert_eq!(from_order_key(order_key(v)).to_bits(), v.to_bits());
        }
    }
}
