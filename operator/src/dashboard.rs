//! The dashboard (a Vue single-page app, `dashboard/`) served from its build folder
//! (`dashboard/dist`) at `/`: files as they are (hashed assets cached for good, `index.html`
//! never), every other page path the app's `index.html` (client-side routes). API paths
//! (`/v1/...`, `/api/...`) that no route matched stay JSON 404s in the API's own format.
//! Responses carry a strict Content-Security-Policy: scripts, styles, fonts and API calls
//! from this origin only.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

/// What the browser may load: this origin only; inline styles for the chart library.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// Where the built dashboard is: `explicit` (flag or environment) if given, else
/// `dashboard/dist` under the working directory, else under the source tree this binary
/// was built from (`cargo run`). `None` when none of them holds an `index.html`.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard/dist");
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => vec![PathBuf::from("dashboard/dist"), built_from],
    };
    candidates.into_iter().find(|d| d.join("index.html").is_file())
}

/// A router answering every request it gets (mount it as the fallback): the dashboard
/// from `dir`, or a page saying how to build it.
pub fn router(dir: Option<PathBuf>) -> Router {
    // Built once: files as they are, and the same with the app's index.html for page paths.
    let files = dir.map(|d| {
        let index = ServeFile::new(d.join("index.html"));
        (ServeDir::new(&d), ServeDir::new(&d).fallback(index))
    });
    Router::new().fallback(move |request: Request| {
        let files = files.clone();
        async move { serve(files, request).await }
    })
}

type Files = (ServeDir, ServeDir<ServeFile>);

fn is_api(path: &str) -> bool {
    ["/v1/", "/api/", "/tollgate."].iter().any(|p| path.starts_with(p)) || path == "/v1" || path == "/api"
}

async fn serve(files: Option<Files>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if is_api(&path) || !matches!(*request.method(), http::Method::GET | http::Method::HEAD) {
        return tollgate_dataplane::http::not_found(request).await;
    }
    let Some((assets, pages)) = files else { return not_built() };
    // Page paths get the app; a missing file (an asset, anything with an extension) is a
    // 404, not the app's HTML under a script's name.
    let mut response = if is_file_path(&path) {
        match assets.oneshot(request).await {
            Ok(r) => r.into_response(),
            Err(e) => match e {},
        }
    } else {
        match pages.oneshot(request).await {
            Ok(r) => r.into_response(),
            Err(e) => match e {},
        }
    };
    let cache = if path.starts_with("/assets/") && response.status() == StatusCode::OK {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// Whether `path` names a file (under `/assets/`, or with an extension in its last
/// segment) rather than a page of the app.
fn is_file_path(path: &str) -> bool {
    path.starts_with("/assets/") || path.rsplit('/').next().is_some_and(|last| last.contains('.'))
}

fn not_built() -> Response {
    let page = "<!doctype html><meta charset=utf-8><title>Tollgate</title>\
        <h1>Tollgate</h1><p>The gateway and the admin API (<code>/api/v1</code>) are running, \
        but the dashboard is not built. Build it with \
        <code>npm --prefix dashboard ci &amp;&amp; npm --prefix dashboard run build</code> \
        (or start with <code>bash scripts/up.sh</code>, which does), or point \
        <code>--dashboard</code> / <code>TOLLGATE_DASHBOARD_DIR</code> at a built <code>dist</code> folder.</p>";
    (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-cache")], Html(page)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};

    async fn get(router: &Router, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let r = router.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = r.into_parts();
        (parts.status, parts.headers, String::from_utf8_lossy(&to_bytes(body, 1 << 20).await.unwrap()).into())
    }

    #[tokio::test]
    async fn serves_files_falls_back_to_the_app_and_keeps_api_404s() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<div id=app></div>").unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/app-1234.js"), "console.log(1)").unwrap();
        let router = router(locate(Some(dir.path())));

        let (status, headers, body) = get(&router, "/assets/app-1234.js").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "console.log(1)"));
        assert!(headers[header::CACHE_CONTROL].to_str().unwrap().contains("immutable"));
        assert!(headers[header::CONTENT_TYPE].to_str().unwrap().contains("javascript"));

        for page in ["/", "/budgets", "/safety/policies/x"] {
            let (status, headers, body) = get(&router, page).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "<div id=app></div>"), "{page}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
        }

        for missing in ["/assets/app-0000.js", "/favicon.ico"] {
            let (status, _, body) = get(&router, missing).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
            assert!(!body.contains("id=app"), "{missing}");
        }

        let (status, _, body) = get(&router, "/api/v1/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("unknown_url"), "{body}");
        let (status, _, _) = get(&router, "/../../etc/passwd").await;
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn says_how_to_build_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(locate(Some(dir.path())), None);
        let (status, _, body) = get(&router(None), "/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("npm --prefix dashboard ci"), "{body}");
    }
}
