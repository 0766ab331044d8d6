//! `tollgate`: the CLI. `tollgate up` runs the whole product in one process (standalone
//! mode); the other commands talk to a running Tollgate's admin API or check resources.

mod admin;
mod budget;
mod keys;
mod manage;
mod policy;
mod recover;
mod resources;
mod up;

use clap::{Parser, Subcommand};

/// jemalloc gives memory back to the system after load; glibc's malloc keeps its arenas.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// List resources (`tollgate get budgets`, `tollgate get all -o yaml`).
    Get(manage::GetArgs),
    /// Create or update the resources in files or directories, like `kubectl apply -f`.
    Apply(manage::ApplyArgs),
    /// Delete a resource (`tollgate delete budget NAME`) or those in files (`-f`).
    Delete(manage::DeleteArgs),
    /// Provider credentials: `tollgate token add NAME --provider openai --from-env OPENAI_API_KEY --model gpt-4o-mini`.
    Token(manage::TokenArgs),
    /// Usage totals (`--by model|day|...`, `--me`).
    Usage(manage::UsageArgs),
    /// Who the key is: principal, role, teams, budgets.
    Whoami(manage::WhoamiArgs),
    /// Save the server and key for the other commands (checks them first).
    Login(manage::LoginArgs),
    /// On the server's machine: `tollgate admin recover --database URL` issues a new admin key
    /// when every admin key is lost.
    Admin(recover::AdminArgs),
    /// Print shell completions: `tollgate completion bash > /etc/bash_completion.d/tollgate`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
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
            Command::Get(args) => manage::get(args).await.map(|()| 0),
            Command::Apply(args) => manage::apply(args).await.map(|()| 0),
            Command::Delete(args) => manage::delete(args).await.map(|()| 0),
            Command::Token(args) => manage::token(args).await.map(|()| 0),
            Command::Usage(args) => manage::usage(args).await.map(|()| 0),
            Command::Whoami(args) => manage::whoami(args).await.map(|()| 0),
            Command::Login(args) => manage::login(args).await.map(|()| 0),
            Command::Admin(args) => recover::run(args).await.map(|()| 0),
            Command::Completion { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(shell, &mut Cli::command(), "tollgate", &mut std::io::stdout());
                Ok(0)
            }
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            // Exit codes scripts can rely on (see `admin`): 3 auth, 4 not found, 5 refused.
            let code = e.downcast_ref::<admin::ApiFailure>().map_or(1, admin::ApiFailure::exit_code);
            std::process::ExitCode::from(code)
        }
    }
}
