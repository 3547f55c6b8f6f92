//! `compare`'s own schema: every run loads into a schema created for this
//! comparison and dropped at its end, so pointing `compare` at a database
//! that holds `ingest`'s real tables and ledger never touches them.
//!
//! The workers find it through their connection string: libpq's `options`
//! parameter (`-c search_path=...`), which `postgres` and `tokio-postgres`
//! both send at start-up, so every unqualified name (the tables, the
//! ledger, refinery's history table) resolves inside it.

use std::sync::Mutex;

use anyhow::Context as _;

use crate::db::Patience;
use crate::db::watched::Watched;

/// Prefix of every schema `compare` creates.
pub const PREFIX: &str = "bucketbench_compare_";

/// A schema of this comparison's own, dropped on drop.
pub struct Scratch {
    base_url: String,
    patience: Patience,
    schema: String,
    url: String,
    dropped: bool,
}

/// Schemas to drop if the process is interrupted, with the URL to reach
/// them (see [`Scratch::create`]).
static LIVE: Mutex<Vec<(String, String, Patience)>> = Mutex::new(Vec::new());

impl Scratch {
    /// Creates `bucketbench_compare_<pid>_<random>` in the database at
    /// `base_url`. Needs the CREATE privilege on that database. Every wait
    /// on the server is bounded by `patience`.
    pub fn create(base_url: &str, patience: Patience) -> anyhow::Result<Self> {
        let schema = format!(
            "{PREFIX}{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let create = format!("CREATE SCHEMA {schema}");
        let mut db = Watched::connect(base_url, patience)?;
        let limit = patience.base;
        // Not repeated after a stall: the first attempt may still commit.
        let created = db.call_once("compare's new schema", limit, move |c| {
            c.batch_execute(&create).map_err(|e| {
                let denied = e.code() == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
                anyhow::Error::new(e).context(if denied {
                    "compare needs permission to add a schema to the database"
                } else {
                    "creating it"
                })
            })
        });
        if let Err(e) = created {
            let hint = if crate::db::is_stalled(&e) {
                format!(
                    " (it may still be created when the server answers: drop it with DROP SCHEMA IF EXISTS {schema} CASCADE)"
                )
            } else {
                String::new()
            };
            anyhow::bail!("making the schema {schema} that compare benchmarks in: {e:#}{hint}");
        }
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).push((
            base_url.to_string(),
            schema.clone(),
            patience,
        ));
        Ok(Scratch {
            url: with_search_path(base_url, &schema)?,
            base_url: base_url.to_string(),
            patience,
            schema,
            dropped: false,
        })
    }

    /// For a schema in a throwaway server, deleted whole on exit: nothing
    /// to drop, at the end or on Ctrl-C (the server may be stopping
    /// already, or stopped answering, and a hint to drop the schema by
    /// hand would be noise).
    pub fn in_throwaway_server(&mut self) {
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, s, _)| *s != self.schema);
        self.dropped = true;
    }

    /// The connection string that lands in this schema (it holds the
    /// password: pass it on, never print it).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the schema and everything in it.
    pub fn drop_now(&mut self) -> anyhow::Result<()> {
        if self.dropped {
            return Ok(());
        }
        self.dropped = true;
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(_, s, _)| *s != self.schema);
        drop_schema(&self.base_url, &self.schema, self.patience)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Interrupted: the signal handler drops what needs dropping (a
        // throwaway server goes whole), and says the one line that matters.
        if crate::db::embedded::interrupted() {
            return;
        }
        if let Err(e) = self.drop_now() {
            crate::esayln!(
                "warning: could not drop compare's schema {s} ({}); drop it with: DROP SCHEMA {s} CASCADE",
                crate::secret::redact_text(&format!("{e:#}")),
                s = self.schema
            );
        }
    }
}

fn drop_schema(base_url: &str, schema: &str, patience: Patience) -> anyhow::Result<()> {
    let schema = schema.to_string();
    // A worker killed mid-transaction may hold locks until its backend
    // notices: wait for them a bounded time (the server's, then ours).
    let limit = patience.base + LOCK_WAIT;
    Watched::connect(base_url, patience)?.call("dropping compare's schema", limit, move |c| {
        c.batch_execute(&format!("SET lock_timeout = '{}s'", LOCK_WAIT.as_secs()))?;
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .with_context(|| format!("dropping the schema {schema}"))
    })
}

