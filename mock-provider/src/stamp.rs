//! Response stamps every request gets, whatever the endpoint: `x-mock-request-id`,
//! `x-mock-auth` (which credential header the gateway sent, never its value) and, with
//! `x-mock-echo-headers: 1`, `x-mock-seen-headers`.

use std::borrow::Cow;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-mock-request-id");
const AUTH: HeaderName = HeaderName::from_static("x-mock-auth");
const SEEN_HEADERS: HeaderName = HeaderName::from_static("x-mock-seen-headers");
const ECHO_HEADERS: &str = "x-mock-echo-headers";

pub(crate) async fn stamp(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let tag = state.next_tag();
    req.extensions_mut().insert(tag);
    let auth = auth_kind(req.headers());
    let seen = wants_echo(req.headers()).then(|| seen_headers(req.headers()));

    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    if let Ok(value) = HeaderValue::try_from(format!("mockreq_{:016x}", tag.0)) {
        headers.insert(REQUEST_ID, value);
    }
    let auth = match auth {
        Cow::Borrowed(s) => Ok(HeaderValue::from_static(s)),
        Cow::Owned(s) => HeaderValue::try_from(s),
    };
    if let Ok(value) = auth {
        headers.insert(AUTH, value);
    }
    if let Some(Ok(value)) = seen.map(HeaderValue::try_from) {
        headers.insert(SEEN_HEADERS, value);
    }
    resp
}

/// Which credential headers are present: `bearer`, `x-api-key`, `api-key`, comma-joined when
/// several are (so a gateway sending two credentials is caught), `none` when none is.
fn auth_kind(headers: &HeaderMap) -> Cow<'static, str> {
    let bearer = headers.get_all(AUTHORIZATION).iter().any(|v| {
        let v = v.as_bytes();
        v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") && !v[7..].trim_ascii().is_empty()
    });
    let kinds = [
        (bearer, "bearer"),
        (headers.contains_key("x-api-key"), "x-api-key"),
        (headers.contains_key("api-key"), "api-key"),
    ];
    let mut present = kinds.iter().filter(|(on, _)| *on).map(|(_, name)| *name);
    match (present.next(), present.next()) {
        (None, _) => Cow::Borrowed("none"),
        (Some(only), None) => Cow::Borrowed(only),
        (Some(first), Some(second)) => {
            let mut all = format!("{first},{second}");
            for more in present {
                all.push(',');
                all.push_str(more);
            }
            Cow::Owned(all)
        }
    }
}

fn wants_echo(headers: &HeaderMap) -> bool {
    headers.get(ECHO_HEADERS).is_some_and(|v| matches!(v.as_bytes().trim_ascii(), b"1" | b"true"))
}

/// Sorted, de-duplicated lower-case names of the `x-*` and credential headers received.
fn seen_headers(headers: &HeaderMap) -> String {
    let mut names: Vec<&str> = headers
        .keys()
        .map(HeaderName::as_str)
        .filter(|name| name.starts_with("x-") || matches!(*name, "authorization" | "api-key"))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn auth_kind_names_the_credential_header_only() {
        assert_eq!(auth_kind(&headers(&[])), "none");
        assert_eq!(auth_kind(&headers(&[("authorization", "Bearer sk-1")])), "bearer");
        assert_eq!(auth_kind(&headers(&[("authorization", "Basic abc")])), "none");
        assert_eq!(auth_kind(&headers(&[("authorization", "Bearer ")])), "none");
        assert_eq!(auth_kind(&headers(&[("x-api-key", "k")])), "x-api-key");
        assert_eq!(auth_kind(&headers(&[("api-key", "k")])), "api-key");
        assert_eq!(
            auth_kind(&headers(&[("authorization", "bearer t"), ("x-api-key", "k")])),
            "bearer,x-api-key"
        );
    }

    #[test]
    fn seen_headers_lists_names_not_values() {
        let seen = seen_headers(&headers(&[
            ("x-mock-echo-headers", "1"),
            ("authorization", "Bearer secret"),
            ("content-type", "application/json"),
            ("x-trace", "a"),
            ("x-trace", "b"),
        ]));
        assert_eq!(seen, "authorization,x-mock-echo-headers,x-trace");
    }
}
