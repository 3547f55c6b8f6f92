//! The database side: schema migrations, the ledger, the COPY encoding of
//! rows, the writers each model uses, and the embedded PostgreSQL server.
//!
//! `ledger` and `copy` are sans-IO (SQL text, bound parameters and COPY
//! bytes); `sync_writer` and `async_writer` are the thin shells that send
//! them with the `postgres` and `tokio-postgres` clients.

#[cfg(feature = "io")]
pub mod async_writer;
pub mod copy;
#[cfg(feature = "io")]
pub mod embedded;
pub mod ledger;
#[cfg(feature = "io")]
pub mod schema;
pub mod statements;
#[cfg(feature = "io")]
pub mod sync_writer;
#[cfg(feature = "io")]
pub mod tls;

#[cfg(feature = "io")]
pub use embedded::{EmbeddedPostgres, Flavor};
pub use ledger::{FileOutcome, WritePlan, WriteStrategy};

#[cfg(feature = "io")]
/// Opens a synchronous connection, with the password kept out of the error.
pub fn connect_sync(url: &str) -> anyhow::Result<postgres::Client> {
    postgres::Client::connect(url, tls::connector()?).map_err(|e| {
        let msg = format!(
            "cannot connect to PostgreSQL at {}: {}",
            crate::secret::redact_url(url),
            crate::error::chain(&e)
        );
        if crate::error::is_certificate_refused(&e) {
            crate::error::DbError::CertificateRefused(format!(
                "{msg} (trust the server's CA with --db-ca-file or PGSSLROOTCERT)"
            ))
            .into()
        } else {
            anyhow::anyhow!(msg)
        }
    })
}

#[cfg(feature = "io")]
/// Whether an error means the database connection is gone (server
/// restarted, network dropped), so reconnecting and retrying the file is
/// both safe (its transaction was rolled back with the connection) and
/// useful.
pub fn is_connection_lost(e: &anyhow::Error) -> bool {
    e.chain().any(
        |cause| match cause.downcast_ref::<tokio_postgres::Error>() {
            Some(pe) => {
                pe.is_closed()
                    || pe
                        .code()
                        .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
                    || std::error::Error::source(pe).is_some_and(|s| s.is::<std::io::Error>())
            }
            None => cause.is::<std::io::Error>(),
        },
    )
}

/// Waits before reconnection attempt `attempt` (1-based): 0.5, 1, 2, 4, 8 s.
/// About 15 s in all: long enough for a restart, short enough to give up
/// on a database that is really gone.
pub fn reconnect_delay(attempt: u32) -> Option<std::time::Duration> {
    (attempt <= 5).then(|| std::time::Duration::from_millis(500 << (attempt - 1)))
}
