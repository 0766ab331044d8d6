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
    /// A call to the Kubernetes API failed (transient: the controller requeues).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube_client::Error),
    /// Adding or removing the Agent finalizer failed, or the cleanup it guards did.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube_runtime::finalizer::Error<Error>>),
    /// The database (virtual keys, the usage ledger) failed.
    #[error("database: {0}")]
    Store(#[from] tollgate_dataplane::Error),
    /// Budget counters (Redis) could not be read.
    #[error("budget counters: {0}")]
    Counters(#[from] tollgate_dataplane::cost::CostError),
    /// Another replica holds the leader lease, or this one lost it.
    #[error("leader election: {0}")]
    Lease(String),
    /// Agents need the database the gateways authenticate against, to issue their keys.
    #[error("no database configured: agents' virtual keys cannot be issued or revoked")]
    NoDatabase,
    /// A background task the controllers need (a resource mirror) stopped.
    #[error("{0} stopped")]
    Stopped(&'static str),
    /// The control plane's own tables (resource store, users, audit, rollups) failed.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// A write that conflicts with what is stored (it exists already, or changed since).
    #[error("{0}")]
    Conflict(String),
    /// A write to something that does not exist.
    #[error("{0}")]
    NotFound(String),
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
            Self::Json(_)
            | Self::Yaml(_)
            | Self::Kube(_)
            | Self::Finalizer(_)
            | Self::Store(_)
            | Self::Counters(_)
            | Self::Lease(_)
            | Self::Stopped(_)
            | Self::NoDatabase
            | Self::Sql(_)
            | Self::Conflict(_)
            | Self::NotFound(_) => "InternalError",
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
            Self::Kube(kube_client::Error::Api(status)) if status.is_not_found() => "kube_not_found",
            Self::Kube(kube_client::Error::Api(status)) if status.code == 409 => "kube_conflict",
            Self::Kube(_) => "kube_api",
            Self::Finalizer(e) => match e.as_ref() {
                kube_runtime::finalizer::Error::ApplyFailed(inner)
                | kube_runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Self::Store(_) => "database",
            Self::Counters(_) => "counters",
            Self::Lease(_) => "lease",
            Self::Stopped(_) => "stopped",
            Self::NoDatabase => "no_database",
            Self::Sql(_) => "database",
            Self::Conflict(_) => "conflict",
            Self::NotFound(_) => "not_found",
        }
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
