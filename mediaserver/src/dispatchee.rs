//! The dispatchee (seed 003, module 902): registers with the dispatcher, reports capacity
//! every second, relays joins, leaves and deleted conferences, and acts on `reserve`.
//! When the link drops it reconnects and re-announces everyone present, so the
//! dispatcher's tables converge again.

use crate::host::{delete_room, ensure_room, unix_now};
use crate::worker::WorkerCounters;
use crate::Server;
use protocol::{Capabilities, DispMsg, LineBuffer, MsMsg, ServerMsg};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

const REPORT_EVERY: Duration = Duration::from_secs(1);
const RETRY_EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn run(server: Arc<Server>, mut outbox: UnboundedReceiver<MsMsg>) {
    let mut meter = Meter::new();
    loop {
        match link(&server, &mut outbox, &mut meter).await {
            Ok(()) => tracing::warn!("dispatcher closed the registry link; reconnecting"),
            Err(e) => {
                tracing::warn!(dispatcher = %server.settings.dispatcher, error = %e, "registry link down; retrying")
            }
        }
        // Lines queued while down describe state we re-announce on reconnect.
        while outbox.try_recv().is_ok() {}
        let sweep_until = Instant::now() + RETRY_EVERY;
        sweep(&server);
        tokio::time::sleep_until(sweep_until.into()).await;
    }
}

async fn link(
    server: &Server,
    outbox: &mut UnboundedReceiver<MsMsg>,
    meter: &mut Meter,
) -> std::io::Result<()> {
    let stream = server.settings.connect_dispatcher().await?;
    stream.set_nodelay(true)?;
    let (mut r, mut w) = stream.into_split();
    let register = MsMsg::Register {
        id: server.settings.id.clone(),
        client_addr: server.client_addr,
        caps: Capabilities {
            audio: true,
            // Video is forwarded in both modes (hybrid in mix rooms), unless the operator
            // keeps this server for audio (the dispatcher rations video servers).
            video: server.settings.video,
            reflect: true,
            mix: true,
            ..Default::default()
        },
        total: server.settings.capacity,
        ws: None,
    };
    let mut out = register.encode();
    if server.is_draining() {
        // A dispatcher we reconnect to must not place new conferences here either.
        out += &MsMsg::State { draining: true }.encode();
    }
    for msg in roster(server) {
        out += &msg.encode();
    }
    out += &report(server, meter).encode();
    w.write_all(out.as_bytes()).await?;
    tracing::info!(dispatcher = %server.settings.dispatcher, "registered");
    let mut lines = LineBuffer::new();
    let mut buf = vec![0u8; 4096];
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tokio::select! {
            n = r.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                lines.extend(&buf[..n]);
                while let Some(line) = lines.next_line() {
                    match line.and_then(|l| DispMsg::parse(&l)) {
                        Ok(msg) => on_dispatcher(server, msg),
                        Err(e) => tracing::warn!(error = %e, "bad line from dispatcher ignored"),
                    }
                }
            }
            Some(msg) = outbox.recv() => w.write_all(msg.encode().as_bytes()).await?,
            _ = tick.tick() => {
                sweep(server);
                crate::punt::high_water(server, Instant::now());
                w.write_all(report(server, meter).encode().as_bytes()).await?;
            }
        }
    }
}

fn on_dispatcher(server: &Server, msg: DispMsg) {
    match msg {
        DispMsg::Connect { id, .. } => tracing::info!(dispatcher = %id, "dispatcher says hello"),
        DispMsg::Reserve {
            conference,
            user,
            mode,
            expires,
            ..
        } => {
            let mut rooms = server.rooms();
            match ensure_room(server, &mut rooms, &conference, mode) {
                Ok(room) => room.reserve(user, expires),
                Err(e) => {
                    tracing::error!(conference, reply = %e.encode().trim_end(), "reserve failed")
                }
            }
        }
        DispMsg::Dispatch {
            conference,
            participant,
            addr,
            ticket,
            to_conference,
        } => {
            // A punt keeps the conference and changes the server; a move changes both.
            let order = ServerMsg::Dispatch {
                addr: addr.into(),
                ticket,
                conference: (to_conference != conference).then_some(to_conference),
            };
            let rooms = server.rooms();
            match rooms
                .rooms
                .get(&conference)
                .and_then(|r| r.members.get(&participant))
            {
                Some(m) => {
                    tracing::info!(conference, participant, %addr, "dispatching participant");
                    let _ = m.tx.send(order);
                }
                None => tracing::warn!(conference, participant, "dispatch for someone not here"),
            }
        }
        // A refused `punt` (no other server yet) is retried by the next high-water or
        // drain check; anything else the dispatcher refuses closes the link.
        DispMsg::Error { code, text } => tracing::warn!(%code, %text, "dispatcher refused"),
    }
}

