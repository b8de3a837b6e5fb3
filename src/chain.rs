//! The policy chain.
