//! What a management API request asks to do, in Kubernetes' terms: the verb, API
//! group, resource, subresource, namespace and name of a resource request, or the
//! path and verb of a non-resource request (`/metrics`, discovery).

use std::fmt;

/// A resource request's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceAttributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or
    /// `deletecollection`.
    pub verb: String,
    /// The API group (`""` for the core group).
    pub api_group: String,
    /// The resource plural, e.g. `edgedevices`.
    pub resource: String,
    /// The subresource, e.g. `status` or `approval`; empty for none.
    pub subresource: String,
    /// The namespace; empty for a cluster-scoped resource or a request across all
    /// namespaces.
    pub namespace: String,
    /// The object's name; empty for requests on a collection.
    pub name: String,
}

impl ResourceAttributes {
    /// The resource as rules name it: `edgedevices` or `edgedevices/status`.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// What a request asks to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAttributes {
    /// A request on resources (`/api/v1/...`, `/apis/{group}/{version}/...`).
    Resource(ResourceAttributes),
    /// Any other path (`/metrics`, discovery): the path and the lower-case method.
    NonResource {
        /// The URL path.
        path: String,
        /// The lower-case HTTP method (`get` for `HEAD`).
        verb: String,
    },
}

impl RequestAttributes {
    /// The verb.
    pub fn verb(&self) -> &str {
        match self {
            RequestAttributes::Resource(r) => &r.verb,
            RequestAttributes::NonResource { verb, .. } => verb,
        }
    }
}

impl fmt::Display for RequestAttributes {
    /// Kubernetes' words for a refusal: `list resource "edgedevices" in API group
    /// "management.project-flotta.io" in the namespace "team-b"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestAttributes::NonResource { path, verb } => write!(f, "{verb} path {path:?}"),
            RequestAttributes::Resource(r) => {
                write!(f, "{} resource {:?}", r.verb, r.resource)?;
                if !r.subresource.is_empty() {
                    write!(f, " subresource {:?}", r.subresource)?;
                }
                write!(f, " in API group {:?}", r.api_group)?;
                if r.namespace.is_empty() {
                    f.write_str(" at the cluster scope")
                } else {
                    write!(f, " in the namespace {:?}", r.namespace)
                }
            }
        }
    }
}

/// Whether a query string asks for a watch (`watch`, `watch=true` or `watch=1`).
fn asks_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "watch" | "watch=true" | "watch=1"))
    })
}

/// The verb of a request on a collection (`name` empty) or an object.
fn resource_verb(method: &str, has_name: bool, watch: bool) -> String {
    let method = method.to_ascii_uppercase();
    match (method.as_str(), has_name) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => return other.to_ascii_lowercase(),
    }
    .to_owned()
}

