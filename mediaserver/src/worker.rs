//! A media worker: one OS thread that owns a UDP socket and a mesh, and runs the mesh's
//! clock. The control plane talks to it only through a bounded command channel.

use crate::path::MediaPath;
use mesh::{Command, Event, Mesh, MeshConfig, TxBatch};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Commands queued per worker before the control plane is told to back off.
const COMMAND_QUEUE: usize = 1024;
/// Longest the thread blocks in `recv` so that commands and ticks are never late by more.
const RECV_WAIT: Duration = Duration::from_millis(5);

/// Counters a worker publishes for reports and logs.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub datagrams_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub dropped: AtomicU64,
    pub conferences: AtomicU64,
}

/// The control plane's handle on a worker.
pub struct WorkerHandle {
    pub index: usize,
    pub addr: SocketAddr,
    pub counters: Arc<WorkerCounters>,
    commands: SyncSender<Command<MediaPath>>,
}

impl WorkerHandle {
    /// Queues a command for the mesh; false if the worker is gone or its queue is full.
    pub fn send(&self, cmd: Command<MediaPath>) -> bool {
        match self.commands.try_send(cmd) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                tracing::error!(worker = self.index, "worker command queue full");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Binds the worker's socket on `ip` and starts its thread. Mesh events go to `events`.
pub fn spawn(
    index: usize,
    ip: IpAddr,
    events: UnboundedSender<(usize, Event)>,
) -> std::io::Result<WorkerHandle> {
    let socket = UdpSocket::bind((ip, 0))?;
    socket.set_read_timeout(Some(RECV_WAIT))?;
    let addr = socket.local_addr()?;
    let (tx, rx) = sync_channel(COMMAND_QUEUE);
    let counters = Arc::new(WorkerCounters::default());
    let c = counters.clone();
    std::thread::Builder::new()
        .name(format!("media-worker-{index}"))
        .spawn(move || run(index, socket, rx, events, &c))?;
    tracing::info!(worker = index, %addr, "media worker started");
    Ok(WorkerHandle {
        index,
        addr,
        counters,
        commands: tx,
    })
}

fn run(
    index: usize,
    socket: UdpSocket,
    commands: Receiver<Command<MediaPath>>,
    events: UnboundedSender<(usize, Event)>,
    counters: &WorkerCounters,
) {
    let mut mesh: Mesh<MediaPath> = Mesh::new(Instant::now(), MeshConfig::default());
    let mut batch = TxBatch::with_capacity(1024, 1024 * 1500);
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        loop {
            match commands.try_recv() {
                Ok(cmd) => mesh.handle_command(now, cmd),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    tracing::info!(worker = index, "control plane gone; worker stops");
                    return;
                }
            }
        }
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => mesh.handle_datagram(Instant::now(), from, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            // ICMP port unreachable from a departed client surfaces here on Linux.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => tracing::warn!(worker = index, error = %e, "recv failed"),
        }
        let now = Instant::now();
        if now >= mesh.poll_timeout() {
            mesh.handle_tick(now);
            publish(&mesh, counters);
        }
        mesh.poll_transmit(&mut batch);
        for (dest, bytes) in batch.iter() {
            if let Err(e) = socket.send_to(bytes, dest) {
                tracing::debug!(worker = index, %dest, error = %e, "send failed");
            }
        }
        batch.clear();
        while let Some(ev) = mesh.poll_event() {
            let _ = events.send((index, ev));
        }
    }
}

fn publish(mesh: &Mesh<MediaPath>, c: &WorkerCounters) {
    let s = mesh.stats();
    c.datagrams_in.store(s.datagrams_in, Ordering::Relaxed);
    c.packets_out.store(s.packets_out, Ordering::Relaxed);
    c.dropped.store(s.total_drops(), Ordering::Relaxed);
    c.conferences
        .store(mesh.conference_count() as u64, Ordering::Relaxed);
}
