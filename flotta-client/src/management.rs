//! The management API client: typed CRUD, lists with selectors and pages, watch.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotta_core::kind::ResourceKind;
use flotta_core::model::{EdgeDeviceSignedRequest, Event, Resource};
use flotta_core::paths::MANAGEMENT_PREFIX;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{ClientConfig, load_config};
use crate::error::{ClientError, ClientResult};
use crate::retry::{RetryPolicy, is_idempotent};
use crate::tls::client_config;

/// Path prefix of the flotta API group and version.
pub const API_PREFIX: &str = flotta_core::paths::MANAGEMENT_PREFIX;

/// Default timeout of one request (watch streams excepted).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default timeout of establishing a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A resource type the client can send and receive: any of the [`Resource`]s
/// (flotta's four kinds and Kubernetes' `Event`).
pub trait ApiObject: Resource + Serialize + DeserializeOwned + Clone + Send + 'static {}

impl<T: Resource + Serialize + DeserializeOwned + Clone + Send + 'static> ApiObject for T {}

/// A resource type named at run time (the command line picks one from user input):
/// the kind table's key, [`flotta_core::kind::ResourceKind`], under the name this
/// client has always used. `ResourceType::of::<T>()`, `ResourceType::all()` and
/// `ResourceType::from_kind("EdgeDevice")` keep working; the plural is
/// [`ResourceKind::plural`].
pub type ResourceType = ResourceKind;

/// Options of a list or watch request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Label selector, e.g. `site=lab,tier!=db`.
    pub label_selector: Option<String>,
    /// Field selector, e.g. `metadata.name=edge-01`.
    pub field_selector: Option<String>,
    /// At most this many objects per page.
    pub limit: Option<u32>,
    /// The continue token of the previous page.
    pub continue_token: Option<String>,
}

impl ListParams {
    /// Selects by labels.
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Selects by fields.
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    /// Selects the events about one object, e.g. `(ResourceKind::EdgeDevice,
    /// "edge-01")`: a field selector on `involvedObject.kind` and
    /// `involvedObject.name`, added to any field selector already set.
    ///
    /// ```
    /// use flotta_client::{ListParams, ResourceType};
    ///
    /// let params = ListParams::default().involving(ResourceType::EdgeDevice, "edge-01");
    /// assert_eq!(
    ///     params.field_selector.as_deref(),
    ///     Some("involvedObject.kind=EdgeDevice,involvedObject.name=edge-01")
    /// );
    /// ```
    pub fn involving(mut self, kind: ResourceKind, name: &str) -> Self {
        let involved = format!("involvedObject.kind={kind},involvedObject.name={name}");
        self.field_selector = Some(match self.field_selector.take() {
            Some(other) if !other.is_empty() => format!("{other},{involved}"),
            _ => involved,
        });
        self
    }

    /// Asks for pages of at most `limit` objects.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Continues a paged list.
    pub fn continue_from(mut self, token: impl Into<String>) -> Self {
        self.continue_token = Some(token.into());
        self
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(s) = &self.label_selector {
            query.push(("labelSelector", s.clone()));
        }
        if let Some(s) = &self.field_selector {
            query.push(("fieldSelector", s.clone()));
        }
        if let Some(limit) = self.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(token) = &self.continue_token {
            query.push(("continue", token.clone()));
        }
        query
    }
}

/// Options of a write (create, replace, delete).
///
/// ```
/// use flotta_client::WriteParams;
///
/// assert!(WriteParams::dry_run().dry_run);
/// assert!(!WriteParams::default().dry_run);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteParams {
    /// Send the write with `dryRun=All`: the server checks and admits it as it
    /// would, answers with the object it would store, and stores nothing.
    pub dry_run: bool,
}

