//! What the configuration asks of log forwarding ([`LogsPlan`]): which workloads'
//! logs go to which syslog server, with the defaults filled in, or why the
//! configuration cannot be carried out.
//!
//! The device's `logCollection` map names targets (`kind: syslog`, `bufferSize` in
//! MiB, the `syslogConfig` ConfigMap the server resolved to `address` and
//! `protocol`); a workload's `logCollection` names the target its logs go to.

use std::collections::BTreeMap;

use flotta_core::wire::{DeviceConfigurationMessage, LogsCollectionInformation};

/// Backlog bound in MiB of a target whose `bufferSize` is unset or not positive
/// (the CRD's default).
pub const DEFAULT_BUFFER_MIB: u64 = 12;
/// The longest line sent; longer lines are cut there and marked.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Lines per second each workload container may send at most; lines beyond wait
/// in the log file (the backlog), bounded by the target's buffer size.
pub const MAX_LINES_PER_SECOND: u32 = 1_000;

/// How lines reach a syslog server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// RFC 5425-style octet-counted frames over TCP (RFC 6587 §3.4.1).
    Tcp,
    /// One datagram per message (RFC 5426).
    Udp,
    /// Octet-counted frames over TLS (RFC 5425), the server's certificate checked
    /// against the target's CA.
    Tls,
}

impl Transport {
    fn parse(protocol: Option<&str>) -> Result<Self, String> {
        match protocol.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("tcp") => Ok(Transport::Tcp),
            Some("udp") => Ok(Transport::Udp),
            Some("tls") => Ok(Transport::Tls),
            Some(other) => Err(format!(
                "protocol {other:?} is not supported: use tcp, udp or tls"
            )),
        }
    }
}

/// A syslog server logs go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    /// The `logCollection` entry's name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// How lines travel.
    pub transport: Transport,
    /// PEM CA certificates the server's certificate is checked with (`tls`).
    pub ca_pem: Option<String>,
    /// Most bytes of unsent log kept per container; older lines are skipped
    /// (and counted) beyond it.
    pub buffer_bytes: u64,
}

/// One workload whose logs are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogForward {
    /// The workload's name.
    pub workload: String,
    /// Where its lines go.
    pub target: SyslogTarget,
}

/// Every forwarding the configuration asks, sorted by workload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogsPlan {
    /// One entry per workload with a `logCollection`.
    pub forwards: Vec<LogForward>,
}

impl LogsPlan {
    /// The plan of `message`, or every reason it cannot be carried out (a workload
    /// naming a target the device does not define, a kind other than `syslog`, a
    /// missing address, an unknown protocol), each naming the field at fault.
    /// Targets no workload uses are checked too: a broken target is a broken
    /// configuration.
    pub fn from_message(message: &DeviceConfigurationMessage) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut targets = BTreeMap::new();
        let defined = message
            .configuration
            .as_ref()
            .and_then(|c| c.log_collection.as_ref());
        for (name, target) in defined.into_iter().flatten() {
            match target_of(name, target) {
                Ok(target) => {
                    targets.insert(name.clone(), target);
                }
                Err(problem) => problems.push(format!("logCollection.{name}: {problem}")),
            }
        }
        let mut forwards = Vec::new();
        for workload in message.workloads.iter().flatten() {
            let (Some(name), Some(wanted)) = (&workload.name, &workload.log_collection) else {
                continue;
            };
            if wanted.is_empty() {
                continue;
            }
            match targets.get(wanted) {
                Some(target) => forwards.push(LogForward {
                    workload: name.clone(),
                    target: target.clone(),
                }),
                None if defined.is_some_and(|d| d.contains_key(wanted)) => {}
                None => problems.push(format!(
                    "workload {name}: logCollection {wanted:?} is not defined in the device's logCollection"
                )),
            }
        }
        forwards.sort_by(|a, b| a.workload.cmp(&b.workload));
        if problems.is_empty() {
            Ok(Self { forwards })
        } else {
            Err(problems)
        }
    }

    /// Whether nothing is forwarded.
    pub fn is_empty(&self) -> bool {
        self.forwards.is_empty()
    }
}

