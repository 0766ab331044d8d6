//! # tollgate-sdk
//!
//! The agent side of [Tollgate](https://tollgate.dev): LLM calls through the gateway with
//! the agent's identity (its virtual key), tool-call verdicts before a tool runs, budget
//! state, and gateway refusals as typed errors an agent can act on.
//!
//! Data flow: [`Client`] → the gateway's OpenAI-compatible HTTP API (chat, streams,
//! embeddings) and its gRPC runtime service `tollgate.v1.Runtime` (tool checks, text
//! checks, budgets), both on the gateway's one address. Errors from either arrive as
//! [`Error`].
//!
//! ```no_run
//! use tollgate_sdk::{ChatRequest, Client, Error};
//!
//! # async fn run() -> Result<(), Error> {
//! // TOLLGATE_BASE_URL (default http://127.0.0.1:8080) and TOLLGATE_API_KEY.
//! let client = Client::from_env()?;
//! match client.chat(&ChatRequest::new("mock-1").user("Say hello")).await {
//!     Ok(reply) => println!("{}", reply.text()),
//!     Err(Error::BudgetExceeded { budget, resets_at, .. }) => {
//!         eprintln!("budget {budget} is spent until {resets_at:?}");
//!     }
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Before running a tool the model asked for:
//!
//! ```no_run
//! # async fn run(client: tollgate_sdk::Client) -> Result<(), tollgate_sdk::Error> {
//! let arguments = serde_json::json!({"url": "https://example.com"});
//! let verdict = client.check_tool("http_get", &arguments).await?;
//! // The arguments to use (redacted if a policy said so), or Error::ToolDenied.
//! let arguments = verdict.into_arguments(arguments)?;
//! # let _ = arguments;
//! # Ok(())
//! # }
//! ```
//!
//! An existing reqwest-based provider client goes through the gateway with
//! [`Client::middleware`]; see `examples/middleware.rs`.

mod chat;
mod error;
mod middleware;
mod runtime;
mod trace;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use http::HeaderValue;
use reqwest::Url;
use serde::de::DeserializeOwned;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::runtime_client::RuntimeClient;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub use chat::{
    ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, Embedding, EmbeddingsResponse,
    FunctionCall, Message, ToolCall, Usage,
};
pub use error::{Error, Result};
pub use middleware::{GatewayRouting, PROVIDER_HOSTS};
pub use runtime::{BudgetStatus, Finding, Stage, TextVerdict, ToolDecision, ToolVerdict};
pub use trace::TraceContext;

/// The gateway address `tollgate up` listens on by default.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";

/// A stream of chat chunks; ends after the usage chunk, or with the error that ended it.
pub type ChatStream = std::pin::Pin<Box<dyn Stream<Item = Result<ChatChunk>> + Send>>;

/// A virtual key. Never printed.
#[derive(Clone)]
struct ApiKey(HeaderValue);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug)]
struct Inner {
    base: Url,
    key: ApiKey,
    http: reqwest::Client,
    grpc: OnceLock<RuntimeClient<Channel>>,
    timeout: Duration,
}

/// A gateway client. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    trace: Option<TraceContext>,
}

/// Builds a [`Client`].
#[derive(Debug, Default)]
pub struct ClientBuilder {
    base_url: Option<String>,
    api_key: Option<String>,
    timeout: Option<Duration>,
    trace: Option<TraceContext>,
}

