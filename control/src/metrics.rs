//! The gates' counters as Prometheus series, through `prometheus-client`'s collector, read
//! at scrape time.

use crate::gate::{CloseReason, Gate, RefuseReason};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Exports `noc_control_*` for the given listeners:
/// - `noc_control_connections{listener}`: open now;
/// - `noc_control_accepted_total{listener}`;
/// - `noc_control_refused_total{listener,reason}`: not admitted (limits, shutdown);
/// - `noc_control_closed_total{listener,reason}`: admitted and ended, by reason.
#[derive(Debug)]
pub struct GateCollector(pub Vec<Arc<Gate>>);

impl Collector for GateCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut open = e.encode_descriptor(
            "noc_control_connections",
            "Control connections open now",
            None,
            MetricType::Gauge,
        )?;
        for g in &self.0 {
            let v = g.stats().open.load(Ordering::Relaxed);
            ConstGauge::new(v).encode(open.encode_family(&[("listener", g.name())])?)?;
        }
        let mut accepted = e.encode_descriptor(
            "noc_control_accepted",
            "Control connections admitted",
            None,
            MetricType::Counter,
        )?;
        for g in &self.0 {
            let v = g.stats().accepted.load(Ordering::Relaxed);
            ConstCounter::new(v).encode(accepted.encode_family(&[("listener", g.name())])?)?;
        }
        let mut refused = e.encode_descriptor(
            "noc_control_refused",
            "Control connections refused at accept, by reason",
            None,
            MetricType::Counter,
        )?;
        for g in &self.0 {
            for r in RefuseReason::ALL {
                let v = g.stats().refused(r);
                ConstCounter::new(v).encode(
                    refused.encode_family(&[("listener", g.name()), ("reason", r.as_str())])?,
                )?;
            }
        }
        let mut closed = e.encode_descriptor(
            "noc_control_closed",
            "Control connections ended, by reason",
            None,
            MetricType::Counter,
        )?;
        for g in &self.0 {
            for r in CloseReason::ALL {
                let v = g.stats().closed(r);
                ConstCounter::new(v).encode(
                    closed.encode_family(&[("listener", g.name()), ("reason", r.as_str())])?,
                )?;
            }
        }
        Ok(())
    }
}
