//! Upstream providers. [`Provider`] is one enum over every provider API, matched
//! exhaustively, so adding a provider is a compile error until every place handles it.
//! [`Upstream`] is one configured IP token, ready to build requests; [`UpstreamClient`]
//! sends them (pooled HTTP/1.1 and HTTP/2 over rustls, or in-process to the mock).

pub mod sse;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tollgate_crds::ProviderKind;
use tollgate_crds::config::IpTokenConfig;
use tower::ServiceExt;

use crate::error::{Error, Result};
use crate::secrets::{ExposeSecret, SecretString};

/// The two wire formats upstreams speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions / Embeddings.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// What is being asked of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A chat completion (OpenAI wire) or message (Anthropic wire).
    Chat,
    /// Embeddings (OpenAI wire only).
    Embeddings,
}

/// The Anthropic API version Tollgate speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A provider API, with what differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// api.openai.com.
    OpenAi,
    /// Azure OpenAI deployments.
    AzureOpenAi,
    /// Anthropic.
    Anthropic,
    /// vLLM, Ollama, ...
    OpenAiCompatible,
    /// Tollgate's mock.
    Mock,
}

impl Provider {
    /// From the resource's provider kind.
    pub fn from_kind(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::Openai => Self::OpenAi,
            ProviderKind::AzureOpenai => Self::AzureOpenAi,
            ProviderKind::Anthropic => Self::Anthropic,
            ProviderKind::OpenaiCompatible => Self::OpenAiCompatible,
            ProviderKind::Mock => Self::Mock,
        }
    }

    /// The wire format it speaks.
    pub fn wire(self) -> Wire {
        match self {
            Self::Anthropic => Wire::Anthropic,
            Self::OpenAi | Self::AzureOpenAi | Self::OpenAiCompatible | Self::Mock => Wire::OpenAi,
        }
    }

    fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com/v1"),
            Self::AzureOpenAi | Self::OpenAiCompatible | Self::Mock => None,
        }
    }

    /// The header carrying the key.
    fn auth_header(self, key: &SecretString) -> Result<(HeaderName, HeaderValue)> {
        let (name, value) = match self {
            Self::OpenAi | Self::OpenAiCompatible | Self::Mock => {
                (http::header::AUTHORIZATION, format!("Bearer {}", key.expose_secret()))
            }
            Self::AzureOpenAi => (HeaderName::from_static("api-key"), key.expose_secret().to_owned()),
            Self::Anthropic => (HeaderName::from_static("x-api-key"), key.expose_secret().to_owned()),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| Error::Config("provider key contains characters not allowed in a header".into()))?;
        value.set_sensitive(true);
        Ok((name, value))
    }

    /// Path (and query) under the base URL.
    fn path(self, op: Operation, upstream_model: &str, api_version: Option<&str>) -> String {
        match (self, op) {
            (Self::Anthropic, _) => "/messages".to_owned(),
            (Self::AzureOpenAi, op) => {
                let leaf = match op {
                    Operation::Chat => "chat/completions",
                    Operation::Embeddings => "embeddings",
                };
                let deployment = encode_path_segment(upstream_model);
                format!("/deployments/{deployment}/{leaf}?api-version={}", api_version.unwrap_or_default())
            }
            (Self::OpenAi | Self::OpenAiCompatible | Self::Mock, Operation::Chat) => {
                "/chat/completions".to_owned()
            }
            (Self::OpenAi | Self::OpenAiCompatible | Self::Mock, Operation::Embeddings) => {
                "/embeddings".to_owned()
            }
        }
    }
}

fn encode_path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where requests go.
#[derive(Clone)]
enum Endpoint {
    Http { base_url: String },
    InProcess(Router),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { base_url } => write!(f, "Http({base_url})"),
            Self::InProcess(_) => f.write_str("InProcess(mock)"),
        }
    }
}

/// One IP token, ready to serve.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `namespace/name` of the IP token.
    pub id: String,
    /// Its provider.
    pub provider: Provider,
    /// The resource's provider kind (its name).
    kind: ProviderKind,
    endpoint: Endpoint,
    auth: Option<(HeaderName, HeaderValue)>,
    api_version: Option<String>,
    forward_headers: Vec<String>,
    /// The key, kept to mask it in whatever the provider sends back.
    key: Option<SecretString>,
}

impl Upstream {
    /// Builds the upstream for a compiled IP token; `key` is its resolved secret.
    pub fn new(config: &IpTokenConfig, key: Option<SecretString>) -> Result<Self> {
        let provider = Provider::from_kind(config.provider);
        let base = config.base_url.clone().or_else(|| provider.default_base_url().map(str::to_owned));
        let endpoint = match (provider, base) {
            (_, Some(base_url)) => Endpoint::Http { base_url },
            (Provider::Mock, None) => Endpoint::InProcess(tollgate_mock_provider::router(Default::default())),
            (p, None) => {
                return Err(Error::Config(format!("IP token {} ({p:?}) has no base URL", config.id)));
            }
        };
        let auth = key.as_ref().map(|k| provider.auth_header(k)).transpose()?;
        Ok(Self {
            id: config.id.clone(),
            provider,
            kind: config.provider,
            endpoint,
            auth,
            api_version: config.api_version.clone(),
            forward_headers: config.forward_headers.clone(),
            key,
        })
    }

