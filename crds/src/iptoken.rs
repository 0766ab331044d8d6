//! `IPToken`: an inference-provider credential that only the platform holds, and the models
//! it serves. Developers and agents never see it; they use virtual keys.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An inference-provider token: a provider credential and the models it serves.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollgate.dev",
    version = "v1alpha1",
    kind = "IPToken",
    namespaced,
    status = "IpTokenStatus",
    shortname = "ipt",
    category = "tollgate",
    doc = "An inference-provider token: a provider credential, kept in a Secret, and the models it serves.",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".spec.weight"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(self.provider in ['openai', 'anthropic', 'azure-openai']) || has(self.secretRef)",
        "message": "secretRef is required for providers openai, anthropic and azure-openai"
    },
    {
        "rule": "!(self.provider in ['azure-openai', 'openai-compatible']) || has(self.baseUrl)",
        "message": "baseUrl is required for providers azure-openai and openai-compatible"
    },
    {"rule": "self.provider != 'azure-openai' || has(self.apiVersion)", "message": "apiVersion is required for provider azure-openai"}
]))]
pub struct IpTokenSpec {
    /// The API this token speaks: `openai`, `anthropic`, `azure-openai`, `openai-compatible`
    /// (vLLM, Ollama, any OpenAI-compatible server) or `mock` (the built-in mock provider).
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "provider is immutable: create a new IPToken for another provider"}
    ]))]
    pub provider: ProviderKind,
    /// Base URL of the provider's API, up to and including the version path
    /// (`https://api.openai.com/v1`). Defaults for `openai` and `anthropic`; required for
    /// `azure-openai` (`https://RESOURCE.openai.azure.com/openai`) and `openai-compatible`.
    /// For `mock` it may point at a `tollgate-mock-provider` server; when absent the mock
    /// runs inside the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub base_url: Option<String>,
    /// Where the provider key is kept. In Kubernetes a Secret in the token's namespace; in
    /// standalone mode the secrets file or an environment variable (see the CLI's README).
    /// Not needed for `mock`, nor for an `openai-compatible` server without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// The models this token serves, by the name callers ask for.
    #[schemars(length(min = 1, max = 256))]
    pub models: Vec<ModelSpec>,
    /// Upstream requests-per-minute limit of this credential, so Tollgate throttles before
    /// the provider does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rpm: Option<u32>,
    /// Upstream tokens-per-minute limit of this credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tpm: Option<u64>,
    /// Relative weight when several tokens serve the same model (default 1; 0 takes it out
    /// of rotation without deleting it).
    #[serde(default = "default_weight")]
    #[schemars(range(max = 1000))]
    pub weight: u32,
    /// Azure OpenAI `api-version` query parameter (required for `azure-openai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub api_version: Option<String>,
    /// Request headers passed from the caller to this upstream, matched case-insensitively
    /// as prefixes (for example `anthropic-beta` or `x-mock-`). Nothing else is forwarded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))
    )]
    pub forward_headers: Vec<String>,
}

fn default_weight() -> u32 {
    1
}

/// The API an IP token speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI's API.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Azure OpenAI (deployments, `api-key` header, `api-version`).
    AzureOpenai,
    /// Any server speaking OpenAI's API (vLLM, Ollama, LM Studio, ...).
    OpenaiCompatible,
    /// Tollgate's own mock provider (OpenAI wire format).
    Mock,
}

impl ProviderKind {
    /// The name used in resources, metrics and usage records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::AzureOpenai => "azure-openai",
            Self::OpenaiCompatible => "openai-compatible",
            Self::Mock => "mock",
        }
    }
}

/// A reference to a key inside a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// A model served by an IP token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelSpec {
    /// The model name callers ask for (`gpt-4o-mini`, `claude-sonnet-4-5`).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The name sent upstream when it differs (an Azure deployment name, a vLLM model path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub upstream_name: Option<String>,
    /// What the model does: `chat` (default) or `embedding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModelKind>,
    /// Prices for this model on this token, overriding the built-in price table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<ModelPrices>,
    /// Models to try, in order, when this one cannot answer (every IP token serving it
    /// failed or is unavailable). Their union over all tokens serving the model applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub fallbacks: Vec<String>,
    /// Which failures move on to the fallbacks: `unavailable`, `timeout`, `rate-limited`,
    /// `context-length-exceeded`, `content-filtered` (default: the first three).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 5),
        inner(
            length(max = 32),
            regex(
                pattern = r"^(unavailable|timeout|rate-limited|context-length-exceeded|content-filtered)$"
            )
        )
    )]
    pub fallback_on: Vec<String>,
    /// Timeouts for this model (defaults: first byte 60 s, 30 s between stream chunks,
    /// 600 s in total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<ModelTimeouts>,
}

/// Per-model timeouts, in seconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelTimeouts {
    /// Until the provider's response headers arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub first_byte_seconds: Option<u32>,
    /// Longest silence between two chunks of a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub idle_seconds: Option<u32>,
    /// For the whole request, retries and fallbacks included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub total_seconds: Option<u32>,
}

/// What a model does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Chat / messages completions.
    Chat,
    /// Embeddings.
    Embedding,
}

/// Per-million-token prices in USD, as decimal strings (`"0.15"`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelPrices {
    /// USD per million input tokens.
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$"))]
    pub input_per_mtok: String,
    /// USD per million output tokens.
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$"))]
    pub output_per_mtok: String,
    /// USD per million cached input tokens (defaults to the input price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$"))]
    pub cached_input_per_mtok: Option<String>,
}

/// Observed state of an IP token.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpTokenStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Accepted` (its Secret and key exist; `SecretNotFound`,
    /// `SecretKeyNotFound` otherwise), `Programmed` (in the published configuration),
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// SHA-256 (hex, first 16 characters) of the referenced Secret value, so a rotation is
    /// visible; never the value itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub secret_hash: Option<String>,
}

/// The `IPToken` resource under the crate's naming convention.
pub type IpToken = IPToken;
