//! Seeded, deterministic test data: the same rows on every run and every machine.

use std::fmt::Write as _;

/// Row `i` of a smooth two-feature signal, `(sin 0.37i, cos 0.73i)`: a dense cloud in
/// [-1, 1]² without repeated points, so that distances have no ties.
pub fn wave(i: usize) -> [f64; 2] {
    let t = i as f64;
    [(t * 0.37).sin(), (t * 0.73).cos()]
}

/// The first `n` rows of [`wave`], as the API's JSON `data` takes them.
pub fn wave_rows(n: usize) -> Vec<Vec<f64>> {
    (0..n).map(|i| wave(i).to_vec()).collect()
}

/// `n` rows of [`wave`] as CSV with the header `x,y`.
pub fn wave_csv(n: usize) -> String {
    csv(&["x", "y"], (0..n).map(wave))
}

/// CSV text: the header line, then one line per row, each number as Rust prints it (the
/// shortest text that reads back to the same `f64`).
pub fn csv<R: AsRef<[f64]>>(header: &[&str], rows: impl IntoIterator<Item = R>) -> String {
    let mut text = header.join(",");
    text.push('\n');
    for row in rows {
        for (j, v) in row.as_ref().iter().enumerate() {
            if j > 0 {
                text.push(',');
            }
            let _ = write!(text, "{v}");
        }
        text.push('\n');
    }
    text
}

/// A 64-bit linear congruential generator (Knuth's MMIX constants) drawing uniform
/// numbers in [0, 1): tiny, and the same everywhere.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    /// The generator started at `seed`.
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed)
    }

    /// The next number, uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` rows of `width` numbers uniform in [0, 1), drawn row by row from [`Lcg`] at `seed`.
pub fn uniform_rows(n: usize, width: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Lcg::new(seed);
    (0..n)
        .map(|_| (0..width).map(|_| rng.uniform()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_the_header_then_one_line_per_row() {
        assert_eq!(
            csv(&["a", "b"], [[1.0, 0.5], [-2.0, 0.0]]),
            "a,b\n1,0.5\n-2,0\n"
        );
        assert_eq!(wave_csv(2).lines().count(), 3);
    }

    #[test]
    fn uniform_rows_are_seeded_and_in_the_unit_interval() {
        let rows = uniform_rows(100, 3, 42);
        assert_eq!(rows, uniform_rows(100, 3, 42));
        assert_ne!(rows, uniform_rows(100, 3, 43));
        assert!(rows.iter().flatten().all(|v| (0.0..1.0).contains(v)));
    }
}
