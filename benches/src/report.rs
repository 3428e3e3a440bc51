//! Results of a run and their three forms: a table on stdout, JSON and CSV.

use crate::config::LoadArgs;
use crate::control::ControlReport;
use crate::stats::{KindResult, Layout, StreamResult};
use crate::BenchError;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// The figures of one step (the whole run without `--sweep`).
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    /// Order in which the step ran (the probes carry it).
    pub step: u16,
    /// The configured packet rates were multiplied by this.
    pub scale: f64,
    pub audio_pps: f64,
    pub video_pps: f64,
    pub duration_s: f64,
    /// Packets loadgen sent per second (achieved, not asked for).
    pub offered_pps_in: f64,
    /// Packets the server should have sent per second: sent x receivers per stream.
    pub offered_pps_out: f64,
    pub sent: u64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub late: u64,
    /// Probes from another conference: the server crossed conferences (must be 0).
    pub misrouted: u64,
    /// A participant got its own stream back (must be 0).
    pub echoed: u64,
    /// Packets loadgen skipped because its sender fell behind.
    pub skipped: u64,
    pub send_errors: u64,
    /// Packets not sent because their participant was between servers (failover).
    pub paused: u64,
    /// Packets the server sent per second, as received by loadgen.
    pub pps_out: f64,
    pub loss_pct: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_p999_ms: f64,
    pub latency_max_ms: f64,
    pub server_cpu_seconds: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    /// Packets out per second of server CPU time.
    pub pps_out_per_core: Option<f64>,
    pub loadgen_cpu_cores: f64,
    /// CPU used by everything but the server and loadgen during the step (machine-wide,
    /// from /proc/stat). Above 0.1 the machine was shared and the step's figures suspect.
    pub other_cpu_cores: Option<f64>,
    /// Kernel UDP receive-buffer drops during the step, machine-wide.
    pub udp_rcvbuf_errors: u64,
    /// Of those, drops at loadgen's own sockets (it could not keep up).
    pub loadgen_socket_drops: u64,
    /// Drops at the server's media sockets (the server could not keep up; each dropped
    /// input packet is `participants - 1` lost outputs).
    pub server_socket_drops: u64,
    /// Delivery per media kind (those that sent): video apart from audio.
    pub kinds: Vec<KindResult>,
    /// Latency by the media server each receiver joined, when there were several (a
    /// conference spread over linked servers): receivers on the senders' server against
    /// those behind a relay hop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_by_server: Vec<ServerLatency>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamResult>,
}

/// Latency at the receivers of one media server.
#[derive(Clone, Debug, Serialize)]
pub struct ServerLatency {
    /// The server's media address, as its `channel` lines gave it.
    pub server: String,
    /// Participants joined there, and how many of them send.
    pub participants: u32,
    pub senders: u32,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_p999_ms: f64,
}

impl StepResult {
    /// Delivery of video-like streams, when any were sent.
    pub fn video(&self) -> Option<&KindResult> {
        self.kinds
            .iter()
            .find(|k| k.kind == crate::wire::Kind::Video)
    }
}

/// The machine a figure was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
        }
    }
}

/// The raw baseline's figures and this run's ratios to them.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub baseline_label: String,
    pub baseline_pps_out: f64,
    pub baseline_pps_out_per_core: Option<f64>,
    pub baseline_latency_p99_ms: f64,
    /// This run's packets out per core over the baseline's.
    pub ratio_pps_out_per_core: Option<f64>,
    pub ratio_pps_out: f64,
    /// This run's p99 less the baseline's: latency the server adds over a plain forwarder.
    pub added_latency_p99_ms: f64,
    /// The same figures step by step, for steps both runs have (same offered load).
    pub steps: Vec<StepRatio>,
}

/// One step against the baseline's step of the same index (the same offered load).
#[derive(Clone, Debug, Serialize)]
pub struct StepRatio {
    pub step: u16,
    pub offered_pps_out: f64,
    pub pps_out_per_core: Option<f64>,
    pub baseline_pps_out_per_core: Option<f64>,
    pub ratio_pps_out_per_core: Option<f64>,
    pub loss_pct: f64,
    pub baseline_loss_pct: f64,
    pub added_latency_p99_ms: f64,
}

