//! A Prometheus histogram that records with two atomic additions and nothing else.
//!
//! prometheus-client's own `Histogram` takes a mutex on every observation; this one sits on
//! the send path, where every event would take it. Values are recorded as integers in a fixed
//! base unit (nanoseconds for durations, plain counts otherwise) into fixed buckets, and only
//! turned into the exposed unit when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// What one unit of a recorded value is worth in the exposed unit.
#[derive(Debug, Clone, Copy)]
pub enum Scale {
    /// Durations: recorded in nanoseconds, exposed in seconds.
    NanosToSeconds,
    /// Counts: exposed as recorded.
    One,
}

impl Scale {
    fn factor(self) -> f64 {
        match self {
            Scale::NanosToSeconds => 1e-9,
            Scale::One => 1.0,
        }
    }
}

/// Upper bounds of the buckets in the exposed unit, ascending; `+Inf` is implied.
pub type Bounds = &'static [f64];

#[derive(Debug, Clone)]
pub struct Histogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    scale: Scale,
    bounds: Bounds,
    /// `bounds` in the recorded unit, for the lookup when recording.
    raw_bounds: Box<[u64]>,
    /// One per bound, then the `+Inf` bucket; not cumulative.
    counts: Box<[AtomicU64]>,
    /// Sum of the recorded values, in the recorded unit.
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: Bounds, scale: Scale) -> Self {
        let raw_bounds = bounds.iter().map(|b| (b / scale.factor()).round() as u64).collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(Inner { scale, bounds, raw_bounds, counts, sum: AtomicU64::new(0) }))
    }

    /// Records a value in the recorded unit (nanoseconds or a count).
    pub fn record(&self, value: u64) {
        let inner = &*self.0;
        let bucket = inner.raw_bounds.partition_point(|&bound| bound < value);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        inner.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn record_duration(&self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn record_since(&self, start: Instant) {
        self.record_duration(start.elapsed());
    }

    /// `(count, sum in the exposed unit, non-cumulative bucket counts)`.
    fn snapshot(&self) -> (u64, f64, Vec<(f64, u64)>) {
        let inner = &*self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .chain(std::iter::once(&f64::INFINITY))
            .zip(inner.counts.iter())
            .map(|(&bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total, so `_count` always equals the `+Inf` bucket.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = inner.sum.load(Ordering::Relaxed) as f64 * inner.scale.factor();
        (count, sum, buckets)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (count, sum, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds_in_the_exposed_unit() {
        let h = Histogram::new(&[0.001, 0.01], Scale::NanosToSeconds);
        h.record_duration(Duration::from_micros(500));
        h.record_duration(Duration::from_millis(1)); // on the bound: counts in it
        h.record_duration(Duration::from_millis(5));
        h.record_duration(Duration::from_secs(1));
        let (count, sum, buckets) = h.snapshot();
        assert_eq!(count, 4);
        assert!((sum - 1.0065).abs() < 1e-9, "{sum}");
        assert_eq!(buckets, vec![(0.001, 2), (0.01, 1), (f64::INFINITY, 1)]);
    }

    #[test]
    fn counts() {
        let h = Histogram::new(&[0.0, 1.0, 10.0], Scale::One);
        for v in [0, 1, 2, 10, 11] {
            h.record(v);
        }
        let (count, sum, buckets) = h.snapshot();
        assert_eq!((count, sum), (5, 24.0));
        assert_eq!(buckets, vec![(0.0, 1), (1.0, 1), (10.0, 2), (f64::INFINITY, 1)]);
    }
}