fn target_of(name: &str, target: &LogsCollectionInformation) -> Result<SyslogTarget, String> {
    match target.kind.as_deref() {
        None | Some("syslog") => {}
        Some(other) => return Err(format!("kind {other:?} is not supported: use syslog")),
    }
    let config = target
        .syslog_config
        .as_ref()
        .ok_or("syslogConfig is missing")?;
    let address = config
        .address
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or("syslogConfig has no Address (host:port)")?;
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
        _ => return Err(format!("syslogConfig Address {address:?} is not host:port")),
    }
    let transport =
        Transport::parse(config.protocol.as_deref()).map_err(|e| format!("syslogConfig {e}"))?;
    let ca_pem = config.ca_cert.clone().filter(|c| !c.trim().is_empty());
    if transport == Transport::Tls {
        let Some(ca) = &ca_pem else {
            return Err(
                "syslogConfig protocol tls needs the server's CA certificates (ConfigMap key CA)"
                    .into(),
            );
        };
        if let Err(error) = flotta_client::tls_client_config(ca, None) {
            return Err(format!("syslogConfig CA: {error}"));
        }
    }
    let mib = target
        .buffer_size
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_BUFFER_MIB);
    Ok(SyslogTarget {
        name: name.to_owned(),
        address: address.to_owned(),
        transport,
        ca_pem,
        buffer_bytes: mib.saturating_mul(1024 * 1024),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotta_core::wire::{DeviceConfiguration, SyslogConfig, Workload};

    /// A target: name, kind, address, protocol.
    type Target<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn message(
        targets: &[Target<'_>],
        workloads: &[(&str, Option<&str>)],
    ) -> DeviceConfigurationMessage {
        DeviceConfigurationMessage {
            configuration: Some(DeviceConfiguration {
                log_collection: Some(
                    targets
                        .iter()
                        .map(|(name, kind, address, protocol)| {
                            (
                                (*name).to_owned(),
                                LogsCollectionInformation {
                                    kind: kind.map(str::to_owned),
                                    buffer_size: Some(1),
                                    syslog_config: Some(SyslogConfig {
                                        address: address.map(str::to_owned),
                                        protocol: protocol.map(str::to_owned),
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                },
                            )
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            workloads: Some(
                workloads
                    .iter()
                    .map(|(name, target)| Workload {
                        name: Some((*name).to_owned()),
                        log_collection: target.map(str::to_owned),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn workloads_naming_a_target_are_forwarded_to_it() {
        let plan = LogsPlan::from_message(&message(
            &[("syslog", Some("syslog"), Some("127.0.0.1:514"), Some("UDP"))],
            &[("web", Some("syslog")), ("quiet", None)],
        ))
        .expect("plan");
        assert_eq!(plan.forwards.len(), 1);
        assert_eq!(plan.forwards[0].workload, "web");
        assert_eq!(plan.forwards[0].target.transport, Transport::Udp);
        assert_eq!(plan.forwards[0].target.buffer_bytes, 1024 * 1024);
    }

    #[test]
    fn what_cannot_be_carried_out_is_named() {
        let problems = LogsPlan::from_message(&message(
            &[
                ("journal", Some("journald"), Some("h:1"), None),
                ("noport", None, Some("loghost"), None),
                ("tls", None, Some("h:6514"), Some("relp")),
            ],
            &[("web", Some("missing"))],
        ))
        .expect_err("refused");
        let all = problems.join("\n");
        assert!(
            all.contains("logCollection.journal: kind \"journald\""),
            "{all}"
        );
        assert!(
            all.contains("logCollection.noport: syslogConfig Address \"loghost\""),
            "{all}"
        );
        assert!(
            all.contains("logCollection.tls: syslogConfig protocol \"relp\""),
            "{all}"
        );
        assert!(
            all.contains("workload web: logCollection \"missing\""),
            "{all}"
        );
        assert_eq!(problems.len(), 4, "{all}");
        let problems = LogsPlan::from_message(&message(
            &[("secure", None, Some("h:6514"), Some("tls"))],
            &[],
        ))
        .expect_err("tls without a CA");
        assert_eq!(
            problems,
            [
                "logCollection.secure: syslogConfig protocol tls needs the server's CA certificates (ConfigMap key CA)"
            ]
        );
    }

    #[test]
    fn no_log_collection_is_an_empty_plan() {
        let plan = LogsPlan::from_message(&DeviceConfigurationMessage::default()).expect("plan");
        assert!(plan.is_empty());
    }
}
