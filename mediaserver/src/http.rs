//! The media server's HTTP face: `/metrics` for Prometheus, and `/healthz` and `/readyz`
//! for load balancers and orchestrators (the WebSocket control route `/ws` is the client
//! host's, merged in by `lib.rs`). The workers publish atomics once
//! per tick; this collector reads them at scrape time through `prometheus-client`'s
//! encoder, so nothing on the packet path knows about metrics.

use crate::conference::Conferences;
use crate::worker::WorkerCounters;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use control::metrics::GateCollector;
use control::Gate;
use mesh::DropReason;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::json;
use std::fmt::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What `/readyz` reports: whether the registry link is up (the dispatcher answered our
/// `register`). Set by the dispatchee.
#[derive(Debug, Default)]
pub(crate) struct Health {
    registered: AtomicBool,
}

impl Health {
    pub(crate) fn set_registered(&self, yes: bool) {
        self.registered.store(yes, Ordering::Relaxed);
    }
}

/// The routes of this module: `/metrics`, with the gates' `noc_control_*` series,
/// `/healthz` and `/readyz`.
pub(crate) fn router(
    service: Arc<Conferences>,
    gates: Vec<Arc<Gate>>,
    health: Arc<Health>,
) -> Router {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Workers(service.clone())));
    registry.register_collector(Box::new(GateCollector(gates)));
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state((service, health));
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(registry))
        .merge(probes)
}

/// The process answers.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Serving: registered with a dispatcher and not draining (a draining server takes no
/// new conferences, so a load balancer should stop sending it clients).
async fn readyz(
    State((service, health)): State<(Arc<Conferences>, Arc<Health>)>,
) -> impl IntoResponse {
    let registered = health.registered.load(Ordering::Relaxed);
    let draining = service.is_draining();
    let (code, status) = match (registered, draining) {
        (true, false) => (StatusCode::OK, "ready"),
        (false, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not registered with a dispatcher",
        ),
        (true, true) => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
    };
    (
        code,
        Json(json!({ "status": status, "registered": registered, "draining": draining })),
    )
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut out = String::new();
    // Writing into a String cannot fail.
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("encoding into a String");
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}

struct Workers(Arc<Conferences>);

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Workers")
    }
}

type Field = fn(&WorkerCounters) -> &AtomicU64;

