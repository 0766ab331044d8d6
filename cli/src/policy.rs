//! `tollgate policy test --policy NAME "text"`: the verdict a policy gives a text.

use http::Method;
use serde_json::{Value, json};

use crate::keys::admin_call;

/// `tollgate policy`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// Base URL of the Tollgate admin API.
    #[arg(long, env = "TOLLGATE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// A key.
    #[arg(long, env = "TOLLGATE_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Check a text against a policy; exits 3 when the text would be blocked.
    Test {
        /// The SafetyPolicy (`name` or `namespace/name`).
        #[arg(long)]
        policy: String,
        /// `input` or `output`.
        #[arg(long, default_value = "input")]
        stage: String,
        /// Print the whole verdict as JSON.
        #[arg(long)]
        json: bool,
        /// The text.
        text: String,
    },
}

/// Runs a policy command; returns the exit code.
pub async fn run(args: PolicyArgs) -> anyhow::Result<u8> {
    let PolicyCommand::Test { policy, stage, json, text } = &args.command;
    let body = json!({ "policy": policy, "text": text, "stage": stage });
    let v = admin_call(&args.url, args.api_key.as_deref(), Method::POST, "/api/v1/safety/check", Some(body))
        .await?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let outcome = v.get("outcome").and_then(Value::as_str).unwrap_or("?");
        println!("{outcome}");
        if let Some(r) = v.get("redacted").and_then(Value::as_str) {
            println!("redacted: {r}");
        }
        if let Some(m) = v.pointer("/violation/message").and_then(Value::as_str) {
            println!("{m}");
        }
        for f in v.get("findings").and_then(Value::as_array).into_iter().flatten() {
            let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
            let at = f
                .pointer("/location/offset")
                .and_then(Value::as_u64)
                .map_or(String::new(), |o| format!(" at byte {o}"));
            println!("  {} {} ({}){at}", s("action"), s("rule"), s("policy"));
        }
    }
    Ok(if v.get("outcome").and_then(Value::as_str) == Some("block") { 3 } else { 0 })
}
