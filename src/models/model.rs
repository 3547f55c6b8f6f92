//! A model's identity: its name, how many requests it keeps in flight,
//! whether it is a ceiling, its colour in charts; and the label a run is
//! shown under (the model, or `model+write` in a matrix).

use std::fmt;
use std::str::FromStr;

use super::{Ingestor, Knobs};
use crate::db::WriteStrategy;

/// An execution model (or a ceiling measured beside them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    Sync,
    AsyncFetch,
    Async,
    Threads,
    /// Ceiling: the network and parsing alone, no database.
    FetchOnly,
    /// Ceiling: the writes alone, objects read from memory.
    LoadOnly,
    /// Test-only: `sync` that silently skips the first key, so tests can
    /// prove the harness catches a load that is not exact.
    #[cfg(feature = "test-models")]
    TestDropOne,
}

impl Model {
    /// The models proper, in the order reports list them.
    pub const MODELS: [Model; 4] = [Model::Sync, Model::AsyncFetch, Model::Async, Model::Threads];
    /// The ceilings `compare --ceilings` measures beside the models.
    pub const CEILINGS: [Model; 2] = [Model::FetchOnly, Model::LoadOnly];
    /// Every model and ceiling `--model` accepts.
    const ALL: &[Model] = &[
        Model::Sync,
        Model::AsyncFetch,
        Model::Async,
        Model::Threads,
        Model::FetchOnly,
        Model::LoadOnly,
        #[cfg(feature = "test-models")]
        Model::TestDropOne,
    ];

    /// The name used on the command line, in the ledger and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Model::Sync => "sync",
            Model::AsyncFetch => "async-fetch",
            Model::Async => "async",
            Model::Threads => "threads",
            Model::FetchOnly => "fetch-only",
            Model::LoadOnly => "load-only",
            #[cfg(feature = "test-models")]
            Model::TestDropOne => "test-drop-one",
        }
    }

    /// Whether this is a ceiling rather than a model proper.
    pub fn is_ceiling(self) -> bool {
        Self::CEILINGS.contains(&self)
    }

    /// Whether the model writes to the database (and so has a load to verify).
    pub fn writes(self) -> bool {
        self != Model::FetchOnly
    }

    /// How many GETs the model has in flight at once, across all `workers`
    /// processes; `None` for `load-only`, which does not touch the network.
    pub fn in_flight(self, knobs: &Knobs, workers: usize) -> Option<usize> {
        let per_worker = match self {
            Model::Sync => 1,
            Model::AsyncFetch | Model::Async | Model::FetchOnly => knobs.concurrency,
            Model::Threads => knobs.threads,
            Model::LoadOnly => return None,
            #[cfg(feature = "test-models")]
            Model::TestDropOne => 1,
        };
        Some(per_worker * workers.max(1))
    }

    /// Whether the model has several requests in flight, and so may fetch
    /// a large object's rest in byte ranges beside its GET
    /// ([`crate::bucket::parts`]); `sync`'s one request at a time is what
    /// it stands for.
    pub fn concurrent_requests(self) -> bool {
        match self {
            Model::AsyncFetch | Model::Async | Model::Threads | Model::FetchOnly => true,
            Model::Sync | Model::LoadOnly => false,
            #[cfg(feature = "test-models")]
            Model::TestDropOne => false,
        }
    }

    /// The byte ranges the model may ask for beside one object's GET:
    /// `configured` (`--ranged-parts`), but none for a model with one
    /// request at a time, and never more than its own requests in flight
    /// less the GET (a user who lowers `--concurrency` or `--threads` to
    /// spare a shared bucket is not sent more).
    pub fn ranged_parts(self, knobs: &super::Knobs, configured: u64) -> u64 {
        if !self.concurrent_requests() {
            return 0;
        }
        let in_flight = self.in_flight(knobs, 1).unwrap_or(1) as u64;
        configured.min(in_flight.saturating_sub(1))
    }

    /// The model's colour in every chart and in `report.html`, as RGB: the
    /// one place it is set (`harness::charts::series_styles` shades it per
    /// write strategy and keeps every series distinct).
    pub fn color(self) -> (u8, u8, u8) {
        match self {
            Model::Sync => (214, 39, 40),
            Model::AsyncFetch => (255, 127, 14),
            Model::Async => (44, 160, 44),
            Model::Threads => (31, 119, 180),
            Model::FetchOnly => (148, 103, 189),
            Model::LoadOnly => (140, 86, 75),
            #[cfg(feature = "test-models")]
            Model::TestDropOne => (127, 127, 127),
        }
    }

    /// The implementation that runs a pass.
    pub fn ingestor(self) -> Box<dyn Ingestor> {
        match self {
            Model::Sync => Box::new(super::sync::SyncModel),
            Model::AsyncFetch => Box::new(super::async_fetch::AsyncFetchModel),
            Model::Async => Box::new(super::full_async::AsyncModel),
            Model::Threads => Box::new(super::threads::ThreadsModel),
            Model::FetchOnly => Box::new(super::ceilings::FetchOnlyCeiling),
            Model::LoadOnly => Box::new(super::ceilings::LoadOnlyCeiling),
            #[cfg(feature = "test-models")]
            Model::TestDropOne => Box::new(super::DropOneModel),
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Model {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::MODELS.iter().map(|m| m.name()).collect();
                anyhow::anyhow!("unknown model {s:?}; choose one of: {}", names.join(", "))
            })
    }
}

