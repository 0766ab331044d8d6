//! An OpenAI-style client built on reqwest, sent through the gateway by the SDK's middleware.
//! The client code is unchanged: it still calls `https://api.openai.com/v1/...` with its own
//! key; the middleware routes it to the gateway with the agent's virtual key instead.
//!
//! ```sh
//! cargo run -p tollgate-sdk --example middleware
//! ```

use serde_json::{Value, json};
use tollgate_sdk::Client;

/// Stands in for any reqwest-based OpenAI client: its code does not know about Tollgate.
async fn ask(http: &reqwest_middleware::ClientWithMiddleware, question: &str) -> anyhow::Result<String> {
    let body: Value = http
        .post("https://api.openai.com/v1/chat/completions")
        .bearer_auth(std::env::var("OPENAI_API_KEY").unwrap_or_default())
        .json(&json!({"model": "mock-1", "messages": [{"role": "user", "content": question}]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tollgate = Client::from_env()?;
    // The one line that changes: the HTTP client the provider client is built with.
    let http =
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(tollgate.middleware()).build();
    println!("{}", ask(&http, "Hello through the middleware").await?);
    Ok(())
}
