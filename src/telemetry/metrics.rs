//! The metrics registry, the text encoder and [`declare_metrics!`](crate::declare_metrics),
//! the one way a component declares its metrics.
//!
//! A declaration names each metric once, with its help text and label names; the macro
//! gives the component's struct, its registration (an error fails start-up: a name taken
//! twice is a bug, not something to skip), the zero initialisation of the label sets known
//! at start, and a [`Declared`] list the README's metrics table is checked against.

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, TextEncoder,
};

pub use prometheus::Registry;

/// One metric as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    /// Full name, e.g. `ctrip_http_requests_total`.
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Label names, in order.
    pub labels: &'static [&'static str],
    /// Help text.
    pub help: &'static str,
}

/// A metric could not be built or registered (a name declared twice, an invalid name).
#[derive(Debug, thiserror::Error)]
#[error("metric {name} cannot be registered: {source}")]
pub struct MetricsError {
    name: &'static str,
    #[source]
    source: prometheus::Error,
}

/// A metric type [`declare_metrics!`](crate::declare_metrics) can build.
pub trait Metric: Clone + Sized {
    /// The Prometheus type.
    const KIND: &'static str;
    /// Builds the metric (not yet registered).
    fn build(
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Option<Vec<f64>>,
    ) -> prometheus::Result<Self>;
    /// The collector to register.
    fn collector(&self) -> Box<dyn Collector>;
    /// Creates the series of `values` at zero, so dashboards and alerts see it before the
    /// first event (nothing to do for an unlabelled metric).
    fn zero(&self, _values: &[&str]) {}
}

/// Implements [`Metric`] for a prometheus type: `$build` makes it from the name, help,
/// label names and buckets; `labelled` adds the zero initialisation of a label set.
macro_rules! metric {
    ($t:ty, $kind:literal, |$n:ident, $h:ident, $l:ident, $b:ident| $build:expr $(, $labelled:ident)?) => {
        impl Metric for $t {
            const KIND: &'static str = $kind;
            #[allow(unused_variables)]
            fn build(
                $n: &str,
                $h: &str,
                $l: &[&str],
                $b: Option<Vec<f64>>,
            ) -> prometheus::Result<Self> {
                $build
            }
            fn collector(&self) -> Box<dyn Collector> {
                Box::new(self.clone())
            }
            $(
                /// Touching the series creates it at zero.
                fn zero(&self, values: &[&str]) {
                    let $labelled = self.get_metric_with_label_values(values);
                }
            )?
        }
    };
}

metric!(IntCounter, "counter", |n, h, l, b| IntCounter::with_opts(
    Opts::new(n, h)
));
metric!(IntGauge, "gauge", |n, h, l, b| IntGauge::with_opts(
    Opts::new(n, h)
));
metric!(Gauge, "gauge", |n, h, l, b| Gauge::with_opts(Opts::new(
    n, h
)));
metric!(
    IntCounterVec,
    "counter",
    |n, h, l, b| IntCounterVec::new(Opts::new(n, h), l),
    _created
);
metric!(
    CounterVec,
    "counter",
    |n, h, l, b| CounterVec::new(Opts::new(n, h), l),
    _created
);
metric!(
    IntGaugeVec,
    "gauge",
    |n, h, l, b| IntGaugeVec::new(Opts::new(n, h), l),
    _created
);
metric!(
    GaugeVec,
    "gauge",
    |n, h, l, b| GaugeVec::new(Opts::new(n, h), l),
    _created
);
metric!(Histogram, "histogram", |n, h, l, b| Histogram::with_opts(
    HistogramOpts::new(n, h).buckets(b.unwrap_or_else(latency_buckets))
));
metric!(
    HistogramVec,
    "histogram",
    |n, h, l, b| HistogramVec::new(
        HistogramOpts::new(n, h).buckets(b.unwrap_or_else(latency_buckets)),
        l
    ),
    _created
);

/// Builds and registers one metric; used by [`declare_metrics!`](crate::declare_metrics).
pub fn register<M: Metric>(
    registry: &Registry,
    name: &'static str,
    help: &'static str,
    labels: &[&str],
    buckets: Option<Vec<f64>>,
) -> Result<M, MetricsError> {
    let err = |source| MetricsError { name, source };
    let m = M::build(name, help, labels, buckets).map_err(err)?;
    registry.register(m.collector()).map_err(err)?;
    Ok(m)
}

/// Creates every series of `values` at zero; used by
/// [`declare_metrics!`](crate::declare_metrics).
pub fn zero_all<M: Metric>(m: &M, values: impl IntoIterator<Item = Vec<String>>) {
    for v in values {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        m.zero(&refs);
    }
}

/// Every combination of one value from each set, in order: the label sets to create at
/// zero for a metric with one label per set.
pub fn cross(sets: &[&[&str]]) -> Vec<Vec<String>> {
    sets.iter().fold(vec![Vec::new()], |acc, set| {
        acc.iter()
            .flat_map(|prefix| {
                set.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push((*v).to_string());
                    p
                })
            })
            .collect()
    })
}

/// Latency buckets from 0.5 ms to 10 s (the default for every histogram).
pub fn latency_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

/// A registry with the process collector (CPU, memory, file descriptors) already in it.
pub fn new_registry() -> Result<Registry, MetricsError> {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .map_err(|source| MetricsError {
            name: "process_*",
            source,
        })?;
    Ok(registry)
}

