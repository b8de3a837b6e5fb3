//! The master's supervision loop and the pre-forked workers.