/// How long dropping the schema waits for locks a killed worker held.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// On Ctrl-C: drops every schema still live (the binary calls this from
/// its interrupt hook, after stopping the workers).
pub fn drop_live_schemas() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|p| p.into_inner()));
    for (url, schema, patience) in live {
        if let Err(e) = drop_schema(&url, &schema, patience) {
            crate::esayln!(
                "warning: could not drop compare's schema {schema} ({}); drop it with: DROP SCHEMA {schema} CASCADE",
                crate::secret::redact_text(&format!("{e:#}"))
            );
        }
    }
}

/// `url` (a URL or a `key=value` connection string) with
/// `-c search_path=<schema>` added to its `options`, keeping any options
/// it already had.
pub fn with_search_path(url: &str, schema: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "schema name {schema:?} is not a plain identifier"
    );
    let setting = format!("-c search_path={schema}");
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if is_url {
        use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
        // The query starts at the first `?` after the userinfo, which ends
        // at the first `@` as tokio-postgres reads it (an `@` may follow in
        // the query: `application_name=etl@box`).
        let host = url.find('@').map_or(0, |a| a + 1);
        let (head, query) = match url[host..].find('?') {
            Some(q) => (&url[..host + q], &url[host + q + 1..]),
            None => (url, ""),
        };
        let mut pairs: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        let options = pairs
            .iter()
            .position(|p| p.split('=').next().is_some_and(|k| k == "options"));
        let merged = match options {
            Some(i) => {
                let old = pairs.remove(i);
                let old = old.split_once('=').map_or("", |(_, v)| v);
                let old = percent_decode_str(old).decode_utf8_lossy().into_owned();
                format!("{old} {setting}")
            }
            None => setting,
        };
        pairs.push(format!(
            "options={}",
            utf8_percent_encode(&merged, NON_ALPHANUMERIC)
        ));
        return Ok(format!("{head}?{}", pairs.join("&")));
    }
    let pairs = crate::secret::conninfo_pairs(url);
    match pairs.iter().rev().find(|p| p.key == "options") {
        Some(p) => {
            let merged = format!("{} {setting}", p.value)
                .replace('\\', "\\\\")
                .replace('\'', "\\'");
            Ok(format!(
                "{}'{merged}'{}",
                &url[..p.value_span.start],
                &url[p.value_span.end..]
            ))
        }
        None => Ok(format!("{url} options='{setting}'")),
    }
}

/// Refuses to go on unless `client`'s unqualified names resolve in
/// `schema`: what `compare` empties between runs must be its own.
pub fn ensure_inside(client: &mut postgres::Client, schema: &str) -> anyhow::Result<()> {
    let current: Option<String> = client
        .query_one("SELECT current_schema()", &[])
        .context("checking which schema compare writes in")?
        .get(0);
    anyhow::ensure!(
        current.as_deref() == Some(schema),
        "compare's connection resolves names in schema {current:?}, not its own {schema}: refusing to empty it"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_search_path;

    #[test]
    fn adds_the_search_path_to_every_form() {
        assert_eq!(
            with_search_path("postgres://u:p@h/db", "s1").unwrap(),
            "postgres://u:p@h/db?options=%2Dc%20search%5Fpath%3Ds1"
        );
        assert_eq!(
            with_search_path("postgres://u:p?x@h1:1,h2:2/db?sslmode=require", "s1").unwrap(),
            "postgres://u:p?x@h1:1,h2:2/db?sslmode=require&options=%2Dc%20search%5Fpath%3Ds1"
        );
        assert_eq!(
            with_search_path("postgres://h/db?options=-c%20work_mem%3D1MB", "s1").unwrap(),
            "postgres://h/db?options=%2Dc%20work%5Fmem%3D1MB%20%2Dc%20search%5Fpath%3Ds1"
        );
        assert_eq!(
            with_search_path("host=h password='a b'", "s1").unwrap(),
            "host=h password='a b' options='-c search_path=s1'"
        );
        assert_eq!(
            with_search_path("host=h options = '-c work_mem=1MB' user=u", "s1").unwrap(),
            "host=h options = '-c work_mem=1MB -c search_path=s1' user=u"
        );
        assert_eq!(
            with_search_path(
                "postgres://u@h/db?application_name=etl@box&password=a@b",
                "s1"
            )
            .unwrap(),
            "postgres://u@h/db?application_name=etl@box&password=a@b&options=%2Dc%20search%5Fpath%3Ds1"
        );
        assert!(with_search_path("host=h", "x; drop").is_err());
    }
}