impl clap::ValueEnum for Model {
    fn value_variants<'a>() -> &'a [Self] {
        Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        // Help lists the models proper; the ceilings (which `compare`
        // measures on its own) and the test model parse but stay unlisted.
        Some(clap::builder::PossibleValue::new(self.name()).hide(!Self::MODELS.contains(self)))
    }
}

impl serde::Serialize for Model {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Model {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a run is summarised and shown under: the model, or `model+write`
/// in a matrix of models and write strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub model: Model,
    /// The write strategy, in a matrix; `None` when every run shares one.
    pub write: Option<WriteStrategy>,
}

impl Label {
    /// The label of `model` run with `write`, shown with the strategy only
    /// in a matrix.
    pub fn new(model: Model, write: WriteStrategy, matrix: bool) -> Self {
        Label {
            model,
            write: matrix.then_some(write),
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.write {
            Some(w) => write!(f, "{}+{}", self.model, w.as_str()),
            None => write!(f, "{}", self.model),
        }
    }
}

impl serde::Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Label {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (model, write) = match s.split_once('+') {
            Some((m, w)) => (
                m,
                Some(
                    <WriteStrategy as clap::ValueEnum>::from_str(w, false)
                        .map_err(|_| anyhow::anyhow!("unknown write strategy {w:?} in {s:?}"))?,
                ),
            ),
            None => (s, None),
        };
        Ok(Label {
            model: model.parse()?,
            write,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_never_exceed_a_models_own_requests_in_flight() {
        let knobs = super::super::Knobs {
            concurrency: 1,
            threads: 3,
            ..Default::default()
        };
        assert_eq!(Model::Sync.ranged_parts(&knobs, 4), 0);
        assert_eq!(Model::LoadOnly.ranged_parts(&knobs, 4), 0);
        assert_eq!(Model::Async.ranged_parts(&knobs, 4), 0, "--concurrency 1");
        assert_eq!(Model::Threads.ranged_parts(&knobs, 4), 2, "--threads 3");
        assert_eq!(Model::FetchOnly.ranged_parts(&Default::default(), 4), 4);
        assert_eq!(Model::AsyncFetch.ranged_parts(&Default::default(), 0), 0);
    }

    #[test]
    fn labels_print_and_parse_back() {
        for l in [
            Label::new(Model::AsyncFetch, WriteStrategy::Insert, true),
            Label::new(Model::LoadOnly, WriteStrategy::Copy, false),
        ] {
            assert_eq!(l.to_string().parse::<Label>().unwrap(), l);
        }
        assert_eq!(
            Label::new(Model::Sync, WriteStrategy::Batch, true).to_string(),
            "sync+batch"
        );
        assert!("sync+fast".parse::<Label>().is_err());
    }
}
