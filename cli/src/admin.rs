//! Talking to a running Tollgate's admin API: where it is and which key to use (flags,
//! environment, or the config file `tollgate login` writes), output formats, and exit codes
//! scripts can rely on.
//!
//! Exit codes: 0 success; 1 the server could not be reached or failed; 2 bad command-line
//! usage; 3 not authenticated or not allowed; 4 not found; 5 the input was refused (invalid,
//! conflicting, or does not compile with the other resources).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate_dataplane::providers::UpstreamClient;

/// Where the admin API is and the key to call it with.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Base URL of the Tollgate admin API (default: the config file's, else
    /// http://127.0.0.1:8080).
    #[arg(long, visible_alias = "url", env = "TOLLGATE_URL", global = true)]
    pub server: Option<String>,
    /// The key to call it with (default: the config file's).
    #[arg(long, env = "TOLLGATE_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
    /// Work on the cluster of the current kubeconfig context instead (the custom resources;
    /// the default when run as the kubectl plugin `kubectl tollgate`).
    #[arg(long, env = "TOLLGATE_KUBE", global = true)]
    pub kube: bool,
}

/// Whether this process was started as the kubectl plugin (`kubectl-tollgate` on PATH, a
/// link to this binary).
pub fn invoked_as_kubectl_plugin(argv0: &str) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "kubectl-tollgate" || n == "kubectl-tollgate.exe")
}

/// How to print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON, as the API answered.
    Json,
    /// YAML.
    Yaml,
}

/// An error answer from the admin API.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// The API's error code.
    pub code: String,
    /// The API's message, with a hint on what to do.
    pub message: String,
}

impl ApiFailure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            401 | 403 => 3,
            404 => 4,
            400 | 409 | 413 | 422 => 5,
            _ => 1,
        }
    }
}

/// The config file `tollgate login` writes: `$XDG_CONFIG_HOME/tollgate/config.yaml` or
/// `~/.config/tollgate/config.yaml`.
pub fn config_path() -> Option<PathBuf> {
    std::env::var_os("TOLLGATE_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("tollgate/config.yaml"))
        })
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/tollgate/config.yaml")))
}

/// The saved server and key.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedConfig {
    /// The admin API's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

fn saved() -> SavedConfig {
    config_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_yaml::from_str(&t).ok())
        .unwrap_or_default()
}

impl ServerArgs {
    /// Whether to talk to the cluster (flag, variable, or run as `kubectl tollgate`).
    pub fn kube_mode(&self) -> bool {
        self.kube || std::env::args().next().is_some_and(|a| invoked_as_kubectl_plugin(&a))
    }

    /// The cluster's resource store, through the current kubeconfig context.
    pub async fn kube_store(&self) -> anyhow::Result<tollgate_operator::store::kube::KubeStore> {
        let client = kube_client::Client::try_default().await.context(
            "cannot reach the cluster: check the kubeconfig context (kubectl config current-context)",
        )?;
        Ok(tollgate_operator::store::kube::KubeStore::new(client))
    }

    /// The server, with the config file and the default as fallbacks.
    pub fn server(&self) -> String {
        self.server.clone().or_else(|| saved().server).unwrap_or_else(|| "http://127.0.0.1:8080".to_owned())
    }

    fn key(&self) -> anyhow::Result<String> {
        self.api_key.clone().or_else(|| saved().api_key).context(
            "no key: pass --api-key, set TOLLGATE_API_KEY, or run `tollgate login --api-key KEY` once",
        )
    }

