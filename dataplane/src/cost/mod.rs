//! cost service (in progress).
