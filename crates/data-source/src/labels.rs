//! The label column, kept as one byte a row.
//!
//! Labels only ever serve to tell outliers (1) from inliers (0), so a reader keeps a class
//! per row instead of the `f64` it parsed: on a large file that is an eighth of the memory,
//! which matters while the whole feature matrix is being built. A label that is a number
//! other than 0 or 1 is remembered as such, so callers can warn about it.

/// Class code of a row labelled 0.
const INLIER: u8 = 0;
/// Class code of a row labelled 1.
const OUTLIER: u8 = 1;
/// Class code of a row labelled with any other number.
const OTHER: u8 = 2;

/// One label per row: outlier (the value 1), inlier (0) or another number.
///
/// ```
/// use data_source::Labels;
///
/// let labels = Labels::from_values(&[0.0, 1.0, 2.0, 1.0]);
/// assert_eq!(labels.len(), 4);
/// assert_eq!(labels.outlier_flags(), vec![false, true, false, true]);
/// assert_eq!((labels.outliers(), labels.other_values()), (2, 1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels {
    codes: Vec<u8>,
}

impl Labels {
    /// Labels from their values (1 = outlier, 0 = inlier, anything else "other").
    pub fn from_values(values: &[f64]) -> Self {
        let mut labels = Self::default();
        labels.codes.reserve_exact(values.len());
        for &v in values {
            labels.push(v);
        }
        labels
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Whether row `row` is labelled an outlier (its label is 1). Panics out of range.
    pub fn is_outlier(&self, row: usize) -> bool {
        self.codes[row] == OUTLIER
    }

    /// Whether each row is labelled an outlier, in row order.
    pub fn outlier_flags(&self) -> Vec<bool> {
        self.codes.iter().map(|&c| c == OUTLIER).collect()
    }

    /// How many rows are labelled outliers.
    pub fn outliers(&self) -> usize {
        self.codes.iter().filter(|&&c| c == OUTLIER).count()
    }

    /// How many rows hold a label other than 0 and 1 (they count as inliers).
    pub fn other_values(&self) -> usize {
        self.codes.iter().filter(|&&c| c == OTHER).count()
    }

    pub(crate) fn push(&mut self, value: f64) {
        self.codes.push(if value == 1.0 {
            OUTLIER
        } else if value == 0.0 {
            INLIER
        } else {
            OTHER
        });
    }

    pub(crate) fn extend_from(&mut self, other: &Labels) {
        self.codes.extend_from_slice(&other.codes);
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.codes.truncate(len);
    }

    pub(crate) fn clear(&mut self) {
        self.codes.clear();
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.codes.reserve(additional);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_values() {
        let l = Labels::from_values(&[1.0, 0.0, -0.0, 2.0, 0.5, 1.0]);
        assert_eq!(
            l.outlier_flags(),
            vec![true, false, false, false, false, true]
        );
        assert_eq!((l.outliers(), l.other_values(), l.len()), (2, 2, 6));
        assert!(l.is_outlier(0) && !l.is_outlier(3));
    }

    #[test]
    fn truncate_and_extend_keep_row_order() {
        let mut a = Labels::from_values(&[1.0, 0.0, 3.0]);
        a.truncate(2);
        a.extend_from(&Labels::from_values(&[1.0]));
        assert_eq!(a, Labels::from_values(&[1.0, 0.0, 1.0]));
        a.clear();
        assert!(a.is_empty());
    }
}
