//! A TCP relay that counts the bytes crossing it, so the traffic of the devices
//! routed through it can be measured exactly (TLS records both ways, without
//! TCP/IP headers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::SimError;

/// A running relay to one upstream address.
#[derive(Debug)]
pub struct CountingRelay {
    /// Where devices connect instead of the server.
    pub addr: SocketAddr,
    bytes: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingRelay {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self, SimError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| SimError::Io {
                what: "binding the counting relay".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Io {
            what: "reading the counting relay's address".into(),
            source,
        })?;
        let bytes = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let counter = bytes.clone();
        let sent_counter = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                let sent_counter = sent_counter.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let upstream_counters = [&counter, &sent_counter];
                    let downstream_counters = [&counter];
                    tokio::join!(
                        pump(client_read, server_write, &upstream_counters),
                        pump(server_read, client_write, &downstream_counters),
                    );
                });
            }
        });
        Ok(Self {
            addr,
            bytes,
            sent,
            task,
        })
    }

    /// Bytes relayed so far, both directions.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes the devices sent so far (towards the server).
    pub fn sent_bytes(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counters: &[&Arc<AtomicU64>],
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let Some(chunk) = buffer.get(..read) else {
            break;
        };
        if to.write_all(chunk).await.is_err() {
            break;
        }
        for counter in counters {
            counter.fetch_add(read as u64, Ordering::Relaxed);
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_bytes_both_ways() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut stream, _) = echo.accept().await.expect("accept");
            let mut buffer = [0u8; 5];
            stream.read_exact(&mut buffer).await.expect("read");
            stream.write_all(b"hello world").await.expect("write");
        });
        let relay = CountingRelay::start(echo_addr).await.expect("relay");
        let mut client = TcpStream::connect(relay.addr).await.expect("connect");
        client.write_all(b"hello").await.expect("write");
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.expect("read");
        assert_eq!(reply, b"hello world");
        // 5 bytes up, 11 down.
        for _ in 0..100 {
            if relay.bytes() == 16 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(relay.bytes(), 16);
        assert_eq!(relay.sent_bytes(), 5);
    }
}
