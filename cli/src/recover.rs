//! `tollgate admin recover`: the way back in when no admin key works (the last one lost,
//! revoked or expired). It needs no key and no running server: it is run on the server's
//! machine against its database, and whoever can write that database already holds
//! everything a key protects. It issues a new bootstrap-admin key and prints it once; the
//! running server accepts it at once (a key it does not know is looked up in the database).

use anyhow::Context;
use tollgate_dataplane::auth::KeyService;
use tollgate_dataplane::now_ms;
use tollgate_dataplane::store::Store;
use tollgate_operator::store::sql::SqlStore;

/// `tollgate admin ...`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Issue a new admin key straight into the server's database and print it once (run on
    /// the server's machine when every admin key is lost).
    Recover(RecoverArgs),
}

/// `tollgate admin recover`.
#[derive(Debug, clap::Args)]
pub struct RecoverArgs {
    /// The server's database URL: `sqlite://PATH` or `postgres://...` (the one `tollgate up`
    /// or the operator uses).
    #[arg(
        long,
        alias = "database-url",
        env = "TOLLGATE_DATABASE_URL",
        default_value = "sqlite://.tollgate/tollgate.db"
    )]
    pub database: String,
}

/// Runs `tollgate admin ...`.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Recover(r) => recover(r).await,
    }
}

async fn recover(args: RecoverArgs) -> anyhow::Result<()> {
    // NB: `Store::connect` creates a missing SQLite file; a typo in the path must not
    // "recover" into a new, empty database the server never reads.
    if let Some(path) = args.database.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        anyhow::ensure!(
            std::path::Path::new(path).is_file(),
            "no database at {path}: give the server's database with --database (or TOLLGATE_DATABASE_URL)"
        );
    }
    let store = Store::connect(&args.database).await.context("cannot open the database")?;
    let keys = KeyService::load(store.clone()).await?;
    let now = now_ms();
    let key = keys.recover_admin(now).await?;
    let record = serde_json::to_value(&key.record).unwrap_or_default();
    let audit = SqlStore::new(store);
    let audited = audit
        .audit(
            "tollgate admin recover (on the server's machine)",
            "recover-admin",
            &format!("key {}", key.record.id),
            None,
            Some(&record),
            now,
        )
        .await;
    if let Err(e) = audited {
        eprintln!("warning: the key was issued but the audit log could not be written: {e}");
    }
    eprintln!(
        "Issued admin key {} ({}); it is shown once, store it now. Revoke keys you no longer trust \
         with `tollgate keys revoke ID`.",
        key.record.id, key.record.display_prefix
    );
    println!("{}", key.secret);
    Ok(())
}
