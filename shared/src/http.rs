//! The HTTP shapes shared by API Gateway (via `lambda_http`) and the local runtime (via axum):
//! a request with its whole body as bytes, a response likewise, and the JSON error body of
//! the public contract: `{"error":{"code","message","field"}}`.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;

pub type ApiRequest = http::Request<Bytes>;
pub type ApiResponse = http::Response<Bytes>;

/// Header carrying the id that ties a request's log lines, queue messages and records together.
pub const CORRELATION_ID: &str = "x-correlation-id";

/// The request's id: API Gateway's on Lambda, one the local runtime makes up otherwise; in
/// every log line of the request and echoed in the response.
pub const REQUEST_ID: &str = "x-request-id";

/// The request id a request carries (see [`REQUEST_ID`]).
pub fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .unwrap_or("")
}

/// The first two segments of `path` (`/v1/messages`), for logs: the rest may carry a phone
/// number or an address.
pub fn route_of(path: &str) -> &str {
    let mut slashes = path.match_indices('/').map(|(i, _)| i).skip(2);
    match slashes.next() {
        Some(i) => &path[..i],
        None => path,
    }
}

/// An error answered to the caller. Messages are written for the caller and never contain
/// secrets or request bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("use {allowed}"),
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be {expected}"),
        )
    }

    /// A dependency (queue, store, secrets) is down: the caller should retry.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    pub fn into_response(self) -> ApiResponse {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
            field: Option<&'a str>,
        }
        json_response(
            self.status,
            &Body {
                error: Inner {
                    code: self.code,
                    message: &self.message,
                    field: self.field.as_deref(),
                },
            },
        )
    }
}

/// A JSON response. Serialising our own response types cannot fail; if it ever did, the
/// caller gets a bare 500 rather than a panic.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> ApiResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => response(status, "application/json", Bytes::from(bytes)),
        Err(_) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            Bytes::from_static(
                br#"{"error":{"code":"internal","message":"internal error","field":null}}"#,
            ),
        ),
    }
}

pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> ApiResponse {
    response(status, "text/plain; charset=utf-8", body.into())
}

/// A response of `content_type` (for bodies other than JSON and plain text, such as
/// Prometheus's exposition format).
pub fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> ApiResponse {
    let mut res = http::Response::new(body);
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// The first value of query parameter `name`, percent-decoded.
pub fn query_param(req: &ApiRequest, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Whether the request declares a JSON body (`application/json`, parameters allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The caller's correlation id, if it sent a usable one.
pub fn correlation_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> ApiRequest {
        let mut r = http::Request::new(Bytes::new());
        *r.uri_mut() = uri.parse().unwrap_or_default();
        r
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let r = req(
            "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=a%20b%2Bc&hub.challenge=12",
        );
        assert_eq!(
            query_param(&r, "hub.verify_token").as_deref(),
            Some("a b+c")
        );
        assert_eq!(query_param(&r, "hub.challenge").as_deref(), Some("12"));
        assert_eq!(query_param(&r, "missing"), None);
    }

    #[test]
    fn json_content_type_accepts_parameters_and_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn errors_render_the_contract_shape() {
        let res = ApiError::bad_request("invalid_json", "bad")
            .with_field("body")
            .into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({"error":{"code":"invalid_json","message":"bad","field":"body"}})
        );
    }
}
