//! RFC 5424 syslog messages and their transports: octet-counted frames over TCP
//! (RFC 6587 §3.4.1) or TLS (RFC 5425), and one datagram per message over UDP
//! (RFC 5426).
//!
//! Every message names its origin twice: in the header (`HOSTNAME` is the device,
//! `APP-NAME` the workload, `PROCID` the container) and, unabridged, in a
//! structured-data element `[flotta@32473 device=… namespace=… workload=…
//! container=…]` (32473 is the private enterprise number RFC 5612 sets aside for
//! documentation and examples).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::plan::Transport;

/// Structured-data ID of the origin element.
pub const SD_ID: &str = "flotta@32473";
/// Facility `user` (1), severity `informational` (6): `1 * 8 + 6`.
const PRIORITY: u8 = 14;
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write may take before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a line comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The device's ID.
    pub device: String,
    /// The device's namespace.
    pub namespace: String,
    /// The workload's name.
    pub workload: String,
    /// The container's name.
    pub container: String,
}

/// A header field: printable US-ASCII without spaces, at most `max` characters,
/// `-` (NILVALUE) when nothing is left.
fn header_field(value: &str, max: usize) -> String {
    let cleaned: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if cleaned.is_empty() {
        "-".into()
    } else {
        cleaned
    }
}

/// A structured-data parameter value, with `"`, `\` and `]` escaped.
fn param_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// One RFC 5424 message of `line` (without its newline) from `origin`, stamped
/// `at`. Bytes that are not UTF-8 are replaced.
pub fn message(origin: &Origin, at: OffsetDateTime, line: &[u8]) -> Vec<u8> {
    let timestamp = at
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "-".into());
    let text = String::from_utf8_lossy(line);
    format!(
        "<{PRIORITY}>1 {timestamp} {host} {app} {proc} - [{SD_ID} device=\"{device}\" namespace=\"{namespace}\" workload=\"{workload}\" container=\"{container}\"] {text}",
        host = header_field(&origin.device, 255),
        app = header_field(&origin.workload, 48),
        proc = header_field(&origin.container, 128),
        device = param_value(&origin.device),
        namespace = param_value(&origin.namespace),
        workload = param_value(&origin.workload),
        container = param_value(&origin.container),
    )
    .into_bytes()
}

/// An octet-counted frame: `LENGTH SP MESSAGE`.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(message);
    framed
}

/// A connection to one syslog server, opened on first use and after a failure.
#[derive(Debug)]
pub struct SyslogSender {
    address: String,
    transport: Transport,
    tls: Option<Arc<rustls::ClientConfig>>,
    connection: Option<Connection>,
}

#[derive(Debug)]
enum Connection {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Udp(UdpSocket),
}

impl SyslogSender {
    /// A sender to `address` (`host:port`); nothing is opened yet.
    pub fn new(address: impl Into<String>, transport: Transport) -> Self {
        Self {
            address: address.into(),
            transport,
            tls: None,
            connection: None,
        }
    }

    /// This sender checking the server's TLS certificate against `ca_pem`
    /// (transport [`Transport::Tls`]); an error when the PEM holds no usable CA.
    pub fn with_ca(mut self, ca_pem: &str) -> Result<Self, String> {
        let config = flotta_client::tls_client_config(ca_pem, None).map_err(|e| e.to_string())?;
        self.tls = Some(Arc::new(config));
        Ok(self)
    }

    async fn connect(&self) -> std::io::Result<Connection> {
        let timed_out = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {} timed out", self.address),
            )
        };
        match self.transport {
            Transport::Tcp => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
                        .await
                        .map_err(|_| timed_out())??;
                stream.set_nodelay(true)?;
                Ok(Connection::Tcp(stream))
            }
            Transport::Tls => {
                let Some(config) = self.tls.clone() else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "tls needs the server's CA certificates",
                    ));
                };
                let host = self
                    .address
                    .rsplit_once(':')
                    .map_or(self.address.as_str(), |(host, _)| host)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name =
                    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("{host:?} is not a TLS server name: {e}"),
                        )
                    })?;
                let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
                    .await
                    .map_err(|_| timed_out())??;
                tcp.set_nodelay(true)?;
                let connecting = TlsConnector::from(config).connect(name, tcp);
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                    .await
                    .map_err(|_| timed_out())??;
                Ok(Connection::Tls(Box::new(stream)))
            }
            Transport::Udp => {
                let target =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host(&self.address))
                        .await
                        .map_err(|_| timed_out())??
                        .next()
                        .ok_or_else(|| {
                            std::io::Error::new(
                                std::io::ErrorKind::NotFound,
                                format!("{} resolves to no address", self.address),
                            )
                        })?;
                let local = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local).await?;
                socket.connect(target).await?;
                Ok(Connection::Udp(socket))
            }
        }
    }

    /// Sends `messages` in order. On an error the connection is dropped (the next
    /// call opens a new one) and the caller sends the same messages again: over
    /// TCP a server may then see a message twice, never miss one the caller
    /// counted as sent.
    pub async fn send(&mut self, messages: &[Vec<u8>]) -> std::io::Result<()> {
        let closed = match self.connection.as_mut() {
            Some(Connection::Tcp(stream)) => !still_open(stream),
            Some(Connection::Tls(stream)) => !tls_still_open(stream),
            _ => false,
        };
        if closed {
            // The server closed the connection (it stopped, or dropped an idle
            // client): writing to it would lose the first batch.
            self.connection = None;
        }
        if self.connection.is_none() {
            self.connection = Some(self.connect().await?);
        }
        let framed = || {
            let mut bytes = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
            for message in messages {
                bytes.extend_from_slice(&frame(message));
            }
            bytes
        };
        let write_timed_out = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("writing to {} timed out", self.address),
            )
        };
        let result = match self.connection.as_mut() {
            Some(Connection::Tcp(stream)) => {
                tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&framed()))
                    .await
                    .unwrap_or_else(|_| Err(write_timed_out()))
            }
            Some(Connection::Tls(stream)) => {
                let bytes = framed();
                tokio::time::timeout(WRITE_TIMEOUT, async {
                    stream.write_all(&bytes).await?;
                    stream.flush().await
                })
                .await
                .unwrap_or_else(|_| Err(write_timed_out()))
            }
            Some(Connection::Udp(socket)) => {
                let mut result = Ok(());
                for message in messages {
                    if let Err(error) = socket.send(message).await {
                        result = Err(error);
                        break;
                    }
                }
                result
            }
            None => Ok(()),
        };
        if result.is_err() {
            self.connection = None;
        }
        result
    }
}

