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
use url::Url;

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
    /// Token counting of a message (Anthropic wire only: `/v1/messages/count_tokens`).
    CountTokens,
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

    /// The operation's URL under `base`: its path segments appended to the base's path
    /// (each percent-encoded by `url`, so a deployment name cannot add a segment, a query or
    /// a fragment), and Azure's `api-version` added to whatever query the base has.
    fn url(self, base: &Url, op: Operation, upstream_model: &str, api_version: Option<&str>) -> Url {
        let segments: &[&str] = match (self, op) {
            (_, Operation::CountTokens) => &["messages", "count_tokens"],
            (Self::Anthropic, _) => &["messages"],
            (Self::AzureOpenAi, Operation::Chat) => &["deployments", upstream_model, "chat", "completions"],
            (Self::AzureOpenAi, Operation::Embeddings) => &["deployments", upstream_model, "embeddings"],
            (Self::OpenAi | Self::OpenAiCompatible | Self::Mock, Operation::Chat) => &["chat", "completions"],
            (Self::OpenAi | Self::OpenAiCompatible | Self::Mock, Operation::Embeddings) => &["embeddings"],
        };
        let mut url = base.clone();
        // NB: only a cannot-be-a-base URL (`mailto:x`) has no segments; `Upstream::new`
        // accepts http(s) bases only.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if self == Self::AzureOpenAi {
            url.query_pairs_mut().append_pair("api-version", api_version.unwrap_or_default());
        }
        url
    }
}

/// The base the in-process mock is addressed by: its routes are rooted at /v1 like the
/// real providers'.
const MOCK_BASE_URL: &str = "http://mock.invalid/v1";

/// Where requests go.
#[derive(Clone)]
enum Endpoint {
    Http { base_url: Url },
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
            (_, Some(base)) => {
                let base_url = Url::parse(&base)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "IP token {}: base URL {base:?} is not an http(s) URL",
                            config.id
                        ))
                    })?;
                Endpoint::Http { base_url }
            }
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

    /// What stands in the list for an IP token that is out of service, so indices stay
    /// aligned: no key, and an in-process endpoint that answers 404 to everything. It is
    /// never chosen.
    pub fn stand_in(config: &IpTokenConfig) -> Self {
        let provider = Provider::from_kind(config.provider);
        Self {
            id: config.id.clone(),
            provider,
            kind: config.provider,
            endpoint: Endpoint::InProcess(Router::new()),
            auth: None,
            api_version: config.api_version.clone(),
            forward_headers: Vec::new(),
            key: None,
        }
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
            // An IPv6 address without its brackets, as OpenTelemetry's `server.address`.
            Endpoint::Http { base_url } => {
                base_url.host_str().map_or("", |h| h.trim_start_matches('[').trim_end_matches(']'))
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
    ) -> Result<Request<Body>> {
        let mock;
        let base = match &self.endpoint {
            Endpoint::Http { base_url } => base_url,
            Endpoint::InProcess(_) => {
                mock =
                    Url::parse(MOCK_BASE_URL).map_err(|e| Error::Config(format!("{MOCK_BASE_URL}: {e}")))?;
                &mock
            }
        };
        let url = self.provider.url(base, op, upstream_model, self.api_version.as_deref());
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(url.as_str())
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
        builder.body(Body::from(body)).map_err(|e| Error::Config(format!("upstream request: {e}")))
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
    fn urls_per_provider() {
        let url = |p: Provider, op, base: &str, model, version| {
            p.url(&Url::parse(base).unwrap(), op, model, version).to_string()
        };
        let v1 = "https://api.openai.com/v1";
        assert_eq!(url(Provider::OpenAi, Operation::Chat, v1, "m", None), format!("{v1}/chat/completions"));
        assert_eq!(url(Provider::OpenAi, Operation::Embeddings, v1, "m", None), format!("{v1}/embeddings"));
        assert_eq!(
            url(Provider::Anthropic, Operation::Chat, "https://api.anthropic.com/v1", "m", None),
            "https://api.anthropic.com/v1/messages"
        );
        // A trailing slash, a bare host: one slash between base and path.
        assert_eq!(
            url(Provider::OpenAiCompatible, Operation::Chat, "http://vllm:8000/v1/", "m", None),
            "http://vllm:8000/v1/chat/completions"
        );
        assert_eq!(
            url(Provider::Mock, Operation::Chat, "http://[::1]:9", "m", None),
            "http://[::1]:9/chat/completions"
        );
        let azure = "https://x.openai.azure.com/openai";
        assert_eq!(
            url(Provider::AzureOpenAi, Operation::Embeddings, azure, "my dep", Some("2024-10-21")),
            format!("{azure}/deployments/my%20dep/embeddings?api-version=2024-10-21")
        );
        // A deployment name stays one segment: `/`, `?`, `#` and `%` are encoded.
        assert_eq!(
            url(Provider::AzureOpenAi, Operation::Chat, azure, "a/b?c#d%e", Some("v 1&x")),
            format!("{azure}/deployments/a%2Fb%3Fc%23d%25e/chat/completions?api-version=v+1%26x")
        );
        // A base with its own query keeps it.
        assert_eq!(
            url(Provider::AzureOpenAi, Operation::Chat, "https://h/openai?tenant=t", "d", Some("1")),
            "https://h/openai/deployments/d/chat/completions?tenant=t&api-version=1"
        );
    }

    #[test]
    fn server_address_is_the_host() {
        let upstream = |base: &str| {
            let config = IpTokenConfig {
                id: "ns/t".into(),
                provider: ProviderKind::OpenaiCompatible,
                base_url: Some(base.into()),
                secret_ref: None,
                api_version: None,
                forward_headers: Vec::new(),
                rpm: None,
                tpm: None,
            };
            Upstream::new(&config, None)
        };
        for (base, host) in [
            ("https://api.openai.com/v1", "api.openai.com"),
            ("http://user:pw@vllm:8000/v1", "vllm"),
            ("http://10.0.0.1:8000", "10.0.0.1"),
            ("http://[::1]:8000/v1", "::1"),
        ] {
            assert_eq!(upstream(base).unwrap().server_address(), host, "{base}");
        }
        for bad in ["http://h:99999", "http://[::1", "ftp://h/x", "no scheme"] {
            assert!(upstream(bad).is_err(), "{bad}");
        }
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
