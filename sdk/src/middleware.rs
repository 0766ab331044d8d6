//! A reqwest middleware that sends an existing provider client's calls through the gateway:
//! requests to `api.openai.com` or `api.anthropic.com` go to the gateway's base URL with the
//! agent's virtual key (the provider key, if any, is dropped), and the trace context rides
//! along. An agent built on a reqwest-based OpenAI client changes one line: the client it
//! builds.

use http::Extensions;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{Request, Response, Url};
use reqwest_middleware::{Middleware, Next};

use crate::trace::TraceContext;

/// Provider API hosts routed through the gateway by default.
pub const PROVIDER_HOSTS: [&str; 2] = ["api.openai.com", "api.anthropic.com"];

/// Routes provider calls through the gateway. Build it with [`crate::Client::middleware`].
#[derive(Clone)]
pub struct GatewayRouting {
    pub(crate) base: Url,
    pub(crate) key: HeaderValue,
    pub(crate) trace: Option<TraceContext>,
    pub(crate) route_all: bool,
}

impl std::fmt::Debug for GatewayRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayRouting")
            .field("base", &self.base.as_str())
            .field("key", &"<redacted>")
            .field("route_all", &self.route_all)
            .finish()
    }
}

impl GatewayRouting {
    /// Routes every request, whatever its host (for clients pointed at a self-hosted
    /// OpenAI-compatible server, say).
    #[must_use]
    pub fn route_all(mut self) -> Self {
        self.route_all = true;
        self
    }

    /// Whether `url` goes through the gateway.
    pub fn routes(&self, url: &Url) -> bool {
        self.route_all || url.host_str().is_some_and(|h| PROVIDER_HOSTS.contains(&h))
    }

    /// Rewrites `request` to go through the gateway (pure: no I/O).
    pub fn rewrite(&self, request: &mut Request) {
        if !self.routes(request.url()) {
            return;
        }
        let mut url = self.base.clone();
        // Both providers' APIs live under `/v1`, as do the gateway's.
        let path = request.url().path().to_owned();
        let base_path = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(request.url().query());
        *request.url_mut() = url;
        let headers = request.headers_mut();
        for h in ["x-api-key", "api-key"] {
            headers.remove(h);
        }
        headers.insert(AUTHORIZATION, self.key.clone());
        if let Some(t) = &self.trace
            && !headers.contains_key("traceparent")
        {
            for (name, value) in t.headers() {
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.insert(HeaderName::from_static(name), v);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Middleware for GatewayRouting {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.rewrite(&mut req);
        next.run(req, extensions).await
    }
}
