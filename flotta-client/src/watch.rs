//! Watch streams that survive disconnects: they resume from the last resource
//! version seen, and relist when the server no longer has it (410 Gone).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::Duration;

use futures::stream::{BoxStream, Stream, StreamExt};
use serde_json::Value;

use crate::error::{ClientError, ClientResult};
use crate::management::{ApiObject, ListParams, ManagementClient, ResourceType, decode};

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<T> {
    /// The object was created (or existed when the watch started).
    Added(T),
    /// The object changed.
    Modified(T),
    /// The object was removed; this is its last state.
    Deleted(T),
    /// The server had forgotten the resource version the watch was at (410 Gone):
    /// the watch listed everything again and these are all current objects. Events
    /// between the last one seen and this list may be missing; treat this as the
    /// new full state.
    Restarted(Vec<T>),
}

impl<T> WatchEvent<T> {
    /// The Kubernetes event type: `ADDED`, `MODIFIED`, `DELETED`, or `RESTARTED`.
    pub fn type_name(&self) -> &'static str {
        match self {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Restarted(_) => "RESTARTED",
        }
    }
}

type ByteStream = BoxStream<'static, Result<Vec<u8>, reqwest::Error>>;

/// Longest line a watch accepts (one object), to bound memory on a bad server.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

struct WatchState<T> {
    client: ManagementClient,
    resource: ResourceType,
    namespace: Option<String>,
    params: ListParams,
    resource_version: Option<String>,
    body: Option<ByteStream>,
    buffer: Vec<u8>,
    pending: VecDeque<ClientResult<WatchEvent<Value>>>,
    must_relist: bool,
    failures: u32,
    finished: bool,
    _type: PhantomData<fn() -> T>,
}

impl ManagementClient {
    /// Watches objects of `T` in `namespace` (`None`: every namespace) matching the
    /// selectors in `params` (its `limit` and `continue_token` are ignored).
    ///
    /// The stream starts with an [`WatchEvent::Added`] for every current object,
    /// then follows changes. When the connection drops (server restart, network), it
    /// reconnects with jittered backoff and resumes from the last resource version
    /// it saw; when the server answers 410 Gone, it lists again and yields
    /// [`WatchEvent::Restarted`]. Transient failures are yielded as `Err` items
    /// and the stream goes on; it ends after an error that retrying cannot fix
    /// (e.g. 401, 403, a bad selector).
    pub fn watch<T: ApiObject>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> impl Stream<Item = ClientResult<WatchEvent<T>>> + Send + 'static {
        self.watch_raw(ResourceType::of::<T>(), namespace, params)
            .map(|event| {
                event.and_then(|event| {
                    let what = "watched object";
                    Ok(match event {
                        WatchEvent::Added(v) => WatchEvent::Added(decode(v, what)?),
                        WatchEvent::Modified(v) => WatchEvent::Modified(decode(v, what)?),
                        WatchEvent::Deleted(v) => WatchEvent::Deleted(decode(v, what)?),
                        WatchEvent::Restarted(items) => WatchEvent::Restarted(
                            items
                                .into_iter()
                                .map(|v| decode(v, what))
                                .collect::<ClientResult<_>>()?,
                        ),
                    })
                })
            })
    }

    /// [`ManagementClient::watch`] over JSON objects of a resource type named at run
    /// time.
    pub fn watch_raw(
        &self,
        resource: ResourceType,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> impl Stream<Item = ClientResult<WatchEvent<Value>>> + Send + 'static {
        let state = WatchState::<Value> {
            client: self.clone(),
            resource,
            namespace: namespace.map(str::to_owned),
            params: ListParams {
                limit: None,
                continue_token: None,
                ..params.clone()
            },
            resource_version: None,
            body: None,
            buffer: Vec::new(),
            pending: VecDeque::new(),
            must_relist: false,
            failures: 0,
            finished: false,
            _type: PhantomData,
        };
        futures::stream::unfold(state, |mut state| async move {
            let item = state.next_event().await?;
            Some((item, state))
        })
    }
}

