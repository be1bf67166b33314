//! The configuration: the effect is serving the device's rendered configuration,
//! 304 when the device holds it already, waiting for a change on long-poll.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use flotta_core::enrolment::{
    CONTROL_PENDING_HEADER, DeviceRecord, Directive, Effect, Failure, REPORT_WANTED_HEADER,
    config_status,
};
use flotta_core::pki::PeerIdentity;
use flotta_core::wire::{self, MessageType};
use serde_json::Value;
use time::OffsetDateTime;

use super::{ApiError, ApiResult, Peer, PeerCertificates, http_status};
use crate::edge::configs::{CachedConfig, Lookup};
use crate::edge::message;
use crate::edge::notifier::current_config;
use crate::edge::{EdgeState, MAX_WAIT};
use crate::store::LastSeen;

/// Whether an `If-None-Match` header names `version` (quoted or not, weak or not, or
/// `*`).
fn if_none_match(headers: &HeaderMap, version: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || tag.trim_matches('"') == version
        })
}

fn etag(version: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

fn not_modified(version: &str) -> Response {
    let mut response = http_status(config_status(true)).into_response();
    if let Some(tag) = etag(version).filter(|_| !version.is_empty()) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// Whether the device is to keep what it runs: it names the version served, or
/// nothing can be served (the rendering has errors and no good configuration is
/// known; core's [`flotta_core::reconcile::ServedConfig::decide`]).
fn unchanged(headers: &HeaderMap, config: &CachedConfig) -> bool {
    config.content.is_none() || if_none_match(headers, &config.version)
}

/// A `200` carrying `config` in a `data` message with directive `device`: the
/// envelope is fresh (message id, time), the content is the cached serialization.
fn config_response(config: &CachedConfig) -> Response {
    let Some(content) = &config.content else {
        return not_modified(&config.version);
    };
    let envelope = message::reply(MessageType::Data, wire::directive::DEVICE, Value::Null);
    let Ok(mut body) = serde_json::to_vec(&envelope) else {
        return ApiError::failed(Failure::Internal, "the reply envelope could not be encoded")
            .into_response();
    };
    // The envelope has no content: splice the cached one in before its closing brace.
    if body.pop() != Some(b'}') {
        return ApiError::failed(Failure::Internal, "the reply envelope is not a JSON object")
            .into_response();
    }
    if body.len() > 1 {
        body.push(b',');
    }
    body.extend_from_slice(b"\"content\":");
    body.extend_from_slice(content);
    body.push(b'}');
    let mut response = (
        http_status(config_status(false)),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(tag) = etag(&config.version) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// The device's configuration: from the in-memory view, or from the store when the
/// view does not know the device.
async fn device_config(
    state: &EdgeState,
    namespace: &str,
    device_id: &str,
) -> Result<Option<Arc<CachedConfig>>, ApiError> {
    let configs = &state.inner.configs;
    match configs.config(namespace, device_id) {
        Lookup::Config(config) => Ok(Some(config)),
        Lookup::NotLive | Lookup::Unknown => {
            configs.note_store_read();
            let rendered = current_config(state.store().as_ref(), namespace, device_id)
                .await
                .map_err(|e| ApiError::store("render", &e))?;
            // No last good configuration is known on this path: a rendering with
            // errors serves nothing, and the device keeps what it runs.
            Ok(
                rendered
                    .map(|(_, rendered)| Arc::new(CachedConfig::from_rendered(&rendered, None))),
            )
        }
    }
}

/// `GET /data/{device_id}/in`: the device's configuration, with ETags and
/// long-poll (`?wait=SECONDS`). A refusal has no body (see
/// [`ApiError::without_body`]).
pub(super) async fn get_data(
    State(state): State<EdgeState>,
    Path(device_id): Path<String>,
    Peer(peer): Peer,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    serve_config(&state, &device_id, &peer, &query, &headers)
        .await
        .unwrap_or_else(ApiError::without_body)
}

async fn serve_config(
    state: &EdgeState,
    device_id: &str,
    peer: &PeerCertificates,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> ApiResult {
    let who = state.authorise(peer, Some(Directive::Device), device_id, None)?;
    let PeerIdentity::Device { namespace, .. } = &who.identity else {
        return Err(ApiError::failed(
            Failure::Internal,
            "a configuration poll was authorised without a device certificate",
        ));
    };
    let wait = match query.get("wait") {
        None => Duration::ZERO,
        Some(text) => {
            let seconds: u64 = text.parse().map_err(|_| {
                ApiError::failed(
                    Failure::BadContent,
                    format!("wait: {text:?} is not a whole number of seconds"),
                )
            })?;
            Duration::from_secs(seconds).min(MAX_WAIT)
        }
    };
    // Subscribe before reading, so that a change landing between the read and the
    // wait still wakes us.
    let mut changes =
        (!wait.is_zero()).then(|| state.inner.notifier.subscribe(namespace, device_id));
    let config = device_config(state, namespace, device_id).await?;
    let record = if config.is_some() {
        DeviceRecord::Registered
    } else {
        DeviceRecord::Unknown
    };
    let decision = who.answer(state, Directive::Device, record)?;
    let Some(config) = config.filter(|_| decision.effect == Effect::ServeConfig) else {
        return Ok(http_status(decision.status).into_response());
    };
    // The poll shows the device alive: stamped when it arrives, and again when a
    // long-poll is answered.
    let stamp = || stamp_last_seen(state, namespace, device_id, decision.effect);
    let report_wanted = |config: &CachedConfig| {
        let judged = state.inner.device_statuses.get(namespace, device_id);
        config
            .served
            .wants_report(judged.and_then(|j| j.judged).as_ref().map(|j| &j.served))
    };
    let signal = |response: Response, config: &CachedConfig| {
        with_signals(response, who.command.is_some(), report_wanted(config))
    };
    stamp().await;
    if !unchanged(headers, &config) {
        return Ok(signal(config_response(&config), &config));
    }
    // A poll that arrives while a report is wanted still waits (its answer carries
    // the mark): answering it at once would spin a client that ignores the mark
    // until its next heartbeat.
    let Some(changes) = changes.as_mut() else {
        return Ok(signal(not_modified(&config.version), &config));
    };
    let mut version = config.version.clone();
    let mut config = config;
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = state.shutdown_signal();
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if !changed {
                    stamp().await;
                    return Ok(signal(not_modified(&version), &config));
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                stamp().await;
                return Ok(signal(not_modified(&version), &config));
            }
            () = crate::edge::stopped(&mut shutdown) => {
                return Ok(signal(not_modified(&version), &config));
            }
        }
        config = device_config(state, namespace, device_id)
            .await?
            .ok_or_else(|| ApiError::no_such_device(namespace, device_id))?;
        if !unchanged(headers, &config) {
            stamp().await;
            return Ok(signal(config_response(&config), &config));
        }
        // Woken for the same version, served for other reasons (a set revision, a
        // spec error): the device is to report now.
        if report_wanted(&config) {
            stamp().await;
            return Ok(signal(not_modified(&config.version), &config));
        }
        version.clone_from(&config.version);
    }
}

/// Stamps the device's last-seen time when core says the effect proves it alive
/// ([`Effect::stamps_last_seen`]), group-committed with the heartbeats'. The
/// configuration is served even when the write fails: the device then shows as
/// unseen, which is what the store knows.
async fn stamp_last_seen(state: &EdgeState, namespace: &str, device_id: &str, effect: Effect) {
    if !effect.stamps_last_seen() {
        return;
    }
    let seen = LastSeen {
        namespace: namespace.to_owned(),
        device: device_id.to_owned(),
        seen_at: OffsetDateTime::now_utc(),
    };
    if let Err(error) = state.inner.last_seen.record(seen).await {
        tracing::warn!(namespace, device = device_id, %error, "could not stamp last-seen on a configuration poll");
    }
}

/// Marks `response` with [`CONTROL_PENDING_HEADER`] when a control command waits
/// for the device, and with [`REPORT_WANTED_HEADER`] when the server wants a
/// heartbeat now.
fn with_signals(mut response: Response, control_pending: bool, report_wanted: bool) -> Response {
    if control_pending {
        response.headers_mut().insert(
            HeaderName::from_static(CONTROL_PENDING_HEADER),
            HeaderValue::from_static("pending"),
        );
    }
    if report_wanted {
        response.headers_mut().insert(
            HeaderName::from_static(REPORT_WANTED_HEADER),
            HeaderValue::from_static("wanted"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let mut headers = HeaderMap::new();
        assert!(!if_none_match(&headers, "abc"));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(if_none_match(&headers, "abc"));
        assert!(!if_none_match(&headers, "ab"));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("abc"));
        assert!(if_none_match(&headers, "abc"));
    }
}