    /// One admin-API call; an error answer becomes an [`ApiFailure`].
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let key = self.key()?;
        let client = UpstreamClient::new(Duration::from_secs(5), Duration::from_secs(30))?;
        let base = self.server();
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let body = body.map(|b| serde_json::to_vec(&b)).transpose()?.unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .with_context(|| format!("{url:?} is not a valid URL"))?;
        let response = client.raw(request).await.with_context(|| {
            format!("cannot reach {base}: is Tollgate running there? (--server or TOLLGATE_URL)")
        })?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message =
            value.pointer("/error/message").and_then(Value::as_str).unwrap_or("no details").to_owned();
        let code = value.pointer("/error/code").and_then(Value::as_str).unwrap_or("").to_owned();
        let hint = match status.as_u16() {
            401 => " (check the key: --api-key, TOLLGATE_API_KEY or `tollgate login`)",
            403 => " (this needs a key with a role that may do it)",
            _ => "",
        };
        let param = value
            .pointer("/error/param")
            .and_then(Value::as_str)
            .map(|p| format!(" [at {p}]"))
            .unwrap_or_default();
        Err(ApiFailure { status: status.as_u16(), code, message: format!("{message}{param}{hint}") }.into())
    }
}

/// Prints `value` as JSON or YAML, or `table` for people.
pub fn print(output: Output, value: &Value, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(value)?),
        Output::Table => print!("{}", table()),
    }
    Ok(())
}

/// Aligned columns with a header, two spaces apart, no borders. Widths are display widths
/// (comfy-table measures with unicode-width), so a CJK value keeps the columns aligned.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    table_right_aligned(header, &[], rows)
}

/// [`table`] with the columns at indices `right` aligned right (amounts).
pub fn table_right_aligned(header: &[&str], right: &[usize], rows: &[Vec<String>]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING).set_header(header.iter().copied());
    for r in rows {
        t.add_row(r.iter().map(String::as_str));
    }
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if right.contains(&i) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    t.lines().map(|line| line.trim_end().to_owned() + "\n").collect()
}

/// A string field of `v` at `pointer`, `-` when absent.
pub fn field(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t =
            table(&["NAME", "SPENT"], &[vec!["a".into(), "1".into()], vec!["longer".into(), "22".into()]]);
        assert_eq!(t, "NAME    SPENT\na       1\nlonger  22\n");
        assert_eq!(table(&["A", "B"], &[]), "A  B\n");
        let amounts = table_right_aligned(
            &["NAME", "SPENT", "AT"],
            &[1],
            &[vec!["a".into(), "1.5".into(), "x".into()], vec!["b".into(), "1234".into(), "y".into()]],
        );
        assert_eq!(amounts, "NAME  SPENT  AT\na       1.5  x\nb      1234  y\n");
    }

    #[test]
    fn wide_characters_keep_columns_aligned() {
        use unicode_width::UnicodeWidthStr;
        let t = table(
            &["NAME", "PRINCIPAL", "ROLE"],
            &[
                vec!["東京チーム".into(), "ユーザー".into(), "admin".into()],
                vec!["ascii".into(), "naïve-bob".into(), "viewer".into()],
                vec!["😀x".into(), "-".into(), "-".into()],
            ],
        );
        // Every column starts at the same display column on every line: 東京チーム is ten
        // columns wide (five characters), 😀 two.
        assert_eq!(
            t,
            "NAME        PRINCIPAL  ROLE\n\
             東京チーム  ユーザー   admin\n\
             ascii       naïve-bob  viewer\n\
             😀x         -          -\n"
        );
        let starts = |line: &str, cell: &str| line.find(cell).map(|byte| line[..byte].width());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(starts(lines[1], "ユーザー"), starts(lines[0], "PRINCIPAL"));
        assert_eq!(starts(lines[1], "admin"), starts(lines[0], "ROLE"));
    }

    #[test]
    fn the_kubectl_plugin_name_turns_on_cluster_mode() {
        assert!(invoked_as_kubectl_plugin("/usr/local/bin/kubectl-tollgate"));
        assert!(invoked_as_kubectl_plugin("kubectl-tollgate"));
        assert!(!invoked_as_kubectl_plugin("/usr/bin/tollgate"));
    }

    #[test]
    fn exit_codes_by_status() {
        let f = |status| ApiFailure { status, code: String::new(), message: String::new() }.exit_code();
        assert_eq!(
            (f(401), f(403), f(404), f(400), f(409), f(422), f(500), f(503)),
            (3, 3, 4, 5, 5, 5, 1, 1)
        );
    }
}