impl WriteParams {
    /// A server-side dry run (`dryRun=All`).
    pub fn dry_run() -> Self {
        WriteParams { dry_run: true }
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        if self.dry_run {
            vec![("dryRun", "All".into())]
        } else {
            Vec::new()
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectList<T> {
    /// The objects of this page.
    pub items: Vec<T>,
    /// Resource version the list was read at: watch from it to follow changes.
    pub resource_version: Option<String>,
    /// Present when more objects follow: pass it to [`ListParams::continue_from`].
    pub continue_token: Option<String>,
}

/// Builds a [`ManagementClient`] from a URL, a token and the server's CA.
#[derive(Debug, Clone)]
pub struct ManagementClientBuilder {
    server: String,
    token: Option<String>,
    ca_pem: Option<String>,
    retry: RetryPolicy,
    timeout: Duration,
    connect_timeout: Duration,
}

impl ManagementClientBuilder {
    /// The bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// PEM of the CA that signs the server's certificate (required: the client
    /// trusts nothing else).
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// How idempotent requests are retried (default: [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Timeout of one request (default [`DEFAULT_TIMEOUT`]); watch streams have none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout of establishing a connection (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Builds the client.
    pub fn build(self) -> ClientResult<ManagementClient> {
        let base = normalize_base_url(&self.server)?;
        let ca_pem = self.ca_pem.ok_or_else(|| {
            ClientError::invalid_config("no CA certificate (certificateAuthority)")
        })?;
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ClientError::invalid_config("no bearer token (token)"))?;
        let tls = client_config(&ca_pem, None)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ClientError::Tls {
                what: "HTTP client".into(),
                source: Some(Box::new(e)),
            })?;
        Ok(ManagementClient {
            inner: Arc::new(Inner {
                http,
                base,
                token,
                retry: self.retry,
                timeout: self.timeout,
            }),
        })
    }
}

/// Checks a base URL is `https://host[:port]` and drops a trailing slash.
pub(crate) fn normalize_base_url(url: &str) -> ClientResult<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed)
        .map_err(|e| ClientError::invalid_config(format!("server URL {url:?}: {e}")))?;
    if parsed.scheme() != "https" {
        return Err(ClientError::invalid_config(format!(
            "server URL {url:?}: only https is supported"
        )));
    }
    if parsed.host_str().is_none() {
        return Err(ClientError::invalid_config(format!(
            "server URL {url:?}: no host"
        )));
    }
    Ok(trimmed.to_owned())
}

struct Inner {
    http: reqwest::Client,
    base: String,
    token: String,
    retry: RetryPolicy,
    timeout: Duration,
}