impl ClientBuilder {
    /// The gateway's base URL (`https://tollgate.example.com`; a trailing `/v1` is accepted).
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The agent's virtual key (`tg-...`).
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Time allowed for a whole call (default 10 minutes; streams: until the first byte).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The trace context every call carries.
    #[must_use]
    pub fn trace_context(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client> {
        let raw = self.base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let mut base = Url::parse(raw.trim())
            .map_err(|e| Error::Config(format!("base URL {raw:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(Error::Config(format!("base URL {raw:?} must be http(s)://host[:port]")));
        }
        // Accept OPENAI_BASE_URL-style values: the SDK adds `/v1` itself.
        let path = base.path().trim_end_matches('/').trim_end_matches("/v1").to_owned();
        base.set_path(&path);
        let key = self.api_key.filter(|k| !k.trim().is_empty()).ok_or_else(|| {
            Error::Config("no API key: set TOLLGATE_API_KEY or call ClientBuilder::api_key".into())
        })?;
        let mut key = HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .map_err(|_| Error::Config("the API key holds characters a header cannot carry".into()))?;
        key.set_sensitive(true);
        // NB: the workspace uses rustls with the ring provider; install it for reqwest unless
        // the application installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = self.timeout.unwrap_or(Duration::from_secs(600));
        let http = reqwest::Client::builder()
            .user_agent(concat!("tollgate-sdk-rust/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner { base, key: ApiKey(key), http, grpc: OnceLock::new(), timeout }),
            trace: self.trace,
        })
    }
}

impl Client {
    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client from `TOLLGATE_BASE_URL` (default [`DEFAULT_BASE_URL`]),
    /// `TOLLGATE_API_KEY` (required) and `TRACEPARENT` (optional; the W3C trace context the
    /// calls join).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Client::from_env`] with the variables read through `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut b = Self::builder();
        if let Some(url) = var("TOLLGATE_BASE_URL").filter(|v| !v.trim().is_empty()) {
            b = b.base_url(url);
        }
        if let Some(key) = var("TOLLGATE_API_KEY") {
            b = b.api_key(key);
        }
        if let Some(tp) = var("TRACEPARENT") {
            let t = TraceContext::parse(&tp)
                .ok_or_else(|| Error::Config(format!("TRACEPARENT {tp:?} is not a W3C traceparent")))?;
            b = b.trace_context(t);
        }
        b.build()
    }

    /// This client, with every call carrying `trace` (the agent's current span).
    #[must_use]
    pub fn with_trace_context(&self, trace: TraceContext) -> Self {
        Self { inner: Arc::clone(&self.inner), trace: Some(trace) }
    }

    /// The gateway's base URL for OpenAI clients (`.../v1`).
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.inner.base.as_str().trim_end_matches('/'))
    }

    /// The gateway's base URL for Anthropic clients (they add `/v1` themselves).
    pub fn anthropic_base_url(&self) -> String {
        self.inner.base.as_str().trim_end_matches('/').to_owned()
    }

