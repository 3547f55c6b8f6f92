//! The database side: schema migrations, the ledger, the COPY encoding of
//! rows, the writers each model uses, and the embedded PostgreSQL server.
//!
//! `ledger` and `copy` are sans-IO (SQL text, bound parameters and COPY
//! bytes); `sync_writer` and `async_writer` are the thin shells that send
//! them with the `postgres` and `tokio-postgres` clients.

pub mod async_writer;
pub mod copy;
pub mod embedded;
pub mod ledger;
pub mod schema;
pub mod sync_writer;

pub use embedded::{EmbeddedPostgres, Flavor};
pub use ledger::{FileOutcome, WritePlan};

/// Opens a synchronous connection, with the password kept out of the error.
pub fn connect_sync(url: &str) -> anyhow::Result<postgres::Client> {
    postgres::Client::connect(url, postgres::NoTls).map_err(|e| {
        anyhow::anyhow!("cannot connect to PostgreSQL at {}: {}", crate::secret::redact_url(url), one_line(&e))
    })
}

/// PostgreSQL errors carry detail on later lines and in their source; a
/// one-line cause is what a user needs on the terminal.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    msg.replace('\n', " ")
}
