//! Black-box tests and benchmarks of the built binaries. The Python client tests live in
//! `python/`; `tollgate-loadgen` is the open-loop load generator the benchmark scripts use.
