//! The listening socket's life cycle.
