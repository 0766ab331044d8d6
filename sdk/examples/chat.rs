//! Chat through the gateway, streaming and not, and show the agent's budget.
//!
//! ```sh
//! tollgate up &                      # prints an admin key once
//! export TOLLGATE_API_KEY=$(TOLLGATE_API_KEY=<admin key> tollgate keys create --kind agent --principal my-agent)
//! cargo run -p tollgate-sdk --example chat
//! ```

use futures::StreamExt;
use tollgate_sdk::{ChatRequest, Client, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let client = Client::from_env()?;
    let model = std::env::var("TOLLGATE_MODEL").unwrap_or_else(|_| "mock-1".to_owned());

    let reply = client.chat(&ChatRequest::new(&model).user("Say hello in one sentence.")).await?;
    println!("reply: {}", reply.text());

    let mut stream = client.chat_stream(&ChatRequest::new(&model).user("Count to five.")).await?;
    print!("stream: ");
    while let Some(chunk) = stream.next().await {
        print!("{}", chunk?.text());
    }
    println!();

    for b in client.budgets().await? {
        println!(
            "budget {}: spent {} of {} micro-USD, resets {:?}",
            b.name, b.spent_micros, b.limit_micros, b.resets_at
        );
    }
    Ok(())
}
