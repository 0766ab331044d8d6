//! `tollgate-mock-provider`: serves the mock LLM provider on a TCP port.
//!
//! Prints `listening on ADDR` to stdout once bound (tests parse it to learn the port);
//! logs go to stderr.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tollgate_mock_provider::{Fault, MockConfig, serve};
use tracing_subscriber::EnvFilter;

/// A deterministic OpenAI- and Anthropic-compatible LLM provider with fault injection.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "TOLLGATE_MOCK_LISTEN", default_value = "127.0.0.1:9090")]
    listen: String,
    /// Probability (0..=1) that a request without fault headers gets `--fault`.
    #[arg(long, env = "TOLLGATE_MOCK_FAULT_RATE", default_value_t = 0.0, value_parser = probability)]
    fault_rate: f64,
    /// Fault applied at `--fault-rate`: status:<code>, 429:<secs>, reset-before, reset-mid,
    /// stall [default: status:500].
    #[arg(long, env = "TOLLGATE_MOCK_FAULT")]
    fault: Option<Fault>,
    /// Latency added before every response's headers, in milliseconds.
    #[arg(long, env = "TOLLGATE_MOCK_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Seed for the fault dice, for reproducible fault sequences.
    #[arg(long, env = "TOLLGATE_MOCK_SEED")]
    seed: Option<u64>,
}

fn probability(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{raw:?} is not a probability between 0 and 1")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, fault_rate = args.fault_rate, fault = ?args.fault, "mock provider up");

    let config = MockConfig {
        fault_rate: args.fault_rate,
        default_fault: args.fault,
        latency: Duration::from_millis(args.latency_ms),
        seed: args.seed,
    };
    tokio::select! {
        result = serve(listener, config) => result.context("serving")?,
        result = tokio::signal::ctrl_c() => {
            result.context("waiting for ctrl-c")?;
            tracing::info!("shutting down");
        }
    }
    Ok(())
}
