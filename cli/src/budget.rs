//! `tollgate budget list|get`, against the admin API.

use http::Method;
use serde_json::Value;

use crate::keys::admin_call;

/// `tollgate budget`.
#[derive(Debug, clap::Args)]
pub struct BudgetArgs {
    /// Base URL of the Tollgate admin API.
    #[arg(long, env = "TOLLGATE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// A key (admins see every budget; others their own and their team's).
    #[arg(long, env = "TOLLGATE_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: BudgetCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum BudgetCommand {
    /// Every budget visible to the key.
    List,
    /// One budget, by `name` or `namespace/name`.
    #[command(visible_alias = "show")]
    Get {
        /// The budget.
        name: String,
    },
}

fn row(b: &Value) -> Vec<String> {
    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let subject = format!(
        "{}:{}",
        b.pointer("/subject/kind").and_then(Value::as_str).unwrap_or("?"),
        b.pointer("/subject/name").and_then(Value::as_str).unwrap_or("?")
    );
    vec![
        s("name"),
        subject,
        s("enforcement"),
        s("limit"),
        s("spent"),
        s("reserved"),
        s("remaining"),
        s("periodEnd"),
    ]
}

/// Runs a budget command.
pub async fn run(args: BudgetArgs) -> anyhow::Result<()> {
    let key = args.api_key.as_deref();
    let list: Vec<Value> = match &args.command {
        BudgetCommand::List => {
            let v = admin_call(&args.url, key, Method::GET, "/api/v1/budgets", None).await?;
            v.get("budgets").and_then(Value::as_array).cloned().unwrap_or_default()
        }
        BudgetCommand::Get { name } => {
            vec![admin_call(&args.url, key, Method::GET, &format!("/api/v1/budgets/{name}"), None).await?]
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let header = ["NAME", "SUBJECT", "KIND", "LIMIT", "SPENT", "RESERVED", "REMAINING", "RESETS"];
    let rows: Vec<Vec<String>> = list.iter().map(row).collect();
    print!("{}", crate::admin::table_right_aligned(&header, &[3, 4, 5, 6], &rows));
    Ok(())
}
