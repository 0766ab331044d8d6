//! The mock provider, black-box: in-process through `router()` and over real sockets
//! through `serve()` and the binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
mod embeddings;
mod faults;
mod openai;
mod sockets;
mod support;
mod surface;
