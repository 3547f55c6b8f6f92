//! What the benchmarked server does with a commit: its durability settings
//! as the server reports them (recorded in `environment.json` and the
//! subtitle, since a durable server's per-file committers pay a flush per
//! file), and the checkpoint that starts every run on compare's own server
//! from the same state.

use anyhow::Context;

/// The settings that decide whether a commit waits for the disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerDurability {
    pub fsync: String,
    pub synchronous_commit: String,
    pub full_page_writes: String,
}

impl ServerDurability {
    /// Reads the settings from the server (`SHOW` works for any user).
    pub fn read(client: &mut postgres::Client) -> anyhow::Result<Self> {
        let mut show = |name: &str| -> anyhow::Result<String> {
            Ok(client
                .query_one(&format!("SHOW {name}"), &[])
                .with_context(|| format!("reading the server's {name}"))?
                .get(0))
        };
        Ok(ServerDurability {
            fsync: show("fsync")?,
            synchronous_commit: show("synchronous_commit")?,
            full_page_writes: show("full_page_writes")?,
        })
    }

    /// Whether a commit is on the disk when it returns, as with
    /// PostgreSQL's defaults (every `synchronous_commit` but `off` waits
    /// for the local flush) and torn pages are guarded against.
    pub fn is_full(&self) -> bool {
        self.fsync == "on" && self.synchronous_commit != "off" && self.full_page_writes == "on"
    }

    /// A few words for the subtitle.
    pub fn describe(&self) -> &'static str {
        if self.is_full() {
            "durable commits"
        } else {
            "relaxed durability"
        }
    }
}

/// Flushes the previous run's pages and recycles its WAL segments before
/// the next run, so no run pays for an earlier one's writes. Only on
/// compare's own server: a checkpoint on someone else's is theirs to time.
pub fn checkpoint(client: &mut postgres::Client) -> anyhow::Result<()> {
    client
        .batch_execute("CHECKPOINT")
        .context("checkpointing between runs")
}
