//! Where a gateway deployed by the operator gets its configuration. The operator publishes
//! each compiled configuration twice: into the gateway's ConfigMap (mounted as a file,
//! refreshed by the kubelet within about a minute) and into the database the gateways
//! already share (`published_config`, read every second). A round of [`ConfigSync`] takes
//! the database's copy when there is one and it can be read, else the mounted file; a
//! document whose content does not match its hash, or that does not load, is refused and
//! the configuration in force stays (so a gateway that cannot reach either keeps serving
//! its last good one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tollgate_crds::DataPlaneConfig;

use crate::Gateway;
use crate::secrets::SecretSource;
use crate::store::Store;

/// Where a configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The database (`published_config`).
    Database,
    /// The mounted file.
    File,
}

/// What a round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The configuration in force is the newest.
    Unchanged(Source),
    /// A new configuration (its hash) is in force.
    Applied(Source, String),
    /// A new configuration was refused (why); the previous one stays.
    Refused(Source, SyncError),
}

/// Why a configuration was not put in force. Causes sit behind `Arc` so an [`Outcome`] can
/// be kept and compared (a refusal is logged once per reason).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// The mounted file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Arc<std::io::Error>,
    },
    /// The mounted file is not a configuration document.
    #[error("{} is not a DataPlaneConfig: {source}", path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// Where and why it does not parse.
        source: Arc<serde_json::Error>,
    },
    /// The database's copy cannot be read (a passing database error).
    #[error("cannot read the published configuration: {0}")]
    ReadPublished(#[source] Arc<crate::Error>),
    /// The database's copy is not a configuration document.
    #[error("the published configuration does not parse: {0}")]
    ParsePublished(#[source] Arc<serde_json::Error>),
    /// The database's copy does not hash to what it was published as.
    #[error(
        "the published configuration is not whole: published as {published}, labelled {labelled}, content {content}"
    )]
    NotWhole {
        /// The hash it was published under.
        published: String,
        /// The hash the document says it has.
        labelled: String,
        /// The hash of its content.
        content: String,
    },
    /// The document is whole but the gateway cannot serve it (a secret is missing, say).
    #[error("{0}")]
    Apply(#[source] Arc<crate::Error>),
}

/// NB: two refusals are the same when they say the same thing; that is what decides whether
/// a refusal is logged again.
impl PartialEq for SyncError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other) && self.to_string() == other.to_string()
    }
}

impl Eq for SyncError {}

/// Keeps a gateway's configuration in step with what the operator published.
#[derive(Debug)]
pub struct ConfigSync {
    gateway: Gateway,
    store: Store,
    file: PathBuf,
    secrets: SecretSource,
    /// The database's last refused hash: not fetched again until it changes.
    refused: Option<String>,
    /// A configuration from the database has been in force: while the database cannot be
    /// read, the file (which the kubelet refreshes later) must not roll it back.
    followed_database: bool,
}

/// Reads and parses a configuration file.
pub fn read_file(path: &Path) -> Result<DataPlaneConfig, SyncError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SyncError::ReadFile { path: path.to_owned(), source: Arc::new(e) })?;
    serde_json::from_str(&text)
        .map_err(|e| SyncError::ParseFile { path: path.to_owned(), source: Arc::new(e) })
}

/// Parses a published document and checks it is whole: its content hashes to `hash`.
pub fn verify(hash: &str, json: &str) -> Result<DataPlaneConfig, SyncError> {
    let config: DataPlaneConfig =
        serde_json::from_str(json).map_err(|e| SyncError::ParsePublished(Arc::new(e)))?;
    let content = config.content_hash();
    if config.hash != hash || content != hash {
        return Err(SyncError::NotWhole { published: hash.to_owned(), labelled: config.hash, content });
    }
    Ok(config)
}

impl ConfigSync {
    /// Syncs `gateway` from `store` and the mounted `file`, loading keys from `secrets`.
    pub fn new(gateway: Gateway, store: Store, file: PathBuf, secrets: SecretSource) -> Self {
        Self { gateway, store, file, secrets, refused: None, followed_database: false }
    }

    /// One round: the database's published configuration if it has one, else the file.
    /// While the database cannot be read, the file is followed only if nothing from the
    /// database has been in force (the file lags behind it).
    pub async fn sync_once(&mut self) -> Outcome {
        match self.store.published_config_hash().await {
            Ok(Some(hash)) => self.sync_database(hash).await,
            Ok(None) => self.sync_file(),
            Err(e) if self.followed_database => {
                tracing::debug!(error = %e, "published configuration unreadable; keeping the one in force");
                Outcome::Unchanged(Source::Database)
            }
            Err(e) => {
                tracing::debug!(error = %e, "published configuration unreadable; using the mounted file");
                self.sync_file()
            }
        }
    }

    async fn sync_database(&mut self, hash: String) -> Outcome {
        if hash == self.gateway.config_hash() {
            self.followed_database = true;
            return Outcome::Unchanged(Source::Database);
        }
        if self.refused.as_ref() == Some(&hash) {
            return Outcome::Unchanged(Source::Database);
        }
        let (hash, json) = match self.store.published_config().await {
            Ok(Some(published)) => published,
            Ok(None) => return self.sync_file(),
            // A passing database error: try again next round (nothing is remembered).
            Err(e) => {
                return Outcome::Refused(Source::Database, SyncError::ReadPublished(Arc::new(e)));
            }
        };
        let applied = verify(&hash, &json).and_then(|config| {
            self.gateway.apply_config(config, &self.secrets).map_err(|e| SyncError::Apply(Arc::new(e)))
        });
        match applied {
            Ok(()) => {
                self.refused = None;
                self.followed_database = true;
                Outcome::Applied(Source::Database, hash)
            }
            // Not whole, or does not load: the same document will not do better, so it is
            // not fetched again until another is published.
            Err(why) => {
                self.refused = Some(hash);
                Outcome::Refused(Source::Database, why)
            }
        }
    }

    /// Runs a round every `every` for ever, logging what changed (a refusal once per
    /// reason).
    pub async fn run(mut self, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_refusal = None;
        loop {
            tick.tick().await;
            match self.sync_once().await {
                Outcome::Applied(source, hash) => {
                    last_refusal = None;
                    tracing::info!(?source, %hash, "new configuration in force");
                }
                Outcome::Refused(source, why) if last_refusal.as_ref() != Some(&why) => {
                    tracing::error!(?source, error = %why, "new configuration not applied; the previous one stays in force");
                    last_refusal = Some(why);
                }
                Outcome::Refused(..) | Outcome::Unchanged(_) => {}
            }
        }
    }

    /// Applies the mounted file if it holds a configuration other than the one in force
    /// (at start, a gateway falls back to it when the database's copy is refused).
    pub fn sync_file(&self) -> Outcome {
        let config = match read_file(&self.file) {
            Ok(c) => c,
            Err(why) => return Outcome::Refused(Source::File, why),
        };
        if config.hash == self.gateway.config_hash() {
            return Outcome::Unchanged(Source::File);
        }
        let hash = config.hash.clone();
        match self.gateway.apply_config(config, &self.secrets) {
            Ok(()) => Outcome::Applied(Source::File, hash),
            Err(e) => Outcome::Refused(Source::File, SyncError::Apply(Arc::new(e))),
        }
    }
}
