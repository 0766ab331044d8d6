//! `tollgate-operator`: Tollgate's control plane in Kubernetes. See [`tollgate_operator::serve`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate_operator::serve::run(tollgate_operator::serve::Args::parse()).await
}
