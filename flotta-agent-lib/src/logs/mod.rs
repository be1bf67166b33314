//! Log forwarding: workload logs to syslog servers, as the configuration's
//! `logCollection` asks (see `docs/observability.md`).
//!
//! The rooms, from the leaves up:
//! - [`plan`]: what a configuration asks ([`LogsPlan`]), or why it cannot be done;
//! - [`tail`]: a log file followed from a persisted cursor, the backlog bounded;
//! - [`cri_message`]: the message of a line in the CRI log format (podman's
//!   `k8s-file` logs);
//! - [`syslog`]: RFC 5424 messages, octet-counted over TCP or datagrams over UDP.
//!
//! The agent composes them in its logs loop: for each forwarded workload, each
//! container's log file (from [`WorkloadRuntime::log_files`]) is read from its
//! cursor, sent, and the cursor committed once sent.
//!
//! [`WorkloadRuntime::log_files`]: crate::runtime::WorkloadRuntime::log_files

mod cri;
pub mod plan;
pub mod syslog;
pub mod tail;

pub use cri::cri_message;
pub use plan::{LogForward, LogsPlan, SyslogTarget, Transport};
pub use syslog::{Origin, SyslogSender};
pub use tail::{Cursor, Tail};