    /// A reqwest middleware routing provider calls through the gateway with this client's
    /// key and trace context (see `examples/middleware.rs`).
    pub fn middleware(&self) -> GatewayRouting {
        GatewayRouting {
            base: self.inner.base.clone(),
            key: self.inner.key.0.clone(),
            trace: self.trace.clone(),
            route_all: false,
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .inner
            .http
            .post(format!("{}{path}", self.openai_base_url()))
            .header(http::header::AUTHORIZATION, self.inner.key.0.clone());
        if let Some(t) = &self.trace {
            for (name, value) in t.headers() {
                r = r.header(name, value);
            }
        }
        r
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        Err(Error::from_http(status, &headers, &body))
    }

    async fn json<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let response = self.send(request.timeout(self.inner.timeout)).await?;
        let bytes = response.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// A chat completion (non-streaming; `stream` in `extra` is ignored).
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse> {
        let mut body = serde_json::to_value(request).map_err(|e| Error::Decode(e.to_string()))?;
        if let Some(o) = body.as_object_mut() {
            o.insert("stream".into(), false.into());
        }
        let mut r = self.post("/chat/completions").json(&body);
        for (name, value) in &request.headers {
            r = r.header(name, value);
        }
        self.json(r).await
    }

    /// A streamed chat completion. The stream yields chunks as they arrive; a refusal before
    /// the first chunk is this call's error, one mid-stream (a safety policy ending the
    /// answer) is the stream's last item.
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream> {
        let mut body = serde_json::to_value(request).map_err(|e| Error::Decode(e.to_string()))?;
        if let Some(o) = body.as_object_mut() {
            o.insert("stream".into(), true.into());
            o.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
        }
        let mut r = self.post("/chat/completions").json(&body);
        for (name, value) in &request.headers {
            r = r.header(name, value);
        }
        let response = tokio_timeout(self.inner.timeout, self.send(r)).await?;
        use eventsource_stream::Eventsource;
        let events = response.bytes_stream().eventsource();
        let stream = events
            .map(|event| match event {
                Err(e) => Some(Err(Error::Transport(e.to_string()))),
                Ok(e) if e.data.trim() == "[DONE]" => None,
                Ok(e) => Some(match Error::from_stream_event(&e.data) {
                    Some(err) => Err(err),
                    None => {
                        serde_json::from_str::<ChatChunk>(&e.data).map_err(|e| Error::Decode(e.to_string()))
                    }
                }),
            })
            .take_while(|item| std::future::ready(item.is_some()))
            .filter_map(std::future::ready);
        Ok(Box::pin(stream))
    }

    /// Embeddings of `inputs`.
    pub async fn embeddings(&self, model: &str, inputs: &[&str]) -> Result<EmbeddingsResponse> {
        let r = self.post("/embeddings").json(&serde_json::json!({"model": model, "input": inputs}));
        self.json(r).await
    }

    fn runtime(&self) -> Result<RuntimeClient<Channel>> {
        if let Some(c) = self.inner.grpc.get() {
            return Ok(c.clone());
        }
        let mut endpoint = Endpoint::from_shared(self.inner.base.as_str().trim_end_matches('/').to_owned())
            .map_err(|e| Error::Config(format!("gRPC endpoint: {e}")))?
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30));
        if self.inner.base.scheme() == "https" {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(|e| Error::Config(format!("gRPC TLS: {e}")))?;
        }
        let client = RuntimeClient::new(endpoint.connect_lazy());
        Ok(self.inner.grpc.get_or_init(|| client).clone())
    }

    fn grpc_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(self.inner.key.0.as_bytes()) {
            r.metadata_mut().insert("authorization", v);
        }
        if let Some(t) = &self.trace {
            for (name, value) in t.headers() {
                if let Ok(v) = value.parse() {
                    r.metadata_mut().insert(name, v);
                }
            }
        }
        r
    }

    /// Asks whether the agent may run `tool` with `arguments` (the agent's tool rules and
    /// output detectors decide). A denial is a verdict, not an error; use
    /// [`ToolVerdict::into_arguments`] to turn it into one.
    pub async fn check_tool(&self, tool: &str, arguments: &serde_json::Value) -> Result<ToolVerdict> {
        self.check_tool_in_run(tool, arguments, "").await
    }

    /// [`Client::check_tool`] naming the agent run it belongs to (for logs and traces).
    pub async fn check_tool_in_run(
        &self,
        tool: &str,
        arguments: &serde_json::Value,
        run_id: &str,
    ) -> Result<ToolVerdict> {
        let request = self.grpc_request(pb::CheckToolRequest {
            tool: tool.to_owned(),
            arguments_json: arguments.to_string(),
            context: Some(pb::ToolContext { run_id: run_id.to_owned(), ..Default::default() }),
        });
        let response = self.runtime()?.check_tool(request).await.map_err(Error::from_status)?;
        ToolVerdict::from_pb(tool, response.into_inner())
    }

    /// Checks a text against the agent's safety policies.
    pub async fn validate_text(&self, text: &str, stage: Stage) -> Result<TextVerdict> {
        let stage = match stage {
            Stage::Input => pb::Stage::Input,
            Stage::Output => pb::Stage::Output,
        };
        let request =
            self.grpc_request(pb::ValidateTextRequest { text: text.to_owned(), stage: stage.into() });
        let response = self.runtime()?.validate_text(request).await.map_err(Error::from_status)?;
        TextVerdict::from_pb(response.into_inner())
    }

    /// The budgets the agent's requests count against (its own, its team's, their parents).
    pub async fn budgets(&self) -> Result<Vec<BudgetStatus>> {
        let request = self.grpc_request(pb::GetBudgetRequest::default());
        let response = self.runtime()?.get_budget(request).await.map_err(Error::from_status)?;
        Ok(response.into_inner().budgets.into_iter().map(BudgetStatus::from).collect())
    }

    /// One budget by `namespace/name` (or a name in `default`); [`Error::NotFound`] when it
    /// does not apply to the agent.
    pub async fn budget(&self, name: &str) -> Result<BudgetStatus> {
        let request = self.grpc_request(pb::GetBudgetRequest { name: name.to_owned() });
        let response = self.runtime()?.get_budget(request).await.map_err(Error::from_status)?;
        response
            .into_inner()
            .budgets
            .into_iter()
            .next()
            .map(BudgetStatus::from)
            .ok_or_else(|| Error::NotFound { message: format!("no budget {name:?}") })
    }
}

