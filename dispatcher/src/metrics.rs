//! The dispatcher's Prometheus series, through `prometheus-client`.

use crate::core::ServerState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: String,
}

/// Every series the dispatcher exports. Cloned handles share their values.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Clients dispatched, by whether the conference was created or found.
    pub dispatches: Family<OutcomeLabel, Counter>,
    /// `reject` and `error` lines sent to clients, by code.
    pub rejects: Family<CodeLabel, Counter>,
    /// Time from `join` to a placement decision.
    pub selection_seconds: Histogram,
    /// Media servers by state, refreshed at each scrape.
    pub servers: Family<StateLabel, Gauge>,
    /// Conferences lost with a media server, whose clients must come back.
    pub failovers: Counter,
    /// Admin actions, by action.
    pub admin_actions: Family<ActionLabel, Counter>,
    pub conferences: Gauge,
    pub participants: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Vec::new())
    }
}

impl Metrics {
    /// The dispatcher's series, and `noc_control_*` for the control listeners `gates`.
    pub fn new(gates: Vec<std::sync::Arc<control::Gate>>) -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(control::metrics::GateCollector(gates)));
        let registry = root.sub_registry_with_prefix("noc_dispatcher");
        let m = Metrics {
            dispatches: Family::default(),
            rejects: Family::default(),
            selection_seconds: Histogram::new(exponential_buckets(1e-6, 4.0, 10)),
            servers: Family::default(),
            failovers: Counter::default(),
            admin_actions: Family::default(),
            conferences: Gauge::default(),
            participants: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "dispatches",
            "Clients dispatched to a media server",
            m.dispatches.clone(),
        );
        registry.register(
            "rejects",
            "Reject and error lines sent to clients, by code",
            m.rejects.clone(),
        );
        registry.register(
            "selection_seconds",
            "Time from join to placement decision",
            m.selection_seconds.clone(),
        );
        registry.register("servers", "Media servers by state", m.servers.clone());
        registry.register(
            "failovers",
            "Conferences lost with a media server",
            m.failovers.clone(),
        );
        registry.register(
            "admin_actions",
            "Operator actions, by action",
            m.admin_actions.clone(),
        );
        registry.register(
            "conferences",
            "Conferences in the conference table",
            m.conferences.clone(),
        );
        registry.register(
            "participants",
            "Participants in the conference table",
            m.participants.clone(),
        );
        Metrics {
            registry: root,
            ..m
        }
    }

    pub fn reject(&self, code: protocol::ErrorCode) {
        self.rejects
            .get_or_create(&CodeLabel {
                code: code.as_u16().to_string(),
            })
            .inc();
    }

    pub fn admin(&self, action: &str) {
        self.admin_actions
            .get_or_create(&ActionLabel {
                action: action.to_owned(),
            })
            .inc();
    }

    pub fn set_server_counts(&self, counts: &[(ServerState, i64)]) {
        for (state, n) in counts {
            self.servers
                .get_or_create(&StateLabel {
                    state: state.as_str().to_owned(),
                })
                .set(*n);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String");
        out
    }
}
