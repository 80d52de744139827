//! Figures of alternating runs: the median and the range, as every
//! comparison of the benchmarks reports them.

use std::fmt;

/// Median and min–max of a set of runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `runs` (at least one). An even count takes the upper median.
    pub(crate) fn of(mut runs: Vec<f64>) -> Spread {
        runs.sort_by(f64::total_cmp);
        let at = |i: usize| runs.get(i).copied().unwrap_or(f64::NAN);
        Spread { median: at(runs.len() / 2), min: at(0), max: at(runs.len().saturating_sub(1)) }
    }
}

impl fmt::Display for Spread {
    /// `median (min–max)`, with as many decimals as the caller's precision (default 3 significant places).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = f.precision().unwrap_or(if self.median.abs() >= 100.0 { 0 } else { 3 });
        write!(f, "{:.p$} ({:.p$}-{:.p$})", self.median, self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = Spread::of(vec![3.0, 1.0, 2.0, 10.0, 5.0]);
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
        assert_eq!(format!("{s}"), "3.000 (1.000-10.000)");
        assert_eq!(format!("{}", Spread::of(vec![1500.0, 2500.0])), "2500 (1500-2500)");
        assert!(Spread::of(Vec::new()).median.is_nan());
    }
}
