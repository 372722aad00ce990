//! Latency histograms (HDR, microsecond resolution, 3 significant digits) and their summary.
//!
//! Values above the histogram's range (one hour) are clamped to it rather than dropped, so a
//! pathological outlier still shows as the maximum.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest value recorded, in microseconds (one hour).
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    h: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    #[allow(clippy::expect_used)] // Constant bounds, valid by construction (low >= 1, high >= 2 * low).
    pub fn new() -> Latency {
        Latency { h: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds") }
    }

    pub fn record(&mut self, d: Duration) {
        self.record_micros(u64::try_from(d.as_micros()).unwrap_or(MAX_MICROS));
    }

    pub fn record_micros(&mut self, us: u64) {
        let _ = self.h.record(us.clamp(1, MAX_MICROS));
    }

    pub fn merge(&mut self, other: &Latency) {
        let _ = self.h.add(&other.h);
    }

    /// p50, p99, p99.9 and max in milliseconds; `None` when nothing was recorded.
    pub fn summary(&self) -> Option<Summary> {
        if self.h.is_empty() {
            return None;
        }
        let ms = |us: u64| (us as f64) / 1000.0;
        Some(Summary {
            count: self.h.len(),
            p50_ms: ms(self.h.value_at_quantile(0.50)),
            p99_ms: ms(self.h.value_at_quantile(0.99)),
            p999_ms: ms(self.h.value_at_quantile(0.999)),
            max_ms: ms(self.h.max()),
        })
    }
}

/// The figures a report shows of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// The median of some figures (the middle one, or the mean of the two middle ones).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut l = Latency::new();
        for us in 1..=10_000u64 {
            l.record_micros(us);
        }
        let s = l.summary().unwrap();
        assert_eq!(s.count, 10_000);
        // 3 significant digits: within 0.1% of the exact value.
        assert!((s.p50_ms - 5.0).abs() < 0.01, "{s:?}");
        assert!((s.p99_ms - 9.9).abs() < 0.01, "{s:?}");
        assert!((s.p999_ms - 9.99).abs() < 0.011, "{s:?}");
        assert!((s.max_ms - 10.0).abs() < 0.011, "{s:?}");
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_max() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(7));
        b.record(Duration::from_millis(3));
        a.merge(&b);
        let s = a.summary().unwrap();
        assert_eq!(s.count, 3);
        assert!((s.max_ms - 7.0).abs() < 0.01);
        assert!((s.p50_ms - 3.0).abs() < 0.01);
    }

    #[test]
    fn empty_has_no_summary_and_outliers_are_clamped() {
        let mut l = Latency::new();
        assert!(l.summary().is_none());
        l.record(Duration::from_secs(10 * 3600));
        l.record_micros(0);
        let s = l.summary().unwrap();
        assert_eq!(s.count, 2);
        assert!(s.max_ms >= 3_599_000.0 && s.max_ms <= 3_601_000.0, "{s:?}");
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }
}
