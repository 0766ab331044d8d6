//! `DataPlane`: a gateway deployment. The operator turns one into a Deployment, Service,
//! HPA, PodDisruptionBudget, ServiceAccount and RBAC, and delivers the compiled
//! configuration to its pods as mounted files (a ConfigMap and a Secret of provider keys).
//!
//! Where state lives decides how far it scales: budget counters in `memory` are per pod, so
//! a `memory` cache (or a SQLite file, which one pod owns) allows exactly one replica. The
//! schema refuses anything else, and so does the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::iptoken::SecretRef;
use crate::workload::{Replicas, Resources};

/// A Tollgate gateway deployment.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollgate.dev",
    version = "v1alpha1",
    kind = "DataPlane",
    namespaced,
    status = "DataPlaneStatus",
    shortname = "dp",
    category = "tollgate",
    doc = "A Tollgate gateway deployment: replicas, autoscaling, cache and database.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Cache","type":"string","jsonPath":".spec.cache.type"}"#,
    printcolumn = r#"{"name":"Database","type":"string","jsonPath":".spec.database.type"}"#,
    printcolumn = r#"{"name":"Config","type":"string","jsonPath":".status.configHash","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.cache.type != 'memory' || self.replicas.max == 1",
        "message": "a memory cache keeps budget counters per replica, multiplying every limit: use cache type redis for more than one replica"
    },
    {
        "rule": "self.database.type != 'sqlite' || self.replicas.max == 1",
        "message": "a SQLite database belongs to one pod: use database type postgres for more than one replica"
    }
]))]
pub struct DataPlaneSpec {
    /// Gateway image (default: the image of the operator's own release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// How many gateway pods run (default one), scaled by an HPA on CPU between `min` and
    /// `max`. More than one needs `cache: redis` and `database: postgres`.
    #[serde(default)]
    pub replicas: Replicas,
    /// CPU and memory of each gateway. Defaults: requests 250m CPU and 256Mi, limit 1Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Where budget counters and rate-limit windows live.
    #[serde(default)]
    pub cache: Cache,
    /// Where usage records and virtual keys are stored.
    #[serde(default)]
    pub database: Database,
    /// `json` (default) or `text` logs.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax (`info`, `tollgate_dataplane=debug,info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = r"^[A-Za-z0-9_:,=.\-\[\]{}]+$"))]
    pub log_level: Option<String>,
    /// OTLP gRPC endpoint traces are sent to (`http://otel-collector.observability:4317`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = r"^https?://"))]
    pub otlp_endpoint: Option<String>,
}

/// The cache of budget counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'redis' ? has(self.redis) : !has(self.redis)", "message": "redis settings are required with type redis and allowed only then"}
]))]
pub struct Cache {
    /// `memory` (default; one replica only) or `redis` (shared by every replica).
    #[serde(default, rename = "type")]
    pub type_: CacheType,
    /// Redis connection, with `type: redis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisCache>,
}

/// Kinds of cache.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheType {
    /// In the gateway's memory.
    #[default]
    Memory,
    /// A Redis server.
    Redis,
}

/// A Redis connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisCache {
    /// The key of a Secret (in the DataPlane's namespace) holding the URL
    /// (`redis://:PASSWORD@redis:6379/0`, `rediss://` for TLS).
    pub url_secret_ref: SecretRef,
    /// Prefix of every key, so several installations can share one Redis (default
    /// `tollgate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_.:-]+$"))]
    pub key_prefix: Option<String>,
}

/// The database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'postgres' ? has(self.postgres) : !has(self.postgres)", "message": "postgres settings are required with type postgres and allowed only then"},
    {"rule": "self.type == 'sqlite' || !has(self.sqlite)", "message": "sqlite settings are allowed only with type sqlite"}
]))]
pub struct Database {
    /// `sqlite` (default; one replica only) or `postgres`.
    #[serde(default, rename = "type")]
    pub type_: DatabaseType,
    /// PostgreSQL connection, with `type: postgres`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresDatabase>,
    /// Where the SQLite file lives, with `type: sqlite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteDatabase>,
}

/// Kinds of database.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseType {
    /// A SQLite file in the pod.
    #[default]
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A PostgreSQL connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresDatabase {
    /// The key of a Secret (in the DataPlane's namespace) holding the URL
    /// (`postgres://USER:PASSWORD@HOST:5432/tollgate?sslmode=require`).
    pub url_secret_ref: SecretRef,
}

/// Where a SQLite file lives.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqliteDatabase {
    /// A PersistentVolumeClaim (same namespace) to keep the file on. Without one the file is
    /// on an `emptyDir` and usage records are lost when the pod goes: fine for a trial only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub persistent_volume_claim_name: Option<String>,
}

/// Log formats of the gateway.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// The value of `TOLLGATE_LOG_FORMAT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
        }
    }
}

/// Observed state of a data plane.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Accepted` (valid, Secrets found), `Programmed` (children and
    /// configuration written), `Ready` (pods available).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Gateway pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The configuration version (`DataPlaneConfig.hash`) last published to the gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub config_hash: Option<String>,
}
