//! A fault-injecting TCP proxy on loopback: a userspace stand-in for `tc netem`
//! where the kernel has no `sch_netem`.
//!
//! Faults are modelled as TCP shows them to the applications at both ends, since
//! a proxy sees streams, not packets:
//! - delay: every chunk read from one side is written to the other `delay` later
//!   (each way), and a new connection's first bytes wait one round trip, the
//!   cost of the TCP handshake;
//! - loss: TCP never loses data, it retransmits it after a retransmission timeout.
//!   A lost chunk (probability `loss`) is therefore delivered late by an RTO drawn
//!   from `rto` (Linux: 200 ms minimum, 1 s initial), doubled for every further
//!   loss of the retransmission; data is delivered in order, so later chunks wait
//!   behind it (head-of-line blocking). A lost SYN costs the initial RTO, 1 s;
//! - resets: with probability `reset` per chunk the connection is reset (both
//!   sides closed with RST), as a middlebox or a long outage does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the link does to the traffic.
#[derive(Debug, Clone, Copy)]
pub struct LinkFaults {
    /// One-way delay.
    pub delay: Duration,
    /// Probability that a chunk (a segment) is lost and must be retransmitted.
    pub loss: f64,
    /// Range of the retransmission timeout a loss costs.
    pub rto: (Duration, Duration),
    /// Probability per chunk that the connection is reset.
    pub reset: f64,
}

impl LinkFaults {
    /// A link without faults (the proxy only relays).
    pub fn none() -> LinkFaults {
        LinkFaults {
            delay: Duration::ZERO,
            loss: 0.0,
            rto: (Duration::ZERO, Duration::ZERO),
            reset: 0.0,
        }
    }
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub connections: AtomicU64,
    pub chunks: AtomicU64,
    pub losses: AtomicU64,
    pub resets: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    pub stats: Arc<ProxyStats>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A small deterministic generator (xorshift64*), one per connection direction,
/// so a run's faults do not depend on scheduling across connections.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, (low, high): (Duration, Duration)) -> Duration {
        low + (high.saturating_sub(low)).mul_f64(self.next())
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and relays every connection to `upstream`
    /// through `faults`; `seed` makes the faults repeatable.
    pub async fn start(upstream: SocketAddr, faults: LinkFaults, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let stats = Arc::new(ProxyStats::default());
        let task = tokio::spawn({
            let stats = stats.clone();
            async move {
                let mut connection = 0u64;
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    connection += 1;
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(relay(
                        client,
                        upstream,
                        faults,
                        seed ^ (connection << 20),
                        stats.clone(),
                    ));
                }
            }
        });
        FaultProxy { addr, stats, task }
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    faults: LinkFaults,
    seed: u64,
    stats: Arc<ProxyStats>,
) {
    let mut random = Random::new(seed);
    // The handshake's round trip, and the initial RTO when the SYN is lost.
    let mut setup = faults.delay * 2;
    if random.next() < faults.loss {
        setup += Duration::from_secs(1);
        stats.losses.fetch_add(1, Ordering::Relaxed);
    }
    tokio::time::sleep(setup).await;
    let Ok(server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let (reset, _) = watch::channel(false);
    let reset = Arc::new(reset);
    tokio::join!(
        direction(
            client_read,
            server_write,
            faults,
            Random::new(seed ^ 1),
            stats.clone(),
            reset.clone(),
        ),
        direction(
            server_read,
            client_write,
            faults,
            Random::new(seed ^ 2),
            stats,
            reset,
        ),
    );
}

/// Relays one direction until EOF, an error, or a reset of the connection (drawn
/// here or by the other direction), which closes both sockets with an RST.
async fn direction(
    mut from: OwnedReadHalf,
    to: OwnedWriteHalf,
    faults: LinkFaults,
    mut random: Random,
    stats: Arc<ProxyStats>,
    reset: Arc<watch::Sender<bool>>,
) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        let mut to = to;
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut reset_seen = reset.subscribe();
    let mut last_due = Instant::now();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = reset_seen.wait_for(|r| *r) => break,
        };
        let n = match read {
            Ok(0) | Err(_) => {
                // Whatever was read is still delivered, then a FIN.
                drop(queue);
                let _ = writer.await;
                return;
            }
            Ok(n) => n,
        };
        stats.chunks.fetch_add(1, Ordering::Relaxed);
        if random.next() < faults.reset {
            stats.resets.fetch_add(1, Ordering::Relaxed);
            reset.send_replace(true);
            break;
        }
        let mut extra = Duration::ZERO;
        let mut rto = random.between(faults.rto);
        while random.next() < faults.loss {
            stats.losses.fetch_add(1, Ordering::Relaxed);
            extra += rto;
            rto *= 2;
        }
        // In order: a chunk is never delivered before the one read before it.
        let at = (Instant::now() + faults.delay + extra).max(last_due);
        last_due = at;
        if queue.send((at, buffer[..n].to_vec())).is_err() {
            break;
        }
    }
    // Reset: this direction's source socket closes with an RST once both of its
    // halves are gone (the other direction does the same with the other socket).
    let _ = from.as_ref().set_zero_linger();
    writer.abort();
    let _ = writer.await;
}