/// The attributes of a request with `method` on `path` (without the query) and
/// `query` (without the `?`).
///
/// Resource requests are `/api/v1/...` and `/apis/{group}/{version}/...` below the
/// group version; the roots (`/api`, `/api/v1`, `/apis/{group}/{version}`) and every
/// other path are non-resource requests.
///
/// ```
/// use flotta_core::rbac::request::{attributes, RequestAttributes};
///
/// let watch = attributes("GET", "/apis/management.project-flotta.io/v1alpha1/edgedevices", Some("watch=true"));
/// let RequestAttributes::Resource(r) = watch else { panic!() };
/// assert_eq!((r.verb.as_str(), r.namespace.as_str()), ("watch", ""));
/// let status = attributes("PATCH", "/apis/management.project-flotta.io/v1alpha1/namespaces/a/edgedevices/d/status", None);
/// let RequestAttributes::Resource(r) = status else { panic!() };
/// assert_eq!(r.combined_resource(), "edgedevices/status");
/// ```
pub fn attributes(method: &str, path: &str, query: Option<&str>) -> RequestAttributes {
    let segments: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (api_group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
        _ => {
            let verb = match method.to_ascii_uppercase().as_str() {
                "HEAD" => "get".to_owned(),
                other => other.to_ascii_lowercase(),
            };
            return RequestAttributes::NonResource {
                path: path.to_owned(),
                verb,
            };
        }
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (*namespace, rest),
        // `namespaces` and `namespaces/{name}` are the namespace resource itself.
        _ => ("", rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, "", ""),
        [resource, name] => (*resource, *name, ""),
        [resource, name, subresource, ..] => (*resource, *name, *subresource),
        [] => ("", "", ""),
    };
    RequestAttributes::Resource(ResourceAttributes {
        verb: resource_verb(method, !name.is_empty(), asks_watch(query)),
        api_group: api_group.to_owned(),
        resource: resource.to_owned(),
        subresource: subresource.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(method: &str, path: &str, query: Option<&str>) -> ResourceAttributes {
        match attributes(method, path, query) {
            RequestAttributes::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn verbs_follow_kubernetes() {
        let flotta = "/apis/management.project-flotta.io/v1alpha1";
        let cases = [
            ("GET", format!("{flotta}/edgedevices"), None, "list"),
            (
                "GET",
                format!("{flotta}/edgedevices"),
                Some("watch=true"),
                "watch",
            ),
            (
                "GET",
                format!("{flotta}/namespaces/a/edgedevices"),
                Some("labelSelector=x&watch=1"),
                "watch",
            ),
            (
                "GET",
                format!("{flotta}/namespaces/a/edgedevices/d"),
                None,
                "get",
            ),
            (
                "HEAD",
                format!("{flotta}/namespaces/a/edgedevices/d"),
                None,
                "get",
            ),
            (
                "POST",
                format!("{flotta}/namespaces/a/edgedevices"),
                None,
                "create",
            ),
            (
                "PUT",
                format!("{flotta}/namespaces/a/edgedevices/d"),
                None,
                "update",
            ),
            (
                "PATCH",
                format!("{flotta}/namespaces/a/edgedevices/d"),
                None,
                "patch",
            ),
            (
                "DELETE",
                format!("{flotta}/namespaces/a/edgedevices/d"),
                None,
                "delete",
            ),
            (
                "DELETE",
                format!("{flotta}/namespaces/a/edgedevices"),
                None,
                "deletecollection",
            ),
        ];
        for (method, path, query, verb) in cases {
            assert_eq!(resource(method, &path, query).verb, verb, "{method} {path}");
        }
    }

    #[test]
    fn paths_give_group_namespace_resource_and_name() {
        let r = resource("GET", "/api/v1/namespaces/team-a/secrets/db", None);
        assert_eq!(
            r,
            ResourceAttributes {
                verb: "get".into(),
                api_group: String::new(),
                resource: "secrets".into(),
                subresource: String::new(),
                namespace: "team-a".into(),
                name: "db".into(),
            }
        );
        let r = resource(
            "POST",
            "/apis/management.project-flotta.io/v1alpha1/namespaces/a/edgedevicesignedrequests/x/approval",
            None,
        );
        assert_eq!(
            (r.verb.as_str(), r.combined_resource().as_str()),
            ("create", "edgedevicesignedrequests/approval")
        );
        let r = resource(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/flotta:admin",
            None,
        );
        assert_eq!(
            (r.namespace.as_str(), r.name.as_str()),
            ("", "flotta:admin")
        );
        let r = resource("GET", "/api/v1/namespaces/team-a", None);
        assert_eq!(
            (r.resource.as_str(), r.name.as_str(), r.namespace.as_str()),
            ("namespaces", "team-a", "")
        );
    }

    #[test]
    fn roots_and_other_paths_are_non_resource() {
        for path in [
            "/metrics",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/management.project-flotta.io/v1alpha1",
        ] {
            assert_eq!(
                attributes("GET", path, None),
                RequestAttributes::NonResource {
                    path: path.into(),
                    verb: "get".into()
                },
                "{path}"
            );
        }
    }
}