impl WatchState<Value> {
    async fn next_event(&mut self) -> Option<ClientResult<WatchEvent<Value>>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.finished {
                return None;
            }
            if self.must_relist {
                match self.relist().await {
                    Ok(items) => {
                        self.must_relist = false;
                        self.failures = 0;
                        return Some(Ok(WatchEvent::Restarted(items)));
                    }
                    Err(error) => {
                        if let Some(item) = self.failed(error).await {
                            return Some(item);
                        }
                        continue;
                    }
                }
            }
            let Some(body) = self.body.as_mut() else {
                match self.connect().await {
                    Ok(body) => self.body = Some(body),
                    Err(error) if error.status() == Some(410) => self.must_relist = true,
                    Err(error) => {
                        if let Some(item) = self.failed(error).await {
                            return Some(item);
                        }
                    }
                }
                continue;
            };
            match body.next().await {
                Some(Ok(chunk)) => {
                    self.failures = 0;
                    self.buffer.extend_from_slice(&chunk);
                    self.take_lines();
                }
                Some(Err(error)) => {
                    self.body = None;
                    self.buffer.clear();
                    let url = self.client.server().to_owned();
                    if let Some(item) = self.failed(ClientError::from_reqwest(&url, error)).await {
                        return Some(item);
                    }
                }
                None => {
                    // The server ended the stream (timeout, shutdown): resume.
                    self.body = None;
                    self.buffer.clear();
                    tokio::time::sleep(self.client.retry_policy().wait(0)).await;
                }
            }
        }
    }

    /// After a failure: a retryable one is reported and retried after a backoff;
    /// any other ends the stream.
    async fn failed(&mut self, error: ClientError) -> Option<ClientResult<WatchEvent<Value>>> {
        if error.is_retryable() {
            let delay = self.client.retry_policy().wait(self.failures.min(16));
            self.failures = self.failures.saturating_add(1);
            tokio::time::sleep(delay.max(Duration::from_millis(10))).await;
        } else {
            self.finished = true;
        }
        Some(Err(error))
    }

    async fn connect(&mut self) -> ClientResult<ByteStream> {
        let path = self
            .client
            .collection_path(self.resource, self.namespace.as_deref())?;
        let mut query = vec![("watch", "true".to_owned())];
        if let Some(s) = &self.params.label_selector {
            query.push(("labelSelector", s.clone()));
        }
        if let Some(s) = &self.params.field_selector {
            query.push(("fieldSelector", s.clone()));
        }
        if let Some(rv) = &self.resource_version {
            query.push(("resourceVersion", rv.clone()));
        }
        let response = self.client.open_watch(&path, &query).await?;
        Ok(response
            .bytes_stream()
            .map(|chunk| chunk.map(|bytes| bytes.to_vec()))
            .boxed())
    }

    async fn relist(&mut self) -> ClientResult<Vec<Value>> {
        let mut params = self.params.clone();
        let mut items = Vec::new();
        loop {
            let page = self
                .client
                .list_raw(self.resource, self.namespace.as_deref(), &params)
                .await?;
            if params.continue_token.is_none() {
                self.resource_version = page.resource_version.clone();
            }
            items.extend(page.items);
            match page.continue_token {
                Some(token) => params.continue_token = Some(token),
                None => break,
            }
        }
        self.body = None;
        self.buffer.clear();
        Ok(items)
    }

    /// Moves every complete line of the buffer into `pending`.
    fn take_lines(&mut self) {
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            self.parse_line(line);
            if self.body.is_none() {
                return;
            }
        }
        if self.buffer.len() > MAX_LINE_BYTES {
            self.buffer.clear();
            self.body = None;
            self.pending.push_back(Err(ClientError::Decode {
                what: "watch event".into(),
                message: format!("line longer than {MAX_LINE_BYTES} bytes"),
            }));
        }
    }

    fn parse_line(&mut self, line: &[u8]) {
        let event: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                self.pending.push_back(Err(ClientError::Decode {
                    what: "watch event".into(),
                    message: e.to_string(),
                }));
                return;
            }
        };
        let event_type = event.get("type").and_then(Value::as_str).unwrap_or("");
        let object = event.get("object").cloned().unwrap_or(Value::Null);
        if event_type == "ERROR" {
            let code = object.get("code").and_then(Value::as_u64).unwrap_or(0);
            // The stream is over either way: reconnect (or relist on 410).
            self.body = None;
            self.buffer.clear();
            if code == 410 {
                self.must_relist = true;
            } else {
                let text = |k: &str| {
                    object
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                self.pending.push_back(Err(ClientError::Api {
                    method: "GET".into(),
                    path: "watch".into(),
                    status: u16::try_from(code).unwrap_or(500),
                    reason: text("reason"),
                    message: text("message"),
                }));
            }
            return;
        }
        if let Some(rv) = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            // Initial ADDED events come in name order, not version order: keep the
            // highest so that a resume never replays what was seen.
            let newer = match (self.resource_version.as_deref(), rv.parse::<u64>()) {
                (Some(seen), Ok(rv)) => seen.parse::<u64>().map_or(true, |seen| rv > seen),
                _ => true,
            };
            if newer {
                self.resource_version = Some(rv.to_owned());
            }
        }
        let event = match event_type {
            "ADDED" => WatchEvent::Added(object),
            "MODIFIED" => WatchEvent::Modified(object),
            "DELETED" => WatchEvent::Deleted(object),
            // Bookmarks and future event types only move the resource version.
            _ => return,
        };
        self.pending.push_back(Ok(event));
    }
}
