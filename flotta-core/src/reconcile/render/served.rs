//! What a device is sent when its fresh rendering has errors: [`ServedConfig`],
//! decided from the rendering and the last good configuration.

use std::collections::BTreeMap;

use super::{ProblemReason, RenderedConfig};

/// Which configuration a device is sent (see [`ServedConfig::decide`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServedSource {
    /// The configuration just rendered.
    Rendered,
    /// The rendering has errors: the last configuration rendered without any.
    LastGood,
    /// The rendering has errors and no good configuration is known (a new device,
    /// or a server that restarted): nothing is sent, the device keeps what it runs.
    Nothing,
}

/// What the server sends a device and what it knows about it: the decision
/// [`ServedConfig::decide`] makes from a fresh rendering and the last good one.
/// Device conditions ([`crate::reconcile::device_conditions`]) and the revisions a Flotta
/// agent is taken to run ([`crate::reconcile::device_status_from_heartbeat`]) are read from it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServedConfig {
    /// Which configuration is sent.
    pub source: Option<ServedSource>,
    /// Version of the configuration sent; `None` when nothing is sent.
    pub version: Option<String>,
    /// Revision of each workload in the configuration sent, by name.
    pub revisions: BTreeMap<String, String>,
    /// Revision of the device set in the configuration sent, when known.
    pub device_set_revision: Option<String>,
    /// Heartbeat period of the configuration sent.
    pub heartbeat_period_seconds: i64,
    /// Why the fresh rendering is unfit to send (first reason, every message).
    pub spec_error: Option<(ProblemReason, String)>,
    /// Several sets claim the device (which one applies, which do not).
    pub owners_warning: Option<String>,
}

impl ServedConfig {
    /// Whether a device whose status was last judged against `judged` is to be
    /// asked for a report now that the server serves `self`: a device that sends
    /// heartbeats only when its own report changes keeps a status that was judged
    /// against what it was served then, so when the served summary changes
    /// without the device getting a new version (a set revision over identical
    /// content, a spec error while the last good version stays served, a second
    /// owning set), its conditions and revisions are out of date until it
    /// reports again. Unknown (`None`): nothing to compare, no request.
    pub fn wants_report(&self, judged: Option<&ServedConfig>) -> bool {
        judged.is_some_and(|judged| judged != self)
    }

    /// A configuration rendered without errors, served as it is.
    pub fn good(rendered: &RenderedConfig) -> Self {
        Self {
            source: Some(ServedSource::Rendered),
            version: Some(rendered.version.to_string()),
            revisions: rendered.workload_revisions(),
            device_set_revision: rendered.device_set_revision.clone(),
            heartbeat_period_seconds: rendered.heartbeat_period_seconds(),
            spec_error: rendered.spec_error(),
            owners_warning: rendered.owners_warning().map(str::to_owned),
        }
    }

    /// Decides what a device is sent: `rendered` when it has no errors (see
    /// [`RenderedConfig::has_errors`]), else `last_good` (the served summary of the
    /// last rendering without errors) when there is one, else nothing. The spec
    /// error and the owners warning always describe `rendered`.
    pub fn decide(rendered: &RenderedConfig, last_good: Option<&ServedConfig>) -> Self {
        if !rendered.has_errors() {
            return Self::good(rendered);
        }
        let spec_error = rendered.spec_error();
        let owners_warning = rendered.owners_warning().map(str::to_owned);
        match last_good.filter(|g| g.version.is_some() && g.spec_error.is_none()) {
            Some(good) => Self {
                source: Some(ServedSource::LastGood),
                version: good.version.clone(),
                revisions: good.revisions.clone(),
                device_set_revision: good.device_set_revision.clone(),
                heartbeat_period_seconds: good.heartbeat_period_seconds,
                spec_error,
                owners_warning,
            },
            None => Self {
                source: Some(ServedSource::Nothing),
                version: None,
                revisions: BTreeMap::new(),
                device_set_revision: None,
                heartbeat_period_seconds: rendered.heartbeat_period_seconds(),
                spec_error,
                owners_warning,
            },
        }
    }
}
