//! Errors callers branch on, as types rather than message text, and the one
//! helper that puts an error and its causes on one line.

/// A database failure a caller decides on: reconnect and retry, or tell the
/// user how to trust the server. Anything else stays an `anyhow::Error`
/// with context.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The pool could not hand out a connection (the server is down or
    /// every connection is gone); worth waiting and retrying.
    #[error("getting a database connection: {0}")]
    PoolExhausted(String),
    /// The server's TLS certificate was refused (unknown CA, wrong name,
    /// expired).
    #[error("{0}")]
    CertificateRefused(String),
    /// PostgreSQL did not answer within the client's deadline
    /// ([`crate::db::Patience`]): the connection was dropped, since a
    /// stopped or wedged backend may never answer.
    #[error("PostgreSQL did not answer {what} within {} s; dropped the connection", seconds(*secs))]
    Stalled { what: &'static str, secs: f64 },
    /// The connection was dropped (after a stall) and reopening it failed,
    /// for this reason.
    #[error("no database connection: {0}")]
    NoConnection(String),
    /// The server refused a COPY before taking its data (a lock timeout, a
    /// permission): tokio-postgres sent a second Sync with it, and the
    /// extra ReadyForQuery that answers it would be read as the answer to
    /// the next statement ("unexpected message from server",
    /// rust-postgres#789). The connection must be dropped, not reused.
    #[error("the connection cannot be reused after a refused COPY")]
    Desynced,
}

impl DbError {
    /// Nothing came back from `what` within `limit`.
    pub fn stalled(what: &'static str, limit: std::time::Duration) -> Self {
        DbError::Stalled {
            what,
            secs: limit.as_secs_f64(),
        }
    }
}

/// Seconds as a person writes them: `2`, `4.4`, `0.05`.
pub fn seconds(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// An error and its causes on one line, each cause once: PostgreSQL errors
/// carry detail on later lines and in their source, and a one-line cause is
/// what a user needs on the terminal.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    // A marker for the writers (drop the connection), not news to a reader:
    // beside the server's own refusal it only read as a second problem.
    let internal = DbError::Desynced.to_string();
    let mut msg = String::new();
    let mut src = Some(e);
    while let Some(s) = src {
        let s_msg = s.to_string();
        if s_msg != internal && !msg.contains(&s_msg) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    if msg.is_empty() {
        msg = internal;
    }
    msg.replace('\n', " ")
}

/// Whether a TLS peer's certificate was refused somewhere in `e`'s causes.
/// rustls errors reach us wrapped in `std::io::Error`, whose `source`
/// skips the wrapped error itself, so each io error is opened too.
#[cfg(feature = "io")]
pub fn is_certificate_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let refused = |c: &(dyn std::error::Error + 'static)| {
        c.downcast_ref::<rustls::Error>().is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::AlertReceived(
                        rustls::AlertDescription::BadCertificate
                            | rustls::AlertDescription::UnknownCA
                            | rustls::AlertDescription::CertificateUnknown
                    )
            )
        }) || matches!(
            c.downcast_ref::<DbError>(),
            Some(DbError::CertificateRefused(_))
        )
    };
    let mut cause = Some(e);
    while let Some(c) = cause {
        if refused(c) {
            return true;
        }
        if let Some(inner) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_certificate_refused(inner) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_says_each_cause_once_and_no_internal_marker() {
        let e = anyhow::anyhow!("db error: ERROR: permission denied for table songs")
            .context("starting COPY songs")
            .context(DbError::Desynced)
            .context("writing a.json");
        assert_eq!(
            chain(&*e),
            "writing a.json: starting COPY songs: db error: ERROR: permission denied for table songs"
        );
        let top = anyhow::anyhow!("refused").context(DbError::Desynced);
        assert_eq!(chain(&*top), "refused");
    }
}