impl Workers {
    fn sum(&self, f: Field) -> u64 {
        self.0
            .workers()
            .iter()
            .map(|w| f(&w.counters).load(Ordering::Relaxed))
            .sum()
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Workers {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), Error> {
        let stats = &self.0.stats;
        for (name, help, v) in [
            (
                "noc_media_worker_queue_full",
                "Commands a full media worker queue refused",
                &stats.worker_queue_full,
            ),
            (
                "noc_media_joins_refused_busy",
                "Joins refused because their worker's command queue was full",
                &stats.joins_refused_busy,
            ),
            (
                "noc_media_joins_refused_ticket_used",
                "Joins refused because their ticket was already used or its holder kicked",
                &stats.joins_refused_ticket_used,
            ),
            (
                "noc_media_commands_retried",
                "Teardown commands sent again after a full worker queue",
                &stats.commands_retried,
            ),
            (
                "noc_media_dispatcher_queue_overflows",
                "Times the queue to the dispatcher overflowed and the link resynchronised",
                &stats.notify_overflows,
            ),
            (
                "noc_media_moderations",
                "Moderator and operator actions applied (mute, kick, lock, end)",
                &stats.moderations,
            ),
            (
                "noc_media_chat_lines",
                "Chat lines delivered",
                &stats.chat_lines,
            ),
            (
                "noc_media_chat_refused",
                "Chat lines refused over a member's rate",
                &stats.chat_refused,
            ),
        ] {
            counter(&mut e, name, help, v.load(Ordering::Relaxed))?;
        }
        let rec = &self.0.recording_stats;
        for (name, help, v) in [
            (
                "noc_media_recordings_started",
                "Recordings started",
                &rec.started,
            ),
            (
                "noc_media_recording_inputs_dropped",
                "Mixes and frames a recording that fell behind lost",
                &rec.dropped,
            ),
            (
                "noc_media_recording_errors",
                "Recording files that could not be written or finished",
                &rec.errors,
            ),
        ] {
            counter(&mut e, name, help, v.load(Ordering::Relaxed))?;
        }
        if let Some(c) = self.0.compositor_stats() {
            for (name, help, v) in [
                (
                    "noc_media_composite_frames",
                    "Frames the compositor service made (composites, recordings' composites, transcoded streams)",
                    &c.frames,
                ),
                (
                    "noc_media_composite_dropped",
                    "Units or frames a full compositor queue refused",
                    &c.dropped,
                ),
                (
                    "noc_media_composite_decode_errors",
                    "Senders' video units the compositor could not decode",
                    &c.decode_errors,
                ),
            ] {
                counter(&mut e, name, help, v.load(Ordering::Relaxed))?;
            }
            let (sum, count, buckets) = c.latency.snapshot();
            let mut m = e.encode_descriptor(
                "noc_media_composite_latency_seconds",
                "From a sender's picture arriving to the first composite (or transcoded frame) that shows it being sent",
                None,
                MetricType::Histogram,
            )?;
            m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        let totals: [(&str, &str, Field); 10] = [
            (
                "noc_media_ticks",
                "Mesh ticks run (the clock that applies commands and will run the mixer)",
                |c| &c.ticks,
            ),
            ("noc_media_packets_in", "Datagrams received", |c| {
                &c.datagrams_in
            }),
            ("noc_media_bytes_in", "Bytes received", |c| &c.bytes_in),
            ("noc_media_packets_out", "Packets queued for sending", |c| {
                &c.packets_out
            }),
            ("noc_media_bytes_out", "Bytes queued for sending", |c| {
                &c.bytes_out
            }),
            ("noc_media_send_errors", "Packets the kernel refused", |c| {
                &c.send_errors
            }),
            (
                "noc_media_stream_lost_packets",
                "Packets lost on received streams (RFC 3550)",
                |c| &c.lost,
            ),
            (
                "noc_media_gso_packets",
                "Packets sent as GSO segments",
                |c| &c.gso_packets,
            ),
            (
                "noc_media_rx_truncated",
                "Datagrams larger than a receive buffer",
                |c| &c.rx_truncated,
            ),
            (
                "noc_media_events_dropped",
                "Mesh events (speaking, quality) dropped on a full control-plane queue",
                |c| &c.events_dropped,
            ),
        ];
        for (name, help, f) in totals {
            counter(&mut e, name, help, self.sum(f))?;
        }
        let mut drops = e.encode_descriptor(
            "noc_media_drops",
            "Packets dropped, by reason",
            None,
            MetricType::Counter,
        )?;
        for reason in DropReason::ALL {
            let n: u64 = self
                .0
                .workers()
                .iter()
                .map(|w| w.counters.drops(reason))
                .sum();
            ConstCounter::new(n).encode(drops.encode_family(&[("reason", reason.as_str())])?)?;
        }
        let mut rtc = e.encode_descriptor(
            "noc_media_webrtc_drops",
            "WebRTC datagrams refused (STUN, DTLS, SRTP) and packets not sent, by reason",
            None,
            MetricType::Counter,
        )?;
        for (i, reason) in crate::rtc::REASONS.iter().enumerate() {
            let n: u64 = self
                .0
                .workers()
                .iter()
                .map(|w| w.counters.rtc.drops[i].load(Ordering::Relaxed))
                .sum();
            ConstCounter::new(n).encode(rtc.encode_family(&[("reason", *reason)])?)?;
        }
        counter(
            &mut e,
            "noc_media_webrtc_uplink_feedback",
            "Transport-cc feedback sent to browsers about what they send",
            self.sum(|c| &c.rtc.uplink_feedback),
        )?;
        counter(
            &mut e,
            "noc_media_webrtc_downlink_feedback",
            "Transport-cc feedback read from browsers about what the server sends them (the downlink estimate)",
            self.sum(|c| &c.rtc.downlink_feedback),
        )?;
        gauge(
            &mut e,
            "noc_media_ice_tcp_connections",
            "Open ICE-over-TCP connections (browsers that reached the server over TCP)",
            self.sum(|c| &c.ice_tcp_conns) as i64,
        )?;
        counter(
            &mut e,
            "noc_media_ice_tcp_dropped",
            "Frames not sent on an ICE-over-TCP connection: its send queue was full",
            self.sum(|c| &c.ice_tcp_dropped),
        )?;
        gauge(
            &mut e,
            "noc_media_webrtc_sessions",
            "Browsers' WebRTC sessions on this server",
            self.sum(|c| &c.rtc.sessions) as i64,
        )?;
        let mut busy = e.encode_descriptor(
            "noc_media_worker_busy_seconds",
            "Time each worker spent working rather than waiting; its rate is the worker's load",
            None,
            MetricType::Counter,
        )?;
        for w in self.0.workers() {
            let secs = w.counters.busy_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let index = w.index.to_string();
            ConstCounter::new(secs).encode(busy.encode_family(&[("worker", index.as_str())])?)?;
        }
        // Per worker: a conference spread over the workers shows on each.
        let mut parts = e.encode_descriptor(
            "noc_media_worker_participants",
            "Participants in each worker's mesh (members, and those mirrored from other workers or servers)",
            None,
            MetricType::Gauge,
        )?;
        for w in self.0.workers() {
            let n = w.counters.participants.load(Ordering::Relaxed) as i64;
            let index = w.index.to_string();
            ConstGauge::new(n).encode(parts.encode_family(&[("worker", index.as_str())])?)?;
        }
        let mut out = e.encode_descriptor(
            "noc_media_worker_packets_out",
            "Packets each worker sent",
            None,
            MetricType::Counter,
        )?;
        for w in self.0.workers() {
            let n = w.counters.packets_out.load(Ordering::Relaxed);
            let index = w.index.to_string();
            ConstCounter::new(n).encode(out.encode_family(&[("worker", index.as_str())])?)?;
        }
        let tick_secs = self.sum(|c| &c.tick_ns) as f64 / 1e9;
        let c = ConstCounter::new(tick_secs);
        c.encode(e.encode_descriptor(
            "noc_media_tick_seconds",
            "Time spent in mesh ticks; divided by noc_media_ticks_total, the mean tick time",
            None,
            c.metric_type(),
        )?)?;
        let tick_max = self
            .0
            .workers()
            .iter()
            .map(|w| w.counters.tick_max_ns.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0) as f64
            / 1e9;
        let g = ConstGauge::new(tick_max);
        g.encode(e.encode_descriptor(
            "noc_media_tick_max_seconds",
            "Longest mesh tick so far",
            None,
            g.metric_type(),
        )?)?;
        let jitter = self
            .0
            .workers()
            .iter()
            .map(|w| w.counters.max_jitter_ms())
            .fold(0.0, f64::max);
        let g = ConstGauge::new(jitter);
        g.encode(e.encode_descriptor(
            "noc_media_jitter_max_ms",
            "Largest interarrival jitter of the received streams",
            None,
            g.metric_type(),
        )?)?;
        gauge(
            &mut e,
            "noc_media_conferences",
            "Conferences on this server",
            self.sum(|c| &c.conferences) as i64,
        )?;
        gauge(
            &mut e,
            "noc_media_participants",
            "Participants on this server",
            self.sum(|c| &c.participants) as i64,
        )?;
        gauge(
            &mut e,
            "noc_media_streams",
            "Received streams",
            self.sum(|c| &c.streams) as i64,
        )?;
        gauge(
            &mut e,
            "noc_media_workers",
            "Media worker threads",
            self.0.workers().len() as i64,
        )?;
        if let Some(cpu) = crate::conference::cpu_seconds() {
            let c = ConstCounter::new(cpu);
            c.encode(e.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time of this process",
                None,
                c.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
