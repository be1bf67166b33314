//! The web console: static assets under `/ui`, served by the management listener.
//!
//! The console is a set of hand-written ES modules and one style sheet in
//! `flotta-server/ui/`, compiled into the binary, so it works without any network
//! beyond the server. It signs in with a bearer token and talks to the management
//! API from the browser (see `docs/console.md`); the assets themselves need no token.
//!
//! Every response carries a strict `Content-Security-Policy` (scripts, styles and
//! connections from the server only, no inline code, no framing) and `no-cache`
//! with a content `ETag`, so browsers revalidate and pick up a new build at once.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::api::ApiError;

/// Path the console is served under.
pub const UI_PATH: &str = "/ui";

/// The policy sent with every console response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One file of the console.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// File name under `/ui/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its contents.
    pub body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console; `index.html` is the page itself.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("store.js", JS),
    asset!("dom.js", JS),
    asset!("views.js", JS),
];

/// The asset named `name`, if there is one.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

fn etag_of(asset: &Asset) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(asset.body.as_bytes());
    let hex: String = digest
        .iter()
        .take(12)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("\"{hex}\"")
}

/// The console's routes: `/ui` (redirects to `/ui/`), `/ui/` and `/ui/{file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(UI_PATH, get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

fn serve(name: &str, request_headers: &HeaderMap) -> Response {
    let Some(asset) = asset(name) else {
        return ApiError::not_found(format!("the console has no file {name:?}")).into_response();
    };
    let etag = etag_of(asset);
    let fresh = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    #[tokio::test]
    async fn serves_every_asset_with_its_type_and_policy() {
        for asset in ASSETS {
            let response = get(&format!("/ui/{}", asset.name), None).await;
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let index = get("/ui/", None).await;
        assert_eq!(
            index.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn revalidation_and_unknown_files() {
        let first = get("/ui/app.js", None).await;
        let tag = first.headers()[header::ETAG]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_eq!(
            get("/ui/app.js", Some(&tag)).await.status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            get("/ui/app.js", Some("\"other\"")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            get("/ui/missing.js", None).await.status(),
            StatusCode::NOT_FOUND
        );
        let redirect = get("/ui", None).await;
        assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(redirect.headers()[header::LOCATION], "/ui/");
    }

    #[test]
    fn the_page_loads_only_its_own_modules() {
        let index = asset("index.html").expect("index");
        assert!(!index.body.contains("<script>"), "no inline scripts");
        assert!(!index.body.contains("http://") && !index.body.contains("https://"));
        for asset in ASSETS {
            assert!(
                !asset.body.contains("https://") || asset.name == "index.html",
                "{} refers to another host",
                asset.name
            );
        }
    }
}