/// A client of the management API. Cheap to clone: clones share one connection
/// pool.
///
/// Namespaced calls take the namespace first; list and watch take `None` for every
/// namespace.
#[derive(Clone)]
pub struct ManagementClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ManagementClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementClient")
            .field("server", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// What the body of a request is.
pub(crate) enum Body<'a> {
    None,
    Json(&'a Value),
    MergePatch(&'a Value),
    /// A server-side apply configuration (JSON is YAML).
    Apply(&'a Value),
}

impl ManagementClient {
    /// Starts building a client for the management API at `server`
    /// (`https://host:port`).
    pub fn builder(server: impl Into<String>) -> ManagementClientBuilder {
        ManagementClientBuilder {
            server: server.into(),
            token: None,
            ca_pem: None,
            retry: RetryPolicy::default(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// A client configured by a [`ClientConfig`].
    pub fn from_config(config: &ClientConfig) -> ClientResult<Self> {
        Self::builder(config.server.clone())
            .token(config.token.clone())
            .ca_pem(config.certificate_authority.clone())
            .build()
    }

    /// A client configured by an `admin.yaml` file.
    pub fn from_config_file(path: impl AsRef<Path>) -> ClientResult<Self> {
        Self::from_config(&load_config(path.as_ref())?)
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.inner.base
    }

    /// The retry policy of idempotent requests.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    // ------------------------------------------------------------ typed calls

    /// Reads one object.
    pub async fn get<T: ApiObject>(&self, namespace: &str, name: &str) -> ClientResult<T> {
        let value = self
            .get_raw(ResourceType::of::<T>(), namespace, name)
            .await?;
        decode(value, &format!("{} {namespace}/{name}", T::KIND))
    }

    /// Lists one page of objects in `namespace` (`None`: every namespace).
    pub async fn list<T: ApiObject>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> ClientResult<ObjectList<T>> {
        let list = self
            .list_raw(ResourceType::of::<T>(), namespace, params)
            .await?;
        Ok(ObjectList {
            items: list
                .items
                .into_iter()
                .map(|item| decode(item, &format!("{} list item", T::KIND)))
                .collect::<ClientResult<_>>()?,
            resource_version: list.resource_version,
            continue_token: list.continue_token,
        })
    }

    /// Lists every matching object, following continue tokens page after page.
    pub async fn list_all<T: ApiObject>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> ClientResult<Vec<T>> {
        let mut params = params.clone();
        let mut items = Vec::new();
        loop {
            let page = self.list::<T>(namespace, &params).await?;
            items.extend(page.items);
            match page.continue_token {
                Some(token) if !token.is_empty() => params.continue_token = Some(token),
                _ => return Ok(items),
            }
        }
    }

    /// The events about object `kind` `namespace/name` (e.g. a device's failed
    /// applies and rollbacks), least recently seen first. Events are read-only:
    /// the server records them.
    pub async fn events_for(
        &self,
        namespace: &str,
        kind: ResourceKind,
        name: &str,
    ) -> ClientResult<Vec<Event>> {
        let params = ListParams::default().involving(kind, name);
        let mut events = self.list_all::<Event>(Some(namespace), &params).await?;
        events.sort_by_key(|event| event.last_timestamp.as_ref().map(|t| t.0));
        Ok(events)
    }

    /// Creates an object in `namespace` (the object's own namespace, if any, must
    /// agree).
    pub async fn create<T: ApiObject>(&self, namespace: &str, object: &T) -> ClientResult<T> {
        let body = encode(object, T::KIND)?;
        let value = self
            .create_raw(ResourceType::of::<T>(), namespace, &body)
            .await?;
        decode(value, &format!("created {}", T::KIND))
    }

    /// Replaces an object; `metadata.resourceVersion`, when set, must be current (409
    /// otherwise).
    pub async fn replace<T: ApiObject>(&self, namespace: &str, object: &T) -> ClientResult<T> {
        let name = object_name(object)?;
        let body = encode(object, T::KIND)?;
        let value = self
            .replace_raw(ResourceType::of::<T>(), namespace, &name, &body)
            .await?;
        decode(value, &format!("replaced {}", T::KIND))
    }

    /// Replaces an object's status (the `/status` subresource).
    pub async fn replace_status<T: ApiObject>(
        &self,
        namespace: &str,
        object: &T,
    ) -> ClientResult<T> {
        let name = object_name(object)?;
        let body = encode(object, T::KIND)?;
        let path = self.object_path(ResourceType::of::<T>(), namespace, &name)? + "/status";
        let value = self
            .request(Method::PUT, &path, &[], Body::Json(&body))
            .await?;
        decode(value, &format!("replaced {} status", T::KIND))
    }

    /// Applies a JSON merge patch (RFC 7396) to an object's status (the `/status`
    /// subresource).
    pub async fn patch_status<T: ApiObject>(
        &self,
        namespace: &str,
        name: &str,
        merge_patch: &Value,
    ) -> ClientResult<T> {
        let path = self.object_path(ResourceType::of::<T>(), namespace, name)? + "/status";
        let value = self
            .request(Method::PATCH, &path, &[], Body::MergePatch(merge_patch))
            .await?;
        decode(value, &format!("patched {} status", T::KIND))
    }

    /// Applies a JSON merge patch (RFC 7396) to an object.
    pub async fn patch<T: ApiObject>(
        &self,
        namespace: &str,
        name: &str,
        merge_patch: &Value,
    ) -> ClientResult<T> {
        let value = self
            .patch_raw(ResourceType::of::<T>(), namespace, name, merge_patch)
            .await?;
        decode(value, &format!("patched {}", T::KIND))
    }

    /// Deletes an object and returns its last state (or, when finalizers hold it,
    /// its state marked for deletion).
    pub async fn delete<T: ApiObject>(&self, namespace: &str, name: &str) -> ClientResult<T> {
        let value = self
            .delete_raw(ResourceType::of::<T>(), namespace, name)
            .await?;
        decode(value, &format!("deleted {}", T::KIND))
    }

    /// Approves a device's enrolment request: sets the signed request's
    /// `spec.approved` to true.
    pub async fn approve(
        &self,
        namespace: &str,
        name: &str,
    ) -> ClientResult<EdgeDeviceSignedRequest> {
        self.decide_enrolment(namespace, name, true).await
    }

    /// Denies the enrolment request `name`: `spec.approved` false and a
    /// `declined` condition (Flotta's) in its status. The device's enrolment and
    /// registration then get 403 `EnrolmentDenied`, until an [`approve`](Self::approve).
    pub async fn deny(&self, namespace: &str, name: &str) -> ClientResult<EdgeDeviceSignedRequest> {
        self.decide_enrolment(namespace, name, false).await
    }

    /// The management API's approval operation (`POST .../approval`): the server
    /// sets `spec.approved` and the `approved` or `declined` condition, with the
    /// time and the calling token, replacing the earlier decision's.
    async fn decide_enrolment(
        &self,
        namespace: &str,
        name: &str,
        approve: bool,
    ) -> ClientResult<EdgeDeviceSignedRequest> {
        let path = self.object_path(
            ResourceType::of::<EdgeDeviceSignedRequest>(),
            namespace,
            name,
        )? + "/approval";
        let body = serde_json::json!({"approved": approve});
        let value = self
            .request(Method::POST, &path, &[], Body::Json(&body))
            .await?;
        let verb = if approve { "approved" } else { "denied" };
        decode(value, &format!("{verb} EdgeDeviceSignedRequest"))
    }

    // ------------------------------------------------------------ tokens and access

    /// Creates an API token (needs a token allowed to create `tokens`, an admin's
    /// by default). `request` is the body of `POST .../tokens`: `name`, `role`,
    /// `groups`, `description`, `expiresIn` (`30d`) or `expiresAt`. The answer
    /// carries the `secret`, shown this once.
    pub async fn create_token(&self, request: &Value) -> ClientResult<Value> {
        let path = format!("{MANAGEMENT_PREFIX}/tokens");
        self.request(Method::POST, &path, &[], Body::Json(request))
            .await
    }

    /// Lists the API tokens (`items`: id, name, role, groups, createdAt, expiresAt).
    pub async fn list_tokens(&self) -> ClientResult<Value> {
        let path = format!("{MANAGEMENT_PREFIX}/tokens");
        self.request(Method::GET, &path, &[], Body::None).await
    }

    /// Deletes an API token by id.
    pub async fn delete_token(&self, id: &str) -> ClientResult<()> {
        let path = format!("{MANAGEMENT_PREFIX}/tokens/{}", path_segment("id", id)?);
        self.send(
            Method::DELETE,
            &path,
            &[],
            &Body::None,
            Some(self.inner.timeout),
        )
        .await
        .map(drop)
    }

    /// Asks whether this client's token may do what `spec` says (a
    /// `SelfSubjectAccessReview` spec: `resourceAttributes` or
    /// `nonResourceAttributes`); the answer's `status.allowed` says.
    pub async fn access_review(&self, spec: &Value) -> ClientResult<Value> {
        let body = serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": spec,
        });
        self.request(
            Method::POST,
            flotta_core::paths::SELF_SUBJECT_ACCESS_REVIEWS,
            &[],
            Body::Json(&body),
        )
        .await
    }

    // ------------------------------------------------------------ untyped calls

    /// Reads one object as JSON.
    pub async fn get_raw(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
    ) -> ClientResult<Value> {
        let path = self.object_path(resource, namespace, name)?;
        self.request(Method::GET, &path, &[], Body::None).await
    }

    /// Lists one page of objects as JSON.
    pub async fn list_raw(
        &self,
        resource: ResourceType,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> ClientResult<ObjectList<Value>> {
        let path = self.collection_path(resource, namespace)?;
        let value = self
            .request(Method::GET, &path, &params.query(), Body::None)
            .await?;
        list_from_value(value, &path)
    }

    /// Creates an object given as JSON.
    pub async fn create_raw(
        &self,
        resource: ResourceType,
        namespace: &str,
        object: &Value,
    ) -> ClientResult<Value> {
        self.create_raw_with(resource, namespace, object, WriteParams::default())
            .await
    }

    /// Creates an object given as JSON, or with [`WriteParams::dry_run`] answers
    /// what the server would store.
    pub async fn create_raw_with(
        &self,
        resource: ResourceType,
        namespace: &str,
        object: &Value,
        params: WriteParams,
    ) -> ClientResult<Value> {
        let path = self.collection_path(resource, Some(namespace))?;
        self.request(Method::POST, &path, &params.query(), Body::Json(object))
            .await
    }

    /// Replaces an object given as JSON.
    pub async fn replace_raw(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
        object: &Value,
    ) -> ClientResult<Value> {
        self.replace_raw_with(resource, namespace, name, object, WriteParams::default())
            .await
    }

    /// Replaces an object given as JSON, or with [`WriteParams::dry_run`] answers
    /// what the server would store.
    pub async fn replace_raw_with(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
        object: &Value,
        params: WriteParams,
    ) -> ClientResult<Value> {
        let path = self.object_path(resource, namespace, name)?;
        self.request(Method::PUT, &path, &params.query(), Body::Json(object))
            .await
    }

    /// Applies a JSON merge patch to an object.
    pub async fn patch_raw(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
        merge_patch: &Value,
    ) -> ClientResult<Value> {
        let path = self.object_path(resource, namespace, name)?;
        self.request(Method::PATCH, &path, &[], Body::MergePatch(merge_patch))
            .await
    }

    /// Server-side apply of `object` (JSON) to the object `name`: the fields it sets
    /// become `options.field_manager`'s; the object is created when missing. A
    /// conflict with another manager's fields is a 409 whose causes name them
    /// ([`ClientError::is_conflict`]), unless `options.force`.
    pub async fn server_side_apply_raw(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
        object: &Value,
        options: &crate::ServerSideApply,
    ) -> ClientResult<Value> {
        let path = self.object_path(resource, namespace, name)?;
        self.request(Method::PATCH, &path, &options.query(), Body::Apply(object))
            .await
    }

    /// Deletes an object.
    pub async fn delete_raw(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
    ) -> ClientResult<Value> {
        self.delete_raw_with(resource, namespace, name, WriteParams::default())
            .await
    }

    /// Deletes an object, or with [`WriteParams::dry_run`] only checks that it
    /// could be deleted.
    pub async fn delete_raw_with(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
        params: WriteParams,
    ) -> ClientResult<Value> {
        let path = self.object_path(resource, namespace, name)?;
        self.request(Method::DELETE, &path, &params.query(), Body::None)
            .await
    }

    // ------------------------------------------------------------ plumbing

    pub(crate) fn collection_path(
        &self,
        resource: ResourceType,
        namespace: Option<&str>,
    ) -> ClientResult<String> {
        Ok(match namespace {
            // Cluster-scoped kinds (ClusterRole...) live outside namespaces.
            _ if !resource.namespaced() => {
                format!("{}/{}", resource.api_prefix(), resource.plural())
            }
            None => format!("{}/{}", resource.api_prefix(), resource.plural()),
            Some(ns) => format!(
                "{}/namespaces/{}/{}",
                resource.api_prefix(),
                path_segment("namespace", ns)?,
                resource.plural()
            ),
        })
    }

    fn object_path(
        &self,
        resource: ResourceType,
        namespace: &str,
        name: &str,
    ) -> ClientResult<String> {
        Ok(format!(
            "{}/{}",
            self.collection_path(resource, Some(namespace))?,
            path_segment("name", name)?
        ))
    }

    /// Sends a request (retried when idempotent) and decodes a JSON answer.
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&'static str, String)],
        body: Body<'_>,
    ) -> ClientResult<Value> {
        let attempt = || async {
            let response = self
                .send(method.clone(), path, query, &body, Some(self.inner.timeout))
                .await?;
            let what = format!("{method} {path}");
            let bytes = response
                .bytes()
                .await
                .map_err(|e| ClientError::from_reqwest(&self.url(path), e))?;
            serde_json::from_slice::<Value>(&bytes).map_err(|e| ClientError::Decode {
                what,
                message: e.to_string(),
            })
        };
        if is_idempotent(&method) {
            self.inner.retry.run(attempt).await
        } else {
            attempt().await
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.base)
    }

    /// Sends one request; a non-2xx answer becomes [`ClientError::Api`].
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&'static str, String)],
        body: &Body<'_>,
        timeout: Option<Duration>,
    ) -> ClientResult<reqwest::Response> {
        let url = self.url(path);
        let mut request = self
            .inner
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.inner.token)
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(
                    serde_json::to_vec(value).map_err(|source| ClientError::Encode {
                        what: format!("{method} {path} body"),
                        source,
                    })?,
                ),
            Body::MergePatch(value) => request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/merge-patch+json",
                )
                .body(
                    serde_json::to_vec(value).map_err(|source| ClientError::Encode {
                        what: format!("{method} {path} patch"),
                        source,
                    })?,
                ),
            Body::Apply(value) => request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/apply-patch+yaml",
                )
                .body(
                    serde_json::to_vec(value).map_err(|source| ClientError::Encode {
                        what: format!("{method} {path} apply configuration"),
                        source,
                    })?,
                ),
        };
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::from_reqwest(&url, e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(api_error(method.as_str(), path, response).await)
        }
    }

    /// Opens a watch connection (no timeout: the stream lasts).
    pub(crate) async fn open_watch(
        &self,
        path: &str,
        query: &[(&'static str, String)],
    ) -> ClientResult<reqwest::Response> {
        self.send(Method::GET, path, query, &Body::None, None).await
    }
}

/// Turns an error answer into [`ClientError::Api`], reading a Kubernetes `Status`
/// body when there is one.
pub(crate) async fn api_error(
    method: &str,
    path: &str,
    response: reqwest::Response,
) -> ClientError {
    let status = response.status();
    // The Edge API's configuration poll answers refusals without a body, the
    // reason and message in headers.
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let header_reason = header(flotta_core::wire::REASON_HEADER);
    let header_message = header(flotta_core::wire::MESSAGE_HEADER);
    let text = response.text().await.unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let reason = field("reason")
        .or(header_reason)
        .or_else(|| status.canonical_reason().map(|r| r.replace(' ', "")))
        .unwrap_or_else(|| "Unknown".into());
    let message = field("message").or(header_message).unwrap_or_else(|| {
        let trimmed = text.trim();
        trimmed.chars().take(300).collect()
    });
    ClientError::Api {
        method: method.to_owned(),
        path: path.to_owned(),
        status: status.as_u16(),
        reason,
        message,
    }
}

fn path_segment<'a>(what: &'static str, value: &'a str) -> ClientResult<&'a str> {
    if value.is_empty() || value.contains(['/', '?', '#', '%']) || value == "." || value == ".." {
        return Err(ClientError::InvalidName {
            what,
            value: value.to_owned(),
        });
    }
    Ok(value)
}

fn object_name<T: Resource>(object: &T) -> ClientResult<String> {
    object
        .metadata()
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or(ClientError::InvalidName {
            what: "name",
            value: String::new(),
        })
}

/// Decodes JSON into `T`, naming the field path of the first mismatch.
pub(crate) fn decode<T: DeserializeOwned>(value: Value, what: &str) -> ClientResult<T> {
    serde_path_to_error::deserialize(value).map_err(|e| ClientError::Decode {
        what: what.to_owned(),
        message: format!("at {}: {}", e.path(), e.inner()),
    })
}

fn encode<T: Serialize>(object: &T, kind: &str) -> ClientResult<Value> {
    serde_json::to_value(object).map_err(|source| ClientError::Encode {
        what: kind.to_owned(),
        source,
    })
}

fn list_from_value(value: Value, path: &str) -> ClientResult<ObjectList<Value>> {
    let Value::Object(mut map) = value else {
        return Err(ClientError::Decode {
            what: format!("GET {path}"),
            message: "a list is not a JSON object".into(),
        });
    };
    let items = match map.remove("items") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(ClientError::Decode {
                what: format!("GET {path}"),
                message: "items: not an array".into(),
            });
        }
    };
    let metadata = map.get("metadata");
    let text = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(ObjectList {
        items,
        resource_version: text("resourceVersion"),
        continue_token: text("continue"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_https_with_a_host() {
        assert_eq!(
            normalize_base_url("https://localhost:8443/")
                .ok()
                .as_deref(),
            Some("https://localhost:8443")
        );
        assert!(normalize_base_url("http://localhost:8443").is_err());
        assert!(normalize_base_url("localhost:8443").is_err());
        assert!(normalize_base_url("").is_err());
    }

    #[test]
    fn names_that_would_change_the_path_are_refused() {
        for bad in ["", "a/b", "a?b", "..", "a#b", "a%2F"] {
            assert!(path_segment("name", bad).is_err(), "{bad}");
        }
        assert_eq!(path_segment("name", "edge-01").ok(), Some("edge-01"));
    }

    #[test]
    fn lists_read_items_and_page_tokens() {
        let list = list_from_value(
            serde_json::json!({"kind": "EdgeDeviceList", "metadata": {"resourceVersion": "12", "continue": "abc"}, "items": [{"a": 1}]}),
            "/p",
        )
        .expect("list");
        assert_eq!(list.items.len(), 1);
        assert_eq!(list.resource_version.as_deref(), Some("12"));
        assert_eq!(list.continue_token.as_deref(), Some("abc"));
        assert!(list_from_value(serde_json::json!([1]), "/p").is_err());
    }

    #[test]
    fn resource_types_resolve_by_kind() {
        assert_eq!(
            ResourceType::from_kind("EdgeWorkload").map(ResourceType::plural),
            Some("edgeworkloads")
        );
        assert_eq!(ResourceType::from_kind("Pod"), None);
    }
}
