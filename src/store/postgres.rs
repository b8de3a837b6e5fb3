//! The PostgreSQL backend for clusters of Courier hosts sharing one store: a small blocking
//! client over std sockets (TCP or UNIX) speaking the frontend/backend protocol with
//! postgres-protocol's message codec; password, MD5 and SCRAM-SHA-256 authentication; named
//! prepared statements; `SERIALIZABLE` transactions; every socket operation has a timeout.

use super::{PgConfig, StoreError};

pub struct PgBackend {
    config: PgConfig,
}

impl PgBackend {
    /// Connect and authenticate (bounded by a connect timeout).
    pub fn connect(config: &PgConfig) -> Result<PgBackend, StoreError> {
        let _ = config;
        todo!("store/postgres.rs")
    }

    pub fn config(&self) -> &PgConfig {
        &self.config
    }
}