/// Whether the server has not closed `stream`: a syslog server never writes to
/// its clients, so anything readable is the end of the connection (or an error).
///
/// The kernel is asked directly (a peek that does not wait), not the runtime's
/// cached readiness, which may not have seen the close yet.
fn still_open(stream: &TcpStream) -> bool {
    use rustix::net::{RecvFlags, recv};
    let mut byte = [0u8; 1];
    match recv(stream, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((0, _)) => false,
        Ok(_) => true,
        Err(error) => error == rustix::io::Errno::AGAIN,
    }
}

/// Whether the server has not closed the TLS connection `stream`: a read that
/// would wait means open; an end (close_notify or EOF) or an error means closed.
/// Records a server sends without data (session tickets) are taken in by the
/// read and change nothing.
fn tls_still_open(stream: &mut TlsStream<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte).now_or_never() {
        None => true,
        Some(Ok(0) | Err(_)) => false,
        Some(Ok(_)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            device: "cam-1".into(),
            namespace: "plant".into(),
            workload: "web".into(),
            container: "nginx".into(),
        }
    }

    #[test]
    fn a_message_is_rfc5424_with_its_origin() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let text = String::from_utf8(message(&origin(), at, b"hello \"world\"")).expect("utf-8");
        assert_eq!(
            text,
            "<14>1 2023-11-14T22:13:20Z cam-1 web nginx - [flotta@32473 device=\"cam-1\" \
             namespace=\"plant\" workload=\"web\" container=\"nginx\"] hello \"world\""
        );
    }

    #[test]
    fn header_fields_are_bounded_and_values_escaped() {
        let mut origin = origin();
        origin.workload = "w".repeat(60);
        origin.container = "a b]\"\\".into();
        let at = OffsetDateTime::UNIX_EPOCH;
        let text = String::from_utf8(message(&origin, at, b"\xff")).expect("utf-8");
        let fields: Vec<&str> = text.splitn(7, ' ').collect();
        assert_eq!(fields[3].len(), 48, "{text}");
        assert_eq!(fields[4], "ab]\"\\", "{text}");
        assert!(text.contains("container=\"a b\\]\\\"\\\\\""), "{text}");
        assert!(text.ends_with("] \u{fffd}"), "{text}");
    }

    #[test]
    fn frames_count_octets() {
        assert_eq!(frame("héllo".as_bytes()), b"6 h\xc3\xa9llo".to_vec());
    }

    #[tokio::test]
    async fn udp_sends_one_datagram_per_message() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let address = receiver.local_addr().expect("address").to_string();
        let mut sender = SyslogSender::new(address, Transport::Udp);
        sender
            .send(&[b"first".to_vec(), b"second".to_vec()])
            .await
            .expect("sent");
        let mut buffer = [0u8; 64];
        for expected in [&b"first"[..], b"second"] {
            let n = receiver.recv(&mut buffer).await.expect("datagram");
            assert_eq!(&buffer[..n], expected);
        }
    }

    #[tokio::test]
    async fn a_closed_tcp_connection_is_noticed_before_the_next_batch() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let mut sender = SyslogSender::new(address, Transport::Tcp);
        sender.send(&[b"one".to_vec()]).await.expect("sent");
        let (mut first, _) = listener.accept().await.expect("accept");
        let mut bytes = [0u8; 5];
        first.read_exact(&mut bytes).await.expect("frame");
        assert_eq!(&bytes, b"3 one");
        // The server closes; the sender must not write the next batch into the
        // dead connection.
        drop(first);
        sender.send(&[b"two".to_vec()]).await.expect("sent");
        let (mut second, _) = listener.accept().await.expect("a new connection");
        second.read_exact(&mut bytes).await.expect("frame");
        assert_eq!(&bytes, b"3 two");
    }
}
