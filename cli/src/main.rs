//! `tollgate`: the CLI. `tollgate up` runs the whole product in one process (standalone
//! mode); the other commands talk to a running Tollgate's admin API or check resources.

mod budget;
mod keys;
mod policy;
mod resources;
mod up;

use clap::{Parser, Subcommand};

/// Tollgate: the governance gateway between AI agents and the LLMs and tools they use.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Tollgate standalone: gateway and control plane in one process, on SQLite.
    Up(up::UpArgs),
    /// Manage virtual keys through the admin API.
    Keys(keys::KeysArgs),
    /// Budgets: spent, reserved and remaining in the current period.
    Budget(budget::BudgetArgs),
    /// Safety policies: `tollgate policy test --policy NAME "text"`.
    Policy(policy::PolicyArgs),
    /// Check resource files without running anything: parse, validate, compile.
    Validate(resources::ValidateArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up::run(args).await.map(|()| 0),
            Command::Keys(args) => keys::run(args).await.map(|()| 0),
            Command::Budget(args) => budget::run(args).await.map(|()| 0),
            Command::Policy(args) => policy::run(args).await,
            Command::Validate(args) => resources::validate(args).map(|()| 0),
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
