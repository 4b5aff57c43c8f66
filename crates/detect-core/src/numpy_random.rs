//! NumPy's legacy `RandomState` (what scikit-learn's `check_random_state(int)` builds):
//! the MT19937 generator seeded as `init_genrand(seed)`, and the few draws the ported
//! detectors make, computed as NumPy computes them, so a `random_state` picks the same
//! rows here as in scikit-learn and PyOD.

use rand_mt::Mt;

/// `np.random.RandomState(seed)`.
#[derive(Debug, Clone)]
pub(crate) struct RandomState(Mt);

impl RandomState {
    /// NumPy accepts seeds 0 to 2³² − 1 (scikit-learn's `random_state` range).
    fn new(seed: u32) -> Self {
        Self(Mt::new(seed))
    }

    /// [`RandomState::new`] for seeds NumPy accepts; a larger one (which NumPy refuses)
    /// seeds the generator as `RandomState([low 32 bits, high 32 bits])` does.
    pub(crate) fn from_seed(seed: u64) -> Self {
        match u32::try_from(seed) {
            Ok(s) => Self::new(s),
            Err(_) => Self(Mt::new_with_key([seed as u32, (seed >> 32) as u32])),
        }
    }

    /// `random_sample()` (and `uniform()` on [0, 1)): 53 random bits from two outputs.
    pub(crate) fn random_sample(&mut self) -> f64 {
        let a = self.0.next_u32() >> 5;
        let b = self.0.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
    }

    /// `choice(n, p=np.ones(n) / n)`, scikit-learn's draw of a first k-means++ centre
    /// with unit sample weights: the cumulative probabilities searched (right side) for
    /// one sample.
    pub(crate) fn choice_uniform(&mut self, n: usize) -> usize {
        uniform_choice(n, self.random_sample())
    }

    /// `random_interval(max)`: uniform on 0..=max, by rejection under the smallest mask
    /// covering `max`.
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> shift;
        }
        loop {
            let value = if max <= u64::from(u32::MAX) {
                u64::from(self.0.next_u32()) & mask
            } else {
                self.0.next_u64() & mask
            };
            if value <= max {
                return value;
            }
        }
    }

    /// `permutation(n)`: 0..n shuffled as the legacy `shuffle` does (from the last
    /// position down, each swapped with one drawn at or below it).
    pub(crate) fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u64) as usize;
            order.swap(i, j);
        }
        order
    }
}

/// A stretch of NumPy's running sum of n equal terms: the sums after terms `start` to
/// `start + count − 1` are `first + m · step` for m = 0 to count − 1.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    first: f64,
    step: f64,
    count: usize,
}

impl Run {
    fn value(&self, m: usize) -> f64 {
        self.first + m as f64 * self.step
    }
}

/// NumPy's `np.cumsum(np.full(n, p))` (one term after another) as runs of equal steps, in
/// O(log n) runs. Between two powers of two every sum is a multiple of the same unit, and
/// adding p rounds to the nearest one: the step is the same for every term, except that
/// when p lies exactly half-way between two multiples, the first step from a sum with an
/// odd multiple can differ from the next (ties round to even; from an even multiple the
/// step is constant). So each stretch takes single terms until two steps in a row agree,
/// then runs on until a few terms short of the next power of two.
fn running_sum(p: f64, n: usize) -> Vec<Run> {
    let mut runs = Vec::new();
    let (mut acc, mut i) = (0.0f64, 0);
    while i < n {
        acc += p;
        runs.push(Run {
            start: i,
            first: acc,
            step: 0.0,
            count: 1,
        });
        i += 1;
        let (a1, a2) = (acc + p, acc + p + p);
        let step = a1 - acc;
        // The power of two above acc: sums below it share acc's unit.
        let top = 2f64.powi(acc.log2().floor() as i32 + 1);
        if i == n || a2 >= top || a2 - a1 != step {
            continue;
        }
        let count = if step == 0.0 {
            n - i
        } else {
            (((top - acc - p) / step).floor() as usize)
                .saturating_sub(1)
                .min(n - i)
        };
        if count > 0 {
            runs.push(Run {
                start: i,
                first: acc + step,
                step,
                count,
            });
            acc += count as f64 * step;
            i += count;
        }
    }
    runs
}

