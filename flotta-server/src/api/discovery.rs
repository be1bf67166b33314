//! Discovery, as kubectl reads it: `/version`, `/api` (`APIVersions`), `/api/v1`
//! and `/apis/{group}/{version}` (`APIResourceList`), `/apis` (`APIGroupList`) and
//! `/apis/{group}` (`APIGroup`), every entry from core's kind table.
//!
//! Only the plain (legacy) discovery documents are served. kubectl asks for the
//! aggregated form first (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;
//! as=APIGroupDiscoveryList,...,application/json`); the answer's `Content-Type` is
//! plain `application/json`, from which kubectl knows to read the plain form.

use axum::Json;
use axum::Router;
use axum::routing::get;
use flotta_core::kind::{
    API_VERSION, CORE_VERSION, GROUP, NAMESPACE, RBAC_API_VERSION, RBAC_GROUP, RBAC_VERSION,
    ResourceKind, VERSION,
};
use flotta_core::paths::{CORE_PREFIX, MANAGEMENT_PREFIX, RBAC_PREFIX};
use serde_json::{Value, json};

/// The Kubernetes API level the management API follows (what kubectl compares
/// its own version with); flotta's own version rides in `gitVersion`.
const KUBERNETES_MAJOR: &str = "1";
const KUBERNETES_MINOR: &str = "32";

/// Path of the version document (served without a token, as by Kubernetes).
pub(crate) const VERSION_PATH: &str = "/version";

/// The routes that need a token (all but `/version`).
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/api", get(core_versions))
        .route(CORE_PREFIX, get(core_resources))
        .route("/apis", get(groups))
        .route(&format!("/apis/{GROUP}"), get(flotta_group_document))
        .route(&format!("/apis/{RBAC_GROUP}"), get(rbac_group_document))
        .route(MANAGEMENT_PREFIX, get(flotta_resources))
        .route(RBAC_PREFIX, get(rbac_resources))
}

/// `/version`: what `kubectl version` prints as the server version.
pub(crate) async fn version() -> Json<Value> {
    Json(json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!(
            "v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0+flotta-{}",
            env!("CARGO_PKG_VERSION")
        ),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

/// `/api`: the versions of the Kubernetes core group.
async fn core_versions() -> Json<Value> {
    Json(json!({
        "kind": "APIVersions",
        "versions": [CORE_VERSION],
        "serverAddressByClientCIDRs": [],
    }))
}

/// One `APIResourceList` entry of a kind, from the table.
fn resource(kind: ResourceKind) -> Value {
    json!({
        "name": kind.plural(),
        "singularName": kind.singular(),
        "shortNames": kind.short_names(),
        "categories": kind.categories(),
        "namespaced": kind.namespaced(),
        "kind": kind.as_str(),
        "verbs": kind.verbs(),
    })
}

/// `/api/v1`: the Kubernetes core kinds served here, and `namespaces`.
async fn core_resources() -> Json<Value> {
    let mut resources: Vec<Value> = ResourceKind::ALL
        .into_iter()
        .filter(|kind| kind.is_core())
        .map(resource)
        .collect();
    resources.push(json!({
        "name": NAMESPACE.plural,
        "singularName": NAMESPACE.singular,
        "shortNames": NAMESPACE.short_names,
        "namespaced": NAMESPACE.namespaced,
        "kind": NAMESPACE.name,
        "verbs": NAMESPACE.verbs,
    }));
    Json(json!({
        "kind": "APIResourceList",
        "groupVersion": CORE_VERSION,
        "resources": resources,
    }))
}

/// `/apis/{group}/{version}`: flotta's kinds and their status subresources.
async fn flotta_resources() -> Json<Value> {
    let resources: Vec<Value> = ResourceKind::FLOTTA
        .into_iter()
        .flat_map(|kind| {
            [
                resource(kind),
                json!({
                    "name": format!("{}/status", kind.plural()),
                    "singularName": "",
                    "namespaced": kind.namespaced(),
                    "kind": kind.as_str(),
                    "verbs": ["get", "patch", "update"],
                }),
            ]
        })
        .collect();
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": resources,
    }))
}

/// `/apis/rbac.authorization.k8s.io/v1`: the RBAC kinds.
async fn rbac_resources() -> Json<Value> {
    let resources: Vec<Value> = ResourceKind::RBAC.into_iter().map(resource).collect();
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": RBAC_API_VERSION,
        "resources": resources,
    }))
}

/// One `APIGroup` entry: a group served in a single version.
fn api_group(name: &str, version: &str) -> Value {
    let version = json!({"groupVersion": format!("{name}/{version}"), "version": version});
    json!({
        "name": name,
        "versions": [version],
        "preferredVersion": version,
    })
}

/// `/apis`: the API groups besides the core group: flotta's, RBAC and
/// `authorization.k8s.io` (self subject access reviews).
async fn groups() -> Json<Value> {
    Json(json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            api_group(GROUP, VERSION),
            api_group(RBAC_GROUP, RBAC_VERSION),
            api_group("authorization.k8s.io", "v1"),
        ],
    }))
}

/// The `APIGroup` document of one group.
fn group_document(name: &str, version: &str) -> Json<Value> {
    let mut group = api_group(name, version);
    if let Some(map) = group.as_object_mut() {
        map.insert("kind".into(), json!("APIGroup"));
        map.insert("apiVersion".into(), json!("v1"));
    }
    Json(group)
}

/// `/apis/{group}`: flotta's group.
async fn flotta_group_document() -> Json<Value> {
    group_document(GROUP, VERSION)
}

/// `/apis/rbac.authorization.k8s.io`: the RBAC group.
async fn rbac_group_document() -> Json<Value> {
    group_document(RBAC_GROUP, RBAC_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_kind_is_discovered_where_it_is_served() {
        let Json(core) = core_resources().await;
        let Json(flotta) = flotta_resources().await;
        let Json(rbac) = rbac_resources().await;
        for kind in ResourceKind::ALL {
            let list = if kind.is_flotta() {
                &flotta
            } else if kind.is_core() {
                &core
            } else {
                &rbac
            };
            let entry = list["resources"]
                .as_array()
                .and_then(|r| r.iter().find(|e| e["name"] == kind.plural()))
                .unwrap_or_else(|| panic!("{kind} is discovered"));
            assert_eq!(entry["kind"], kind.as_str());
            assert_eq!(entry["singularName"], kind.singular());
            assert_eq!(entry["verbs"], json!(kind.verbs()));
        }
        assert!(
            core["resources"]
                .as_array()
                .is_some_and(|r| r.iter().any(|e| e["name"] == "namespaces"))
        );
        let Json(groups) = groups().await;
        assert_eq!(
            groups["groups"][0]["preferredVersion"]["groupVersion"],
            API_VERSION
        );
    }
}