/// Everything a run produced.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub label: String,
    /// The dispatcher or raw forwarder driven.
    pub target: String,
    pub date_utc: String,
    pub machine: Machine,
    pub config: LoadArgs,
    pub layout: Layout,
    pub join_seconds: f64,
    pub control: ControlReport,
    /// Index of the step the headline figures come from: the highest load with loss at most
    /// `--headline-loss-pct` and a median latency within `--max-p50-ms` (the only step
    /// without `--sweep`; step 0 when none qualifies).
    pub headline_step: u16,
    pub pps_out: f64,
    pub pps_out_per_core: Option<f64>,
    pub loss_pct: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_p999_ms: f64,
    pub server_cpu_cores: Option<f64>,
    /// The headline step's latency by media server (empty with one server).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_by_server: Vec<ServerLatency>,
    /// Why a sweep stopped: `loss`, `latency`, `loadgen` (could not offer more), `max_steps`.
    pub stopped_by: Option<String>,
    /// Server resident memory before the joins and at the end of the load (KiB), and the
    /// difference per participant (with `--server-pid`).
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_loaded_kib: Option<u64>,
    pub server_kib_per_participant: Option<f64>,
    /// The step nearest half the headline load, and its p99 (the "added latency at half
    /// of saturation" figure).
    pub half_load_step: Option<u16>,
    pub half_load_latency_p99_ms: Option<f64>,
    pub comparison: Option<Comparison>,
    pub steps: Vec<StepResult>,
}

impl RunResult {
    /// Fills the headline fields from step `i`.
    pub fn set_headline(&mut self, i: usize) {
        let s = &self.steps[i];
        self.headline_step = s.step;
        self.pps_out = s.pps_out;
        self.pps_out_per_core = s.pps_out_per_core;
        self.loss_pct = s.loss_pct;
        self.latency_p50_ms = s.latency_p50_ms;
        self.latency_p99_ms = s.latency_p99_ms;
        self.latency_p999_ms = s.latency_p999_ms;
        self.server_cpu_cores = s.server_cpu_cores;
        self.latency_by_server = s.latency_by_server.clone();
        let half = s.offered_pps_out / 2.0;
        if let Some(h) = self.steps[..i].iter().min_by(|a, b| {
            (a.offered_pps_out - half)
                .abs()
                .total_cmp(&(b.offered_pps_out - half).abs())
        }) {
            self.half_load_step = Some(h.step);
            self.half_load_latency_p99_ms = Some(h.latency_p99_ms);
        }
    }