    /// `text` from the provider with this upstream's key (and any prefix of it of 8 bytes
    /// or more) masked: for every upstream text that reaches a caller, a log or a span.
    pub fn mask<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.key {
            Some(k) => crate::secrets::mask_secret(text, k.expose_secret()),
            None => std::borrow::Cow::Borrowed(text),
        }
    }

    /// The provider's name as in resources and usage records.
    pub fn provider_name(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The upstream's host (for traces; never a credential).
    pub fn server_address(&self) -> &str {
        match &self.endpoint {
            Endpoint::Http { base_url } => {
                let rest = base_url.split_once("://").map_or(base_url.as_str(), |(_, r)| r);
                let host_port = rest.split('/').next().unwrap_or(rest);
                let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
                host_port.split(':').next().unwrap_or(host_port)
            }
            Endpoint::InProcess(_) => "in-process",
        }
    }

    /// The wire format of this upstream.
    pub fn wire(&self) -> Wire {
        self.provider.wire()
    }

    /// Builds the upstream request: URL, key, provider headers, forwarded caller headers.
    pub fn request(
        &self,
        op: Operation,
        upstream_model: &str,
        body: Bytes,
        caller_headers: &HeaderMap,
    ) -> Result<Request<Body>, http::Error> {
        let path = self.provider.path(op, upstream_model, self.api_version.as_deref());
        let uri = match &self.endpoint {
            Endpoint::Http { base_url } => format!("{base_url}{path}"),
            Endpoint::InProcess(_) => format!("http://mock.invalid/v1{path}"),
        };
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream");
        if let Some((name, value)) = &self.auth {
            builder = builder.header(name, value);
        }
        if self.provider == Provider::Anthropic {
            builder = builder.header("anthropic-version", ANTHROPIC_VERSION);
        }
        if let Some(headers) = builder.headers_mut() {
            for (name, value) in caller_headers {
                let n = name.as_str();
                if self.forward_headers.iter().any(|p| n.starts_with(p.as_str())) && !is_hop_or_auth(n) {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        builder.body(Body::from(body))
    }
}

/// Headers never forwarded, whatever the configuration says.
fn is_hop_or_auth(name: &str) -> bool {
    matches!(
        name,
        "authorization"
            | "x-api-key"
            | "api-key"
            | "host"
            | "content-length"
            | "content-type"
            | "connection"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "keep-alive"
            | "proxy-authorization"
            | "anthropic-version"
    )
}

/// Why an upstream call failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to the upstream")]
    Connect,
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the upstream connection failed")]
    Transport,
}

/// Sends upstream requests over one shared connection pool.
#[derive(Clone)]
pub struct UpstreamClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    /// Time allowed until response headers arrive.
    pub header_timeout: Duration,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").field("header_timeout", &self.header_timeout).finish()
    }
}

impl UpstreamClient {
    /// A client with rustls (ring), webpki roots, HTTP/2 where the server offers it.
    pub fn new(connect_timeout: Duration, header_timeout: Duration) -> Result<Self> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| Error::Tls(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(https);
        Ok(Self { http, header_timeout })
    }

    /// Sends `request` to `upstream`; resolves when the response headers arrive.
    pub async fn send(
        &self,
        upstream: &Upstream,
        request: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let call = async {
            match &upstream.endpoint {
                Endpoint::Http { .. } => match self.http.request(request).await {
                    Ok(response) => Ok(response.map(Body::new)),
                    Err(e) if e.is_connect() => Err(UpstreamError::Connect),
                    Err(e) => {
                        tracing::debug!(error = %e, upstream = %upstream.id, "upstream transport error");
                        Err(UpstreamError::Transport)
                    }
                },
                Endpoint::InProcess(router) => {
                    let (parts, body) = request.into_parts();
                    let mut request = Request::from_parts(parts, body);
                    // The mock's routes are rooted at /v1 like the real providers.
                    *request.uri_mut() = strip_authority(request.uri());
                    match router.clone().oneshot(request).await {
                        Ok(response) => Ok(response),
                        Err(never) => match never {},
                    }
                }
            }
        };
        match tokio::time::timeout(self.header_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout(self.header_timeout)),
        }
    }

    /// A plain request through the pool (used by the CLI against the admin API).
    pub async fn raw(&self, request: Request<Body>) -> Result<Response<Body>, UpstreamError> {
        match tokio::time::timeout(self.header_timeout, self.http.request(request)).await {
            Ok(Ok(response)) => Ok(response.map(Body::new)),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect),
            Ok(Err(_)) => Err(UpstreamError::Transport),
            Err(_) => Err(UpstreamError::Timeout(self.header_timeout)),
        }
    }
}

fn strip_authority(uri: &http::Uri) -> http::Uri {
    uri.path_and_query()
        .and_then(|pq| pq.as_str().parse().ok())
        .unwrap_or_else(|| http::Uri::from_static("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_per_provider() {
        assert_eq!(Provider::OpenAi.path(Operation::Chat, "m", None), "/chat/completions");
        assert_eq!(Provider::Anthropic.path(Operation::Chat, "m", None), "/messages");
        assert_eq!(
            Provider::AzureOpenAi.path(Operation::Embeddings, "my dep", Some("2024-10-21")),
            "/deployments/my%20dep/embeddings?api-version=2024-10-21"
        );
    }

    #[test]
    fn auth_headers_are_sensitive_and_never_debug_printed() {
        let key = SecretString::new("sk-secret-value".into());
        for p in [Provider::OpenAi, Provider::AzureOpenAi, Provider::Anthropic] {
            let (_, value) = p.auth_header(&key).unwrap();
            assert!(value.is_sensitive());
            assert!(!format!("{value:?}").contains("sk-secret"));
        }
    }
}
