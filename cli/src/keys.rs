//! `tollgate keys create|list|revoke|rotate`, against a running Tollgate's admin API.

use anyhow::{Context, bail};
use http::Method;
use serde_json::{Value, json};

/// `tollgate keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// Base URL of the Tollgate admin API.
    #[arg(long, env = "TOLLGATE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// An admin key.
    #[arg(long, env = "TOLLGATE_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints it once.
    Create {
        /// Who the key is for (a developer, team or agent name).
        #[arg(long)]
        principal: String,
        /// developer, team or agent.
        #[arg(long, default_value = "developer")]
        kind: String,
        /// admin, superuser or developer.
        #[arg(long, default_value = "developer")]
        role: String,
        /// The principal's team.
        #[arg(long)]
        team: Option<String>,
        /// Comma-separated models the key may use (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Lifetime, like `90s`, `30m`, `12h`, `30d`, `2w`.
        #[arg(long)]
        expires_in: Option<String>,
        /// A label for the key.
        #[arg(long)]
        name: Option<String>,
        /// Requests per minute the key may make.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute the key may use.
        #[arg(long)]
        tpm: Option<u64>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id; it stops working at once.
    Revoke {
        /// The key's id (from `tollgate keys list`).
        id: String,
    },
    /// Replace a key: a new key (printed once) with the same principal, models, limits and
    /// expiry; the old one is revoked.
    Rotate {
        /// The key's id.
        id: String,
    },
}

/// Parses `90s`, `30m`, `12h`, `30d`, `2w` into seconds.
pub fn parse_lifetime(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().with_context(|| format!("{text:?} is not a lifetime like 30d"))?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => bail!("{text:?}: unknown unit {unit:?} (use s, m, h, d or w)"),
    };
    n.checked_mul(mult).filter(|s| *s > 0).with_context(|| format!("{text:?} is out of range"))
}

async fn call(args: &KeysArgs, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    admin_call(&args.url, args.api_key.as_deref(), method, path, body).await
}

/// One admin-API call; errors carry the API's own message.
pub async fn admin_call(
    base: &str,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let server = crate::admin::ServerArgs {
        server: Some(base.to_owned()),
        api_key: key.map(str::to_owned),
        kube: false,
    };
    server.call(method, path, body).await
}

/// Runs a keys command.
pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    match &args.command {
        KeysCommand::Create { principal, kind, role, team, models, expires_in, name, rpm, tpm } => {
            let expires = expires_in.as_deref().map(parse_lifetime).transpose()?;
            let body = json!({
                "name": name,
                "principal": { "kind": kind, "name": principal, "role": role, "team": team },
                "models": models,
                "expiresInSeconds": expires,
                "rpm": rpm,
                "tpm": tpm,
            });
            let v = call(&args, Method::POST, "/api/v1/keys", Some(body)).await?;
            let key = v.get("key").and_then(Value::as_str).unwrap_or_default();
            let id = v.pointer("/record/id").and_then(Value::as_str).unwrap_or_default();
            println!("{key}");
            eprintln!("key id {id}: store the key now, it is not shown again");
        }
        KeysCommand::List => {
            let v = call(&args, Method::GET, "/api/v1/keys", None).await?;
            let now = tollgate_dataplane::now_ms();
            let mut rows = Vec::new();
            for k in v.get("items").and_then(Value::as_array).into_iter().flatten() {
                let s = |p: &str| k.pointer(p).and_then(Value::as_str).unwrap_or("-").to_owned();
                let status = if k.get("revokedAtMs").is_some_and(|v| !v.is_null()) {
                    "revoked"
                } else if k.get("expiresAtMs").and_then(Value::as_i64).is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                };
                rows.push(vec![
                    s("/id"),
                    s("/displayPrefix"),
                    s("/principal/kind"),
                    s("/principal/name"),
                    s("/principal/role"),
                    status.to_owned(),
                ]);
            }
            let header = ["ID", "PREFIX", "KIND", "PRINCIPAL", "ROLE", "STATUS"];
            print!("{}", crate::admin::table(&header, &rows));
        }
        KeysCommand::Revoke { id } => {
            call(&args, Method::DELETE, &format!("/api/v1/keys/{id}"), None).await?;
            println!("revoked {id}");
        }
        KeysCommand::Rotate { id } => {
            let v = call(&args, Method::POST, &format!("/api/v1/keys/{id}/rotate"), None).await?;
            println!("{}", v.get("key").and_then(Value::as_str).unwrap_or_default());
            eprintln!(
                "key id {} replaces {id} (revoked): store the key now, it is not shown again",
                v.pointer("/record/id").and_then(Value::as_str).unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("90s").unwrap(), 90);
        assert_eq!(parse_lifetime("30d").unwrap(), 2_592_000);
        assert_eq!(parse_lifetime("15").unwrap(), 15);
        assert!(parse_lifetime("0s").is_err());
        assert!(parse_lifetime("3y").is_err());
        assert!(parse_lifetime("").is_err());
    }
}
