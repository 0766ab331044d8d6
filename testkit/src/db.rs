//! Scratch databases: a SQLite file in a temporary folder, or a PostgreSQL database of its
//! own, either gone when its [`ScratchDb`] is dropped.

use std::path::Path;

use sqlx::Connection;
use tollgate_dataplane::store::Store;

/// Where the tests' PostgreSQL server is: `TOLLGATE_TEST_POSTGRES_URL`, by default
/// `postgres://postgres@127.0.0.1:5432/postgres`. The database it names is only used to
/// create and drop scratch databases.
pub fn postgres_admin_url() -> String {
    std::env::var("TOLLGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database for one test (or one benchmark run).
///
/// - SQLite ([`ScratchDb::sqlite`]): the file `t.db` in a temporary folder, removed with the
///   folder.
/// - PostgreSQL ([`ScratchDb::postgres`]): a database `<prefix>_<uuid>` created on the
///   server at [`postgres_admin_url`], dropped `WITH (FORCE)` (which closes the
///   connections the test's pools still hold).
///
/// Clean-up happens on drop, also when the test panics. `Drop` cannot await, so the
/// PostgreSQL database is dropped by a short-lived thread with a single-threaded Tokio
/// runtime of its own, which the dropping thread waits for (milliseconds). That never nests
/// a runtime in the caller's (current-thread or multi-thread alike), needs nothing from it
/// (it may be shutting down), and a failure is printed, never a second panic.
#[derive(Debug)]
pub struct ScratchDb {
    url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite(tempfile::TempDir),
    Postgres { admin: String, name: String },
}

impl ScratchDb {
    /// A SQLite database in a fresh temporary folder (the file is created on first
    /// connect).
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder for a scratch SQLite database");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        Self { url, kind: Kind::Sqlite(dir) }
    }

    /// A fresh PostgreSQL database named `<prefix>_<uuid>` (`prefix`: lowercase letters,
    /// digits and `_`, e.g. `tollgate_api`).
    ///
    /// # Panics
    /// When the server at [`postgres_admin_url`] does not answer, saying so and how to point
    /// the tests elsewhere.
    pub async fn postgres(prefix: &str) -> Self {
        assert!(
            !prefix.is_empty()
                && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "a scratch database prefix is lowercase letters, digits and '_', got {prefix:?}"
        );
        let admin = postgres_admin_url();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL must be running at {admin} for this test \
                 (set TOLLGATE_TEST_POSTGRES_URL to use another server): {e}"
            )
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin}: {e}"));
        let _ = conn.close().await;
        Self { url: database_url(&admin, &name), kind: Kind::Postgres { admin, name } }
    }

    /// [`ScratchDb::postgres`] when `postgres`, else [`ScratchDb::sqlite`]: for tests that
    /// run the same body on both.
    pub async fn open(postgres: bool, prefix: &str) -> Self {
        if postgres { Self::postgres(prefix).await } else { Self::sqlite() }
    }

    /// The database's URL, for [`Store::connect`] (several stores may share it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The SQLite database's temporary folder, for other scratch files the test needs
    /// (`None` for PostgreSQL).
    pub fn dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Sqlite(dir) => Some(dir.path()),
            Kind::Postgres { .. } => None,
        }
    }

    /// A new [`Store`] on this database (migrations applied).
    pub async fn connect(&self) -> Store {
        Store::connect(&self.url).await.unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url))
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let Kind::Postgres { admin, name } = &self.kind else { return };
        let job = {
            let (admin, name) = (admin.clone(), name.clone());
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("no runtime to drop it on: {e}"))?;
                runtime.block_on(drop_database(&admin, &name))
            }
        };
        let outcome = std::thread::spawn(job).join().unwrap_or_else(|_| Err("the thread panicked".into()));
        if let Err(e) = outcome {
            eprintln!("warning: scratch database {name} was not dropped: {e}");
        }
    }
}

/// `DROP DATABASE IF EXISTS name WITH (FORCE)` on the server at `admin`.
async fn drop_database(admin: &str, name: &str) -> Result<(), String> {
    let mut conn =
        sqlx::PgConnection::connect(admin).await.map_err(|e| format!("connecting to {admin}: {e}"))?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.close().await;
    Ok(())
}

/// `admin` with its database replaced by `name`, query parameters kept.
fn database_url(admin: &str, name: &str) -> String {
    let (path, query) = admin.split_once('?').map_or((admin, None), |(p, q)| (p, Some(q)));
    let base = path.rsplit_once('/').map_or(path, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exists(name: &str) -> bool {
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.unwrap();
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        found.is_some()
    }

    fn pg_name(db: &ScratchDb) -> String {
        match &db.kind {
            Kind::Postgres { name, .. } => name.clone(),
            Kind::Sqlite(_) => panic!("not PostgreSQL"),
        }
    }

    #[test]
    fn urls_keep_the_server_and_the_query() {
        assert_eq!(database_url("postgres://u@h:5432/postgres", "x_1"), "postgres://u@h:5432/x_1");
        assert_eq!(
            database_url("postgres://u@h/postgres?sslmode=disable", "x_1"),
            "postgres://u@h/x_1?sslmode=disable"
        );
    }

    #[tokio::test]
    async fn sqlite_lives_in_a_folder_removed_on_drop() {
        let db = ScratchDb::sqlite();
        assert!(db.url().starts_with("sqlite://"));
        let store = db.connect().await;
        assert!(store.ping().await);
        let dir = db.dir().unwrap().to_owned();
        assert!(dir.join("t.db").exists());
        drop(db);
        assert!(!dir.exists());
    }

    /// Dropped on a current-thread runtime while a pool still holds connections.
    #[tokio::test]
    async fn postgres_is_dropped_with_open_connections() {
        let db = ScratchDb::postgres("tollgate_testkit").await;
        let name = pg_name(&db);
        let store = db.connect().await;
        assert!(store.ping().await && exists(&name).await);
        drop(db);
        assert!(!exists(&name).await, "{name} is still there");
    }

    /// Dropped during a panic's unwinding on a multi-thread runtime.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_is_dropped_when_the_test_panics() {
        let db = ScratchDb::postgres("tollgate_testkit").await;
        let name = pg_name(&db);
        let _store = db.connect().await;
        let task = tokio::spawn(async move {
            let _db = db;
            panic!("a failing test");
        });
        assert!(task.await.unwrap_err().is_panic());
        assert!(!exists(&name).await, "{name} is still there");
    }

    #[test]
    #[should_panic(expected = "lowercase letters, digits and '_'")]
    fn prefixes_are_checked() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(ScratchDb::postgres("x; DROP"));
    }
}
