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
pub use embedded::{Durability, EmbeddedPostgres, Flavor};
pub use ledger::{FileOutcome, WritePlan, WriteStrategy};

/// Settings every session this program opens starts with (libpq startup
/// options, so a pooled connection has them from its first statement, and
/// anything the URL's own `options` sets afterwards wins).
///
/// * `lock_timeout=5s`: the only lock a worker normally waits on is another
///   worker's uncommitted claim of the same key, held for one file's or one
///   group's transaction (well under a second on a healthy server). A claim
///   still waiting after 5 s belongs to a stalled or partitioned worker; the
///   key is reported busy and left for a later pass instead of holding this
///   worker up indefinitely.
/// * `idle_in_transaction_session_timeout=60s`: our writers never pause
///   inside a transaction except between pipelined statements, so a session
///   idle in a transaction for a minute is a stalled process (stopped,
///   swapped out, debugger): the server ends it and its claims are freed.
/// * `tcp_keepalives_*`: a worker cut off by the network is noticed by the
///   server in about two minutes (60 s idle, then 6 probes 10 s apart)
///   instead of the kernel's two hours, and its transaction rolled back.
pub const SESSION_OPTIONS: &str = "-c lock_timeout=5s -c idle_in_transaction_session_timeout=60s \
    -c tcp_keepalives_idle=60 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=6";

#[cfg(feature = "io")]
/// The URL as a client configuration with [`SESSION_OPTIONS`] in front of
/// its own options.
pub fn session_config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("bad database URL {}: {e}", crate::secret::redact_url(url)))?;
    let options = match cfg.get_options() {
        Some(own) if !own.trim().is_empty() => format!("{SESSION_OPTIONS} {own}"),
        _ => SESSION_OPTIONS.to_string(),
    };
    cfg.options(options);
    Ok(cfg)
}

#[cfg(feature = "io")]
/// Opens a synchronous connection, with the password kept out of the error.
pub fn connect_sync(url: &str) -> anyhow::Result<postgres::Client> {
    postgres::Config::from(session_config(url)?)
        .connect(tls::connector()?)
        .map_err(|e| {
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

#[cfg(feature = "io")]
/// What a failed write means for the file, from the error's SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFault {
    /// The connection is gone: reconnect and retry the file.
    ConnectionLost,
    /// A lock wait timed out (55P03): another worker holds the claim.
    Busy,
    /// Deadlock (40P01) or serialization failure (40001): the transaction
    /// was rolled back and retrying it may well succeed.
    Retry,
    /// Anything else: the database refused the data itself (classes 22, 23,
    /// 54, XX, ...). Retrying it unchanged would fail again. The reason is
    /// one line, without the server's DETAIL (which can quote whole rows).
    Refused(String),
}

#[cfg(feature = "io")]
pub fn classify(e: &anyhow::Error) -> WriteFault {
    if is_connection_lost(e) {
        return WriteFault::ConnectionLost;
    }
    let db = e
        .chain()
        .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .and_then(|pe| pe.as_db_error());
    match db {
        Some(d) if d.code() == &tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE => {
            WriteFault::Busy
        }
        Some(d)
            if d.code() == &tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                || d.code() == &tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            WriteFault::Retry
        }
        Some(d) => WriteFault::Refused(crate::report::clip(
            &format!(
                "PostgreSQL refused it ({}): {}",
                d.code().code(),
                d.message().replace('\n', " ")
            ),
            300,
        )),
        None => WriteFault::Refused(crate::report::clip(&crate::error::chain(&**e), 300)),
    }
}

/// Waits before retry `attempt` (1-based) of a transaction that hit a
/// deadlock or serialization failure: 50, 100, 200, 400, 800 ms, each with
/// up to as much again of jitter so that the two losers of a deadlock do not
/// collide again; `None` after five.
pub fn contention_delay(attempt: u32, jitter: f64) -> Option<std::time::Duration> {
    (attempt <= 5).then(|| {
        let base = 50u64 << (attempt - 1);
        std::time::Duration::from_millis(base + (base as f64 * jitter.clamp(0.0, 1.0)) as u64)
    })
}

#[cfg(feature = "io")]
/// What a writer does after a failed attempt at a transaction.
pub(crate) enum Next {
    /// Wait, then try again; after a lost connection, on a fresh one.
    Retry(std::time::Duration),
    /// Still unreachable after the reconnect attempts: give the error up.
    Unreachable,
    /// Another worker holds the claim, or the deadlocks did not stop.
    Busy,
    /// PostgreSQL refused the data (see [`WriteFault::Refused`]).
    Refused(String),
}

#[cfg(feature = "io")]
/// The retry policy both writers' loops share: lost connections retried
/// with [`reconnect_delay`], deadlocks and serialization failures with
/// [`contention_delay`], each up to its bound.
#[derive(Default)]
pub(crate) struct Retries {
    lost: u32,
    contended: u32,
}

#[cfg(feature = "io")]
impl Retries {
    /// The next step after attempt error `e`, classified as `fault`.
    pub(crate) fn next(&mut self, fault: WriteFault, e: &anyhow::Error) -> Next {
        match fault {
            WriteFault::ConnectionLost => {
                self.lost += 1;
                let Some(delay) = reconnect_delay(self.lost) else {
                    return Next::Unreachable;
                };
                tracing::warn!(
                    "database connection lost ({}); reconnecting",
                    crate::error::chain(&**e)
                );
                Next::Retry(delay)
            }
            WriteFault::Retry => {
                self.contended += 1;
                contention_delay(self.contended, rand::random()).map_or(Next::Busy, Next::Retry)
            }
            WriteFault::Busy => Next::Busy,
            WriteFault::Refused(reason) => Next::Refused(reason),
        }
    }
}

#[cfg(all(test, feature = "io"))]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_at_their_bounds() {
        let e = anyhow::anyhow!("gone");
        let mut r = Retries::default();
        for _ in 0..5 {
            assert!(matches!(
                r.next(WriteFault::ConnectionLost, &e),
                Next::Retry(_)
            ));
        }
        assert!(matches!(
            r.next(WriteFault::ConnectionLost, &e),
            Next::Unreachable
        ));
        // Contention has a budget of its own.
        for _ in 0..5 {
            assert!(matches!(r.next(WriteFault::Retry, &e), Next::Retry(_)));
        }
        assert!(matches!(r.next(WriteFault::Retry, &e), Next::Busy));
        assert!(matches!(r.next(WriteFault::Busy, &e), Next::Busy));
        assert!(matches!(
            r.next(WriteFault::Refused("no".into()), &e),
            Next::Refused(reason) if reason == "no"
        ));
    }
}