    /// Adds ratios to a baseline run's JSON (from `loadgen --raw`).
    pub fn compare_with(&mut self, path: &Path) -> Result<(), BenchError> {
        let text = std::fs::read_to_string(path).map_err(|e| BenchError::output(path, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| BenchError::output(path, e))?;
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        let base_pps = num("pps_out").ok_or_else(|| BenchError::output(path, "no pps_out"))?;
        let base_ppc = num("pps_out_per_core");
        let base_p99 = num("latency_p99_ms").unwrap_or(0.0);
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let base_steps = v
            .get("steps")
            .and_then(|s| s.as_array())
            .cloned()
            .unwrap_or_default();
        // Steps of equal scale had the same offered load.
        let steps = self
            .steps
            .iter()
            .filter_map(|s| {
                let b = base_steps.iter().find(|b| {
                    b.get("scale")
                        .and_then(serde_json::Value::as_f64)
                        .is_some_and(|x| (x - s.scale).abs() < 1e-9)
                })?;
                Some((s, b))
            })
            .map(|(s, b)| {
                let bnum = |k: &str| b.get(k).and_then(serde_json::Value::as_f64);
                let b_ppc = bnum("pps_out_per_core");
                StepRatio {
                    step: s.step,
                    offered_pps_out: s.offered_pps_out,
                    pps_out_per_core: s.pps_out_per_core,
                    baseline_pps_out_per_core: b_ppc,
                    ratio_pps_out_per_core: s.pps_out_per_core.zip(b_ppc).map(|(a, b)| ratio(a, b)),
                    loss_pct: s.loss_pct,
                    baseline_loss_pct: bnum("loss_pct").unwrap_or(0.0),
                    added_latency_p99_ms: s.latency_p99_ms - bnum("latency_p99_ms").unwrap_or(0.0),
                }
            })
            .collect();
        self.comparison = Some(Comparison {
            baseline_label: v
                .get("label")
                .and_then(|l| l.as_str())
                .unwrap_or("baseline")
                .to_owned(),
            baseline_pps_out: base_pps,
            baseline_pps_out_per_core: base_ppc,
            baseline_latency_p99_ms: base_p99,
            ratio_pps_out_per_core: match (self.pps_out_per_core, base_ppc) {
                (Some(a), Some(b)) => Some(ratio(a, b)),
                _ => None,
            },
            ratio_pps_out: ratio(self.pps_out, base_pps),
            added_latency_p99_ms: self.latency_p99_ms - base_p99,
            steps,
        });
        Ok(())
    }

    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| BenchError::output(path, e))?;
        std::fs::write(path, text + "\n").map_err(|e| BenchError::output(path, e))
    }

    /// One row per step (per-stream figures are in the JSON).
    pub fn write_csv(&self, path: &Path) -> Result<(), BenchError> {
        let mut w = csv::Writer::from_path(path).map_err(|e| BenchError::output(path, e))?;
        for s in &self.steps {
            let row = CsvRow {
                label: &self.label,
                step: s,
            };
            w.serialize(row).map_err(|e| BenchError::output(path, e))?;
        }
        w.flush().map_err(|e| BenchError::output(path, e))
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let opt = |v: Option<f64>, prec: usize| {
            v.map_or_else(|| "-".to_owned(), |x| format!("{x:.prec$}"))
        };
        let _ = writeln!(
            out,
            "{} -> {}: {} conferences x {} participants, {} senders, audio {} B, video {} B",
            self.label,
            self.target,
            self.layout.conferences,
            self.layout.participants,
            self.layout.senders,
            self.config.audio_size,
            self.config.video_size,
        );
        let _ = writeln!(
            out,
            "{:>4} {:>7} {:>7} {:>10} {:>10} {:>7} {:>5} {:>6} {:>8} {:>8} {:>8} {:>6} {:>10} {:>6} {:>8} {:>8} {:>5}",
            "step", "a_pps", "v_pps", "pps_in", "pps_out", "loss%", "dup", "late", "p50ms",
            "p99ms", "p999ms", "cores", "pps/core", "lg_cpu", "srv_drop", "lg_drop", "other"
        );
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{:>4} {:>7.0} {:>7.0} {:>10.0} {:>10.0} {:>7.3} {:>5} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>6} {:>10} {:>6.2} {:>8} {:>8} {:>5}",
                s.step,
                s.audio_pps,
                s.video_pps,
                s.offered_pps_in,
                s.pps_out,
                s.loss_pct,
                s.duplicated,
                s.late,
                s.latency_p50_ms,
                s.latency_p99_ms,
                s.latency_p999_ms,
                opt(s.server_cpu_cores, 2),
                opt(s.pps_out_per_core, 0),
                s.loadgen_cpu_cores,
                s.server_socket_drops,
                s.loadgen_socket_drops,
                opt(s.other_cpu_cores, 2),
            );
        }
        if self.layout.kinds == 2 {
            for s in &self.steps {
                for k in &s.kinds {
                    let _ = writeln!(
                        out,
                        "  step {} {:<5} sent {:>8} recv {:>9}/{:<9} loss {:.3}% late {} p50/p99 {:.3}/{:.3} ms",
                        s.step,
                        k.kind.as_str(),
                        k.sent,
                        k.received,
                        k.expected,
                        k.loss_pct,
                        k.late,
                        k.latency.p50_ms,
                        k.latency.p99_ms
                    );
                }
            }
        }
        if let Some(s) = self.steps.iter().find(|s| s.step == self.headline_step) {
            if !s.streams.is_empty() && s.streams.len() <= 24 {
                let _ = writeln!(out, "streams of step {}:", s.step);
                for r in &s.streams {
                    let _ = writeln!(
                        out,
                        "  c{}s{} {:<5} sent {:>7} recv {:>8}/{:<8} lost {:>6} dup {:>4} late {:>5} p50 {:.3} p99 {:.3} p99.9 {:.3} ms",
                        r.conference, r.sender, r.kind.as_str(), r.sent, r.received, r.expected,
                        r.lost, r.duplicated, r.late, r.latency.p50_ms, r.latency.p99_ms,
                        r.latency.p999_ms
                    );
                }
            }
            let bad = s.misrouted + s.echoed;
            if bad > 0 {
                let _ = writeln!(
                    out,
                    "WRONG DELIVERIES: {} misrouted, {} echoed",
                    s.misrouted, s.echoed
                );
            }
        }
        let _ = writeln!(
            out,
            "headline (step {}): pps_out {:.0}, pps_out_per_core {}, loss {:.3}%, p50/p99/p99.9 {:.3}/{:.3}/{:.3} ms, server cores {}",
            self.headline_step,
            self.pps_out,
            opt(self.pps_out_per_core, 0),
            self.loss_pct,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_p999_ms,
            opt(self.server_cpu_cores, 2),
        );
        if let Some(why) = &self.stopped_by {
            let _ = writeln!(out, "sweep stopped by: {why}");
        }
        if let (Some(h), Some(p99)) = (self.half_load_step, self.half_load_latency_p99_ms) {
            let _ = writeln!(out, "half load (step {h}): p99 {p99:.3} ms");
        }
        if let Some(k) = self.server_kib_per_participant {
            let _ = writeln!(
                out,
                "server memory: {} KiB before joins, {} KiB loaded: {k:.1} KiB per participant",
                self.server_rss_before_kib.unwrap_or(0),
                self.server_rss_loaded_kib.unwrap_or(0)
            );
        }
        if let Some(c) = &self.comparison {
            let _ = writeln!(
                out,
                "vs {}: pps_out_per_core ratio {}, pps_out ratio {:.3}, added p99 {:.3} ms",
                c.baseline_label,
                opt(c.ratio_pps_out_per_core, 3),
                c.ratio_pps_out,
                c.added_latency_p99_ms
            );
            if c.steps.len() > 1 {
                for r in &c.steps {
                    let _ = writeln!(
                        out,
                        "  step {} ({:.0} pps out offered): pps/core ratio {}, loss {:.3}% vs {:.3}%, added p99 {:.3} ms",
                        r.step,
                        r.offered_pps_out,
                        opt(r.ratio_pps_out_per_core, 3),
                        r.loss_pct,
                        r.baseline_loss_pct,
                        r.added_latency_p99_ms
                    );
                }
            }
        }
        out
    }
}

