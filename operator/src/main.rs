//! `tollgate-operator`: Tollgate's control plane in Kubernetes. See [`tollgate_operator::serve`].

use clap::Parser;

/// jemalloc gives memory back to the system after load; glibc's malloc keeps its arenas.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tollgate_operator::serve::run(tollgate_operator::serve::Args::parse()).await
}
