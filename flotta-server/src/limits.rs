//! Limits on what a client may send and how slowly: shared by both listeners.
//!
//! Header time is bounded by hyper (`header_read_timeout`, set where each listener
//! serves its connections); body time and size by [`buffer_body`], which the
//! routers run as a middleware before any handler: a client that dribbles its body
//! gets 408 after [`BODY_READ_TIMEOUT`], one that sends more than the listener's
//! limit gets 413 (after the rest of a moderately oversized body has been read and
//! discarded, so that the client sees the answer rather than a reset connection).

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use http_body_util::BodyExt;

/// Time a client has to send a whole request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client connection may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Time to send a request's headers; also how long a kept-alive connection may
    /// sit idle between requests (hyper starts the clock when it waits for a head).
    pub header_read_timeout: Duration,
    /// Time to send a request's whole body.
    pub body_read_timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

impl ConnectionLimits {
    /// Limits with these timeouts and body size.
    pub fn new(
        header_read_timeout: Duration,
        body_read_timeout: Duration,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            header_read_timeout,
            body_read_timeout,
            max_body_bytes,
        }
    }
}

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyProblem {
    /// The body is longer than the listener accepts (HTTP 413).
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body did not arrive within [`BODY_READ_TIMEOUT`] (HTTP 408).
    #[error("the request body did not arrive within {} seconds", timeout.as_secs())]
    TooSlow {
        /// The time allowed.
        timeout: Duration,
    },
    /// The connection failed while the body was read (HTTP 400).
    #[error("cannot read the request body: {0}")]
    Read(String),
}

impl BodyProblem {
    /// The HTTP status that answers this problem.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            BodyProblem::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyProblem::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            BodyProblem::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads `request`'s whole body within `timeout` and at most `limit` bytes, and
/// returns the request with the body buffered.
///
/// A body over the limit is refused with [`BodyProblem::TooLarge`], but up to
/// another `limit` bytes of it are still read and thrown away first: most clients
/// write their whole body before they read the answer, and a connection closed
/// under them shows up as a broken pipe instead of the 413. A body declared (by
/// `Content-Length`) or found to be longer than twice the limit is cut off at once.
pub async fn buffer_body(
    request: Request,
    limit: usize,
    timeout: Duration,
) -> Result<Request, BodyProblem> {
    let limit_bytes = limit as u64;
    let drain_cap = limit_bytes.saturating_mul(2);
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > drain_cap) {
        return Err(BodyProblem::TooLarge { limit });
    }
    let (parts, mut body) = request.into_parts();
    let read = async {
        let mut buffered = Vec::new();
        let mut seen: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| BodyProblem::Read(error.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen = seen.saturating_add(data.len() as u64);
            if seen > drain_cap {
                break;
            }
            if seen <= limit_bytes {
                buffered.extend_from_slice(&data);
            }
        }
        if seen > limit_bytes {
            Err(BodyProblem::TooLarge { limit })
        } else {
            Ok(buffered)
        }
    };
    let buffered = match tokio::time::timeout(timeout, read).await {
        Err(_) => return Err(BodyProblem::TooSlow { timeout }),
        Ok(result) => result?,
    };
    Ok(Request::from_parts(parts, Body::from(buffered)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_are_limited_in_size_and_time() {
        let request = Request::builder()
            .body(Body::from(vec![b'x'; 11]))
            .expect("request");
        assert!(matches!(
            buffer_body(request, 10, BODY_READ_TIMEOUT).await,
            Err(BodyProblem::TooLarge { limit: 10 })
        ));
        // Declared beyond twice the limit: refused without reading the body.
        let request = Request::builder()
            .header("content-length", "1000")
            .body(Body::empty())
            .expect("request");
        assert!(matches!(
            buffer_body(request, 10, BODY_READ_TIMEOUT).await,
            Err(BodyProblem::TooLarge { .. })
        ));
        let (_sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        let stream = futures::stream::unfold(receiver, |mut r| async move {
            r.recv().await.map(|item| (item, r))
        });
        let request = Request::builder()
            .body(Body::from_stream(stream))
            .expect("request");
        assert!(matches!(
            buffer_body(request, 10, Duration::from_millis(50)).await,
            Err(BodyProblem::TooSlow { .. })
        ));
        // Over the limit but within twice of it: read to the end, still refused.
        let request = Request::builder()
            .header("content-length", "15")
            .body(Body::from(vec![b'x'; 15]))
            .expect("request");
        assert!(matches!(
            buffer_body(request, 10, BODY_READ_TIMEOUT).await,
            Err(BodyProblem::TooLarge { limit: 10 })
        ));
        let request = Request::builder()
            .body(Body::from("0123456789"))
            .expect("request");
        let buffered = buffer_body(request, 10, BODY_READ_TIMEOUT)
            .await
            .expect("within limits");
        let bytes = axum::body::to_bytes(buffered.into_body(), 10)
            .await
            .expect("body");
        assert_eq!(&bytes[..], b"0123456789");
    }
}