/// A CSV row: the run's label and a step's scalar figures.
struct CsvRow<'a> {
    label: &'a str,
    step: &'a StepResult,
}

impl Serialize for CsvRow<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let s = self.step;
        let mut st = ser.serialize_struct("row", 34)?;
        st.serialize_field("label", self.label)?;
        st.serialize_field("step", &s.step)?;
        st.serialize_field("audio_pps", &s.audio_pps)?;
        st.serialize_field("video_pps", &s.video_pps)?;
        st.serialize_field("duration_s", &s.duration_s)?;
        st.serialize_field("offered_pps_in", &s.offered_pps_in)?;
        st.serialize_field("offered_pps_out", &s.offered_pps_out)?;
        st.serialize_field("sent", &s.sent)?;
        st.serialize_field("expected", &s.expected)?;
        st.serialize_field("received", &s.received)?;
        st.serialize_field("lost", &s.lost)?;
        st.serialize_field("duplicated", &s.duplicated)?;
        st.serialize_field("reordered", &s.reordered)?;
        st.serialize_field("late", &s.late)?;
        st.serialize_field("misrouted", &s.misrouted)?;
        st.serialize_field("echoed", &s.echoed)?;
        st.serialize_field("skipped", &s.skipped)?;
        st.serialize_field("pps_out", &s.pps_out)?;
        st.serialize_field("loss_pct", &s.loss_pct)?;
        st.serialize_field("latency_p50_ms", &s.latency_p50_ms)?;
        st.serialize_field("latency_p99_ms", &s.latency_p99_ms)?;
        st.serialize_field("latency_p999_ms", &s.latency_p999_ms)?;
        st.serialize_field("server_cpu_cores", &s.server_cpu_cores)?;
        st.serialize_field("pps_out_per_core", &s.pps_out_per_core)?;
        st.serialize_field("loadgen_cpu_cores", &s.loadgen_cpu_cores)?;
        st.serialize_field("udp_rcvbuf_errors", &s.udp_rcvbuf_errors)?;
        st.serialize_field("server_socket_drops", &s.server_socket_drops)?;
        st.serialize_field("loadgen_socket_drops", &s.loadgen_socket_drops)?;
        st.serialize_field("scale", &s.scale)?;
        st.serialize_field("other_cpu_cores", &s.other_cpu_cores)?;
        let video = s.video();
        st.serialize_field("video_expected", &video.map(|v| v.expected))?;
        st.serialize_field("video_received", &video.map(|v| v.received))?;
        st.serialize_field("video_loss_pct", &video.map(|v| v.loss_pct))?;
        st.serialize_field("video_latency_p99_ms", &video.map(|v| v.latency.p99_ms))?;
        st.end()
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days, proleptic Gregorian).
pub fn utc_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_date(1_795_315_311), "2026-11-22T02:41:51Z");
    }
}