/// Renders every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Declares a component's metrics once. Each line names the field, its type, the metric
/// name (without the `ctrip_` prefix), its label names and help text, and optionally its
/// histogram buckets and the label sets to create at zero (an expression yielding
/// `Vec<String>` label values, which may use the struct's start-up arguments):
///
/// ```ignore
/// ctrip::declare_metrics! {
///     /// Chain progress.
///     pub struct ChainMetrics(chains: &[&str]) {
///         head_block: IntGaugeVec = "chain_head_block" ["chain"], "Best head block seen.",
///             zero = cross(&[chains]);
///     }
/// }
/// ```
///
/// It gives `ChainMetrics::register(&registry, chains) -> Result<ChainMetrics, MetricsError>`
/// and `ChainMetrics::DECLARED`.
#[macro_export]
macro_rules! declare_metrics {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident ( $($arg:ident : $argty:ty),* $(,)? ) {
            $(
                $field:ident : $kind:ty = $metric:literal [$($label:literal),*], $help:literal
                    $(, buckets = $buckets:expr)?
                    $(, zero = $zero:expr)?
                ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone)]
        $vis struct $name {
            $(
                #[doc = concat!("`ctrip_", $metric, "`: ", $help)]
                pub $field: $kind,
            )*
        }

        impl $name {
            /// Every metric of this struct, as declared.
            pub const DECLARED: &'static [$crate::telemetry::metrics::Declared] = &[$(
                $crate::telemetry::metrics::Declared {
                    name: concat!("ctrip_", $metric),
                    kind: <$kind as $crate::telemetry::metrics::Metric>::KIND,
                    labels: &[$($label),*],
                    help: $help,
                },
            )*];

            /// Registers every metric in `registry` and creates the label sets known at
            /// start at zero.
            #[allow(unused_variables, clippy::vec_init_then_push)]
            pub fn register(
                registry: &$crate::telemetry::metrics::Registry,
                $($arg: $argty),*
            ) -> Result<Self, $crate::telemetry::metrics::MetricsError> {
                let m = Self {
                    $(
                        $field: $crate::telemetry::metrics::register::<$kind>(
                            registry,
                            concat!("ctrip_", $metric),
                            $help,
                            &[$($label),*],
                            {
                                let b: Option<Vec<f64>> = None;
                                $( let b = b.or(Some($buckets)); )?
                                b
                            },
                        )?,
                    )*
                };
                $( $( $crate::telemetry::metrics::zero_all(&m.$field, $zero); )? )*
                Ok(m)
            }
        }
    };
}

declare_metrics! {
    /// What every process reports about itself.
    pub struct BuildMetrics() {
        build_info: IntGaugeVec = "build_info" ["version"], "Build information; always 1.";
    }
}

impl BuildMetrics {
    /// Registers the build information, set to 1 for this binary's version.
    pub fn new(registry: &Registry) -> Result<Self, MetricsError> {
        let m = Self::register(registry)?;
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    declare_metrics! {
        struct Sample(chains: &[&str]) {
            hits: IntCounterVec = "test_hits_total" ["chain", "kind"], "Hits.",
                zero = cross(&[chains, &["a", "b"]]);
            depth: IntGauge = "test_depth" [], "Depth.";
            wait: HistogramVec = "test_wait_seconds" ["chain"], "Wait.", buckets = vec![1.0, 2.0];
        }
    }

    #[test]
    fn one_declaration_gives_registration_zeroes_and_the_declared_list() {
        let r = Registry::new();
        let m = Sample::register(&r, &["eth"]).expect("registers");
        m.depth.set(3);
        m.wait.with_label_values(&["eth"]).observe(1.5);
        let text = render(&r);
        assert!(
            text.contains("ctrip_test_hits_total{chain=\"eth\",kind=\"a\"} 0"),
            "{text}"
        );
        assert!(text.contains("ctrip_test_hits_total{chain=\"eth\",kind=\"b\"} 0"));
        assert!(text.contains("ctrip_test_depth 3"));
        assert!(text.contains("ctrip_test_wait_seconds_bucket{chain=\"eth\",le=\"2\"} 1"));
        assert_eq!(Sample::DECLARED.len(), 3);
        assert_eq!(Sample::DECLARED[0].name, "ctrip_test_hits_total");
        assert_eq!(Sample::DECLARED[0].kind, "counter");
        assert_eq!(Sample::DECLARED[0].labels, &["chain", "kind"]);
        assert_eq!(Sample::DECLARED[2].kind, "histogram");
    }

    #[test]
    fn a_name_registered_twice_fails_instead_of_being_skipped() {
        let r = Registry::new();
        Sample::register(&r, &[]).expect("first registration");
        let e = Sample::register(&r, &[])
            .err()
            .expect("second registration fails");
        assert!(e.to_string().contains("ctrip_test_hits_total"), "{e}");
    }

    #[test]
    fn cross_gives_every_combination_in_order() {
        assert_eq!(
            cross(&[&["x", "y"], &["1", "2"]]),
            vec![
                vec!["x".to_string(), "1".into()],
                vec!["x".into(), "2".into()],
                vec!["y".into(), "1".into()],
                vec!["y".into(), "2".into()],
            ]
        );
    }
}
