//! safety service (in progress).