/// The first i whose cumulative probability (the running sum of n terms 1/n, divided by
/// its last value) exceeds `u`, else n − 1: NumPy's `choice(n, p=np.ones(n) / n)`.
fn uniform_choice(n: usize, u: f64) -> usize {
    let runs = running_sum(1.0 / n as f64, n);
    let last = runs.last().map_or(1.0, |r| r.value(r.count - 1));
    let above = |run: &Run, m: usize| run.value(m) / last > u;
    for run in &runs {
        if above(run, run.count - 1) {
            let (mut lo, mut hi) = (0, run.count - 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if above(run, mid) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            return run.start + lo;
        }
    }
    n - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NumPy's computation term by term.
    fn uniform_choice_by_terms(n: usize, u: f64) -> usize {
        let p = 1.0 / n as f64;
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for _ in 0..n {
            acc += p;
            cdf.push(acc);
        }
        let last = acc;
        for c in &mut cdf {
            *c /= last;
        }
        cdf.partition_point(|&c| c <= u).min(n - 1)
    }

    #[test]
    fn the_running_sum_in_runs_is_numpys_term_by_term() {
        let mut r = RandomState::new(11);
        let sizes = (1..2000).chain([4096, 6435, 11_183, 49_097, 100_000, 567_498, 1 << 20]);
        for n in sizes {
            let p = 1.0 / n as f64;
            let mut acc = 0.0;
            let mut sums = Vec::with_capacity(n);
            for _ in 0..n {
                acc += p;
                sums.push(acc);
            }
            let runs = running_sum(p, n);
            let mut at = 0;
            for run in &runs {
                assert_eq!(run.start, at, "n {n}");
                for m in 0..run.count {
                    assert_eq!(
                        run.value(m).to_bits(),
                        sums[at].to_bits(),
                        "n {n}, term {at}"
                    );
                    at += 1;
                }
            }
            assert_eq!(at, n);
            assert!(runs.len() <= 4 * 64, "n {n}: {} runs", runs.len());
            for u in [
                0.0,
                0.5,
                1.0 - f64::EPSILON,
                r.random_sample(),
                r.random_sample(),
            ] {
                assert_eq!(
                    uniform_choice(n, u),
                    uniform_choice_by_terms(n, u),
                    "n {n}, u {u}"
                );
            }
        }
    }

    // Values printed by NumPy 2.4 (`np.random.RandomState(seed)`).
    #[test]
    fn draws_equal_numpys() {
        let mut r = RandomState::new(0);
        let want = [
            0.548_813_503_927_324_8,
            0.715_189_366_372_419_5,
            0.602_763_376_071_643_9,
        ];
        for w in want {
            assert_eq!(r.random_sample(), w);
        }
        let mut r = RandomState::new(12345);
        for w in [
            0.929_616_092_817_147_9,
            0.316_375_554_581_785_9,
            0.183_918_811_677_094_45,
            0.204_560_278_553_039_7,
        ] {
            assert_eq!(r.random_sample(), w);
        }
        assert_eq!(
            RandomState::new(7).permutation(10),
            [8, 5, 0, 2, 1, 9, 7, 3, 6, 4]
        );
        assert_eq!(
            RandomState::new(u32::MAX).permutation(70_000)[..5],
            [14972, 66828, 49490, 22806, 60806]
        );
        // A seed past 32 bits: as `RandomState([5, 1])` (init_by_array).
        let mut r = RandomState::from_seed((1 << 32) | 5);
        assert_eq!(r.random_sample(), 0.157_272_387_187_897_82);
        assert_eq!(r.permutation(10), [3, 0, 7, 2, 4, 6, 8, 1, 9, 5]);
        for (seed, n, want) in [(0, 10, 5), (1, 1000, 417), (2, 567_498, 247_426), (3, 7, 3)] {
            assert_eq!(RandomState::new(seed).choice_uniform(n), want, "{seed} {n}");
        }
    }
}