/// `userjoined` for everyone present, so a (re)started dispatcher learns the roster.
fn roster(server: &Server) -> Vec<MsMsg> {
    let rooms = server.rooms();
    rooms
        .rooms
        .iter()
        .flat_map(|(name, room)| {
            room.members.iter().map(|(id, m)| MsMsg::UserJoined {
                conference: name.clone(),
                participant: *id,
                name: m.name.clone(),
                account: m.account.clone(),
            })
        })
        .collect()
}

/// Drops expired reservations and deletes rooms nobody joined.
fn sweep(server: &Server) {
    let now = unix_now();
    let mut rooms = server.rooms();
    let idle: Vec<String> = rooms
        .rooms
        .iter_mut()
        .filter_map(|(name, room)| {
            room.expire(now);
            room.is_idle().then(|| name.clone())
        })
        .collect();
    for name in idle {
        delete_room(server, &mut rooms, &name);
    }
}

fn report(server: &Server, meter: &mut Meter) -> MsMsg {
    // Used capacity in the dispatcher's units: each member costs what its conference's
    // mode costs in the shared `[cost]` model.
    let (conferences, users, used) = {
        let rooms = server.rooms();
        let cost = &server.settings.cost;
        let used = rooms.units(cost);
        (
            rooms.rooms.len() as u32,
            rooms.users() as u32,
            u32::try_from(used).unwrap_or(u32::MAX),
        )
    };
    let sum = |f: fn(&WorkerCounters) -> &AtomicU64| -> u64 {
        server
            .workers
            .iter()
            .map(|w| f(&w.counters).load(Ordering::Relaxed))
            .sum()
    };
    let (cpu_pct, pps, loss_pct) = meter.sample(
        sum(|c| &c.packets_out),
        sum(|c| &c.datagrams_in),
        sum(|c| &c.lost),
    );
    MsMsg::Report {
        unused: server.settings.capacity.saturating_sub(used),
        conferences,
        users,
        cpu_pct,
        pps,
        loss_pct,
    }
}

/// CPU use and packet rate between two reports.
struct Meter {
    at: Instant,
    cpu_ticks: u64,
    packets: u64,
    received: u64,
    lost: u64,
}

impl Meter {
    fn new() -> Self {
        Meter {
            at: Instant::now(),
            cpu_ticks: cpu_ticks().unwrap_or(0),
            packets: 0,
            received: 0,
            lost: 0,
        }
    }

    /// CPU %, packets out per second, and the loss % of what we received, since the
    /// last sample.
    fn sample(&mut self, packets: u64, received: u64, lost: u64) -> (f32, u64, f32) {
        let now = Instant::now();
        let secs = now.duration_since(self.at).as_secs_f64().max(1e-3);
        let ticks = cpu_ticks().unwrap_or(self.cpu_ticks);
        // Linux reports process times in USER_HZ, which is 100 on every supported platform.
        let cpu = (ticks.saturating_sub(self.cpu_ticks)) as f64 / 100.0 / secs * 100.0;
        let pps = (packets.saturating_sub(self.packets)) as f64 / secs;
        self.at = now;
        self.cpu_ticks = ticks;
        self.packets = packets;
        let (got, missed) = (
            received.saturating_sub(self.received),
            lost.saturating_sub(self.lost),
        );
        self.received = received;
        self.lost = lost;
        let loss = if got + missed > 0 {
            100.0 * missed as f64 / (got + missed) as f64
        } else {
            0.0
        };
        (cpu as f32, pps as u64, loss as f32)
    }
}

/// CPU seconds (user + system) of this process.
pub(crate) fn cpu_seconds() -> Option<f64> {
    // Linux reports process times in USER_HZ, which is 100 on every supported platform.
    cpu_ticks().map(|t| t as f64 / 100.0)
}

/// utime + stime of this process from /proc, in clock ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; fields after its closing parenthesis are fixed.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}
