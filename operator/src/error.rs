//! The operator's error type. Every variant that a user can cause maps to a stable condition
//! reason ([`Error::reason`]) so it lands in the resource's status, and to a metric label
//! ([`Error::metric_label`]) for the reconcile-error counter.

use tollgate_crds::status::reason;

/// What can go wrong computing or applying a resource's children.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object from the API server always has these; one built by hand may not.
    #[error("{kind} has no metadata.{field}; objects from the API server always do")]
    MissingMetadata {
        /// The resource's kind.
        kind: &'static str,
        /// `name`, `namespace` or `uid`.
        field: &'static str,
    },
    /// A memory cache keeps budget counters per replica, so N replicas would each admit the
    /// full limit: N times the budget.
    #[error(
        "cache type memory keeps budget counters in each replica, which would multiply every \
         limit by the replica count: use cache type redis, or replicas.max 1 (it is {max})"
    )]
    MemoryCacheWithReplicas {
        /// The requested `replicas.max`.
        max: i32,
    },
    /// A SQLite file belongs to one pod.
    #[error(
        "a SQLite database belongs to one pod: use database type postgres, or replicas.max 1 (it is {max})"
    )]
    SqliteWithReplicas {
        /// The requested `replicas.max`.
        max: i32,
    },
    /// The HPA's CPU target is a percentage of the CPU request.
    #[error("replicas.max > replicas.min needs resources.requests.cpu: the HPA scales on a share of it")]
    AutoscalingWithoutCpuRequest,
    /// A provider key was found in the rendered configuration (pasted into a URL or header
    /// list, say). The ConfigMap is readable by more people than the Secret, so it is not
    /// written.
    #[error(
        "the value of Secret {name:?} key {key:?} appears in the gateway configuration; it is not published"
    )]
    SecretInConfig {
        /// The Secret's name.
        name: String,
        /// The key.
        key: String,
    },
    /// Serialising a configuration document failed.
    #[error("cannot serialise the gateway configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// Serialising the gateway's secrets file failed.
    #[error("cannot serialise the gateway secrets file: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

impl Error {
    /// The condition reason this error is reported under (`Accepted=False` or
    /// `Programmed=False`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MemoryCacheWithReplicas { .. } | Self::SqliteWithReplicas { .. } => {
                reason::REPLICAS_NEED_SHARED_STATE
            }
            Self::MissingMetadata { .. }
            | Self::AutoscalingWithoutCpuRequest
            | Self::SecretInConfig { .. } => reason::INVALID_SPEC,
            Self::Json(_) | Self::Yaml(_) => "InternalError",
        }
    }

    /// The `error` label of the reconcile-error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MissingMetadata { .. } => "missing_metadata",
            Self::MemoryCacheWithReplicas { .. } => "memory_cache_with_replicas",
            Self::SqliteWithReplicas { .. } => "sqlite_with_replicas",
            Self::AutoscalingWithoutCpuRequest => "autoscaling_without_cpu_request",
            Self::SecretInConfig { .. } => "secret_in_config",
            Self::Json(_) => "json",
            Self::Yaml(_) => "yaml",
        }
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
