//! User-space relay.