async fn tokio_timeout<T>(d: Duration, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| Error::Transport(format!("no answer within {} s", d.as_secs())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(vars: &[(&str, &str)]) -> Result<Client> {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Client::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn configuration_from_the_environment() {
        let c =
            client(&[("TOLLGATE_API_KEY", "tg-abc"), ("TOLLGATE_BASE_URL", "https://gw.example.com/v1/")])
                .unwrap();
        assert_eq!(c.openai_base_url(), "https://gw.example.com/v1");
        assert_eq!(c.anthropic_base_url(), "https://gw.example.com");
        let c = client(&[("TOLLGATE_API_KEY", "tg-abc")]).unwrap();
        assert_eq!(c.openai_base_url(), "http://127.0.0.1:8080/v1");
        assert!(!format!("{c:?}").contains("tg-abc"), "the key is never printed");

        let e = client(&[]).unwrap_err();
        assert!(e.to_string().contains("TOLLGATE_API_KEY"), "{e}");
        let e = client(&[("TOLLGATE_API_KEY", "k"), ("TOLLGATE_BASE_URL", "ftp://x")]).unwrap_err();
        assert!(matches!(e, Error::Config(_)));
        let e = client(&[("TOLLGATE_API_KEY", "k"), ("TRACEPARENT", "nonsense")]).unwrap_err();
        assert!(e.to_string().contains("TRACEPARENT"));
    }

    #[test]
    fn the_middleware_routes_provider_hosts_with_the_virtual_key() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = client(&[
            ("TOLLGATE_API_KEY", "tg-abc"),
            ("TOLLGATE_BASE_URL", "http://gw:8080"),
            ("TRACEPARENT", tp),
        ])
        .unwrap();
        let m = c.middleware();
        let http = reqwest::Client::new();
        let mut r = http
            .post("https://api.openai.com/v1/chat/completions?x=1")
            .bearer_auth("sk-real-provider-key")
            .build()
            .unwrap();
        m.rewrite(&mut r);
        assert_eq!(r.url().as_str(), "http://gw:8080/v1/chat/completions?x=1");
        assert_eq!(r.headers()["authorization"], "Bearer tg-abc");
        assert_eq!(r.headers()["traceparent"], tp);

        let mut r =
            http.post("https://api.anthropic.com/v1/messages").header("x-api-key", "sk-ant").build().unwrap();
        m.rewrite(&mut r);
        assert_eq!(r.url().as_str(), "http://gw:8080/v1/messages");
        assert!(r.headers().get("x-api-key").is_none(), "the provider key never leaves");

        let mut r = http.get("https://example.com/v1/models").build().unwrap();
        m.rewrite(&mut r);
        assert_eq!(r.url().host_str(), Some("example.com"), "other hosts are left alone");
        let mut r = http.get("http://localhost:11434/v1/models").build().unwrap();
        m.clone().route_all().rewrite(&mut r);
        assert_eq!(r.url().as_str(), "http://gw:8080/v1/models");
    }
}
