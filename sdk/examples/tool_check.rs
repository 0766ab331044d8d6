//! Ask the gateway before running each tool the model calls.
//!
//! ```sh
//! cargo run -p tollgate-sdk --example tool_check -- shell_exec '{"cmd": "ls"}'
//! ```

use serde_json::Value;
use tollgate_sdk::{Client, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::from_env()?;
    let mut args = std::env::args().skip(1);
    let tool = args.next().unwrap_or_else(|| "search".to_owned());
    let arguments: Value = serde_json::from_str(&args.next().unwrap_or_else(|| "{}".to_owned()))
        .map_err(|e| Error::Config(format!("arguments must be JSON: {e}")))?;
    let verdict = client.check_tool(&tool, &arguments).await?;
    match verdict.into_arguments(arguments) {
        Ok(arguments) => println!("allowed: {tool} {arguments}"),
        Err(Error::ToolDenied { policy, rule, reason, .. }) => {
            println!("denied by {policy} ({rule}): {reason}");
        }
        Err(e) => return Err(e),
    }
    Ok(())
}
