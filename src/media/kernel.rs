//! Kernel fast path.
