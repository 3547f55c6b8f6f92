//! The seeded bucket generator: the same (profile, seed) always gives
//! byte-identical objects, and every object comes with what a correct load
//! of it yields (derived from what was put in, never by running the loader).

use chrono::NaiveDate;
use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Number, Value, json};

use super::expected::{FileExpect, TableSum, field, rating_text};
use super::words::*;
use crate::contract::normalize_title;

/// A named bucket shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileName {
    /// 5 files × 20 records.
    Tiny,
    /// 20 files × 200 records.
    Small,
    /// Like the original bucket: 67 files × about 1,500 records, 10 % other types, all valid.
    Seed,
    /// `small` with every kind of bad input.
    Messy,
    /// 10,000 files × 100 records.
    Large,
}

impl ProfileName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::Tiny => "tiny",
            ProfileName::Small => "small",
            ProfileName::Seed => "seed",
            ProfileName::Messy => "messy",
            ProfileName::Large => "large",
        }
    }
}

/// What to generate: a profile, optionally resized, and a seed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Spec {
    pub profile: ProfileName,
    pub files: usize,
    /// Median records per file.
    pub records: usize,
    pub seed: u64,
}

impl Spec {
    pub fn new(profile: ProfileName, seed: u64) -> Self {
        let (files, records) = match profile {
            ProfileName::Tiny => (5, 20),
            ProfileName::Small | ProfileName::Messy => (20, 200),
            ProfileName::Seed => (67, 1500),
            ProfileName::Large => (10_000, 100),
        };
        Spec {
            profile,
            files,
            records,
            seed,
        }
    }

    pub fn with_overrides(mut self, files: Option<usize>, records: Option<usize>) -> Self {
        self.files = files.unwrap_or(self.files);
        self.records = records.unwrap_or(self.records);
        self
    }

    fn messy(&self) -> bool {
        self.profile == ProfileName::Messy
    }

    /// Share of records of types that are not loaded.
    fn other_share(&self) -> f64 {
        match self.profile {
            ProfileName::Seed => 0.10,
            _ => 0.05,
        }
    }
}

/// One generated key.
#[derive(Debug, Clone)]
pub struct GeneratedFile {
    pub key: String,
    /// `None` for a key that is listed but answers 404.
    pub body: Option<Vec<u8>>,
    pub expect: FileExpect,
}

/// The bucket key of file `i`: ten files a day from 2021-06-01, as a
/// date-partitioned export would write them.
pub fn key_for(i: usize) -> String {
    let day =
        NaiveDate::from_ymd_opt(2021, 6, 1).expect("valid") + chrono::Days::new((i / 10) as u64);
    format!("{}/part-{i:05}.json", day.format("%Y/%m/%d"))
}

/// Generates file `i` of the bucket `spec` describes. Files are independent
/// (each has its own random stream), so churn can add file `n` later and a
/// large bucket can be generated in any order.
pub fn file(spec: &Spec, i: usize) -> GeneratedFile {
    let key = key_for(i);
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(i as u64);
    if spec.messy() {
        // Fixed positions, so every messy bucket holds each file-level fault.
        match i {
            3 => {
                return failed(
                    key,
                    b"{\"type\": \"song\", \"data\": {\"title\": \"truncated".to_vec(),
                );
            }
            11 => {
                return failed(
                    key,
                    b"song,title,year\nCome as You Are,Nirvana,1992\n".to_vec(),
                );
            }
            7 => {
                return failed(
                    key,
                    serde_json::to_vec(
                        &json!({"type": "song", "data": {"title": "wrapped in an object"}}),
                    )
                    .expect("json"),
                );
            }
            15 => return loaded_empty(key),
            _ => {}
        }
    }
    // Most files are near the median; one in twenty is ten times larger.
    let scale = if rng.random_bool(0.05) {
        10.0
    } else {
        rng.random_range(0.5..1.5)
    };
    let n = ((spec.records as f64) * scale).round().max(1.0) as usize;
    let mut g = FileGen {
        rng,
        key: key.clone(),
        messy: spec.messy(),
        other_share: spec.other_share(),
        songs: TableSum::default(),
        movies: TableSum::default(),
        apps: TableSum::default(),
        rejected: TableSum::default(),
        skipped: 0,
    };
    let records: Vec<Value> = (0..n).map(|idx| g.record(idx)).collect();
    let body = serde_json::to_vec(&Value::Array(records)).expect("json");
    GeneratedFile {
        key,
        body: Some(body),
        expect: FileExpect::Loaded {
            songs: g.songs,
            movies: g.movies,
            apps: g.apps,
            rejected: g.rejected,
            skipped: g.skipped,
        },
    }
}

fn failed(key: String, body: Vec<u8>) -> GeneratedFile {
    GeneratedFile {
        key,
        body: Some(body),
        expect: FileExpect::Failed,
    }
}

fn loaded_empty(key: String) -> GeneratedFile {
    GeneratedFile {
        key,
        body: Some(b"[]".to_vec()),
        expect: FileExpect::Loaded {
            songs: TableSum::default(),
            movies: TableSum::default(),
            apps: TableSum::default(),
            rejected: TableSum::default(),
            skipped: 0,
        },
    }
}

/// Keys a messy manifest lists that have no object (404).
pub fn missing_keys(spec: &Spec) -> Vec<String> {
    if spec.messy() {
        vec![
            "2021/05/31/part-99998.json".into(),
            "2021/05/31/part-99999.json".into(),
        ]
    } else {
        vec![]
    }
}

/// The manifest for these keys. A messy one has CRLF line ends, blank and
/// whitespace-padded lines, and duplicates, as hand-edited manifests do.
pub fn manifest(spec: &Spec, keys: &[String]) -> String {
    if !spec.messy() {
        return keys.iter().map(|k| format!("{k}\n")).collect();
    }
    let mut out = String::from("\r\n");
    for (i, k) in keys.iter().enumerate() {
        match i % 6 {
            0 => out.push_str(&format!("{k}\r\n")),
            1 => out.push_str(&format!("  {k}\t\r\n\r\n")),
            2 => out.push_str(&format!("{k}\n{k}\r\n")),
            _ => out.push_str(&format!("{k}\n")),
        }
    }
    out.push_str(&format!(
        "{}\r\n   \r\n",
        keys.first().cloned().unwrap_or_default()
    ));
    out
}

struct FileGen {
    rng: ChaCha8Rng,
    key: String,
    messy: bool,
    other_share: f64,
    songs: TableSum,
    movies: TableSum,
    apps: TableSum,
    rejected: TableSum,
    skipped: u64,
}

/// The ways a record can break the contract; a messy bucket holds each.
const BAD_KINDS: usize = 13;

fn opt(s: Option<&String>) -> Option<&str> {
    s.map(String::as_str)
}

impl FileGen {
    fn pick<'a>(&mut self, list: &'a [&'a str]) -> &'a str {
        list[self.rng.random_range(0..list.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// A title of 1–4 words, mostly Latin, sometimes another script, with
    /// the punctuation and spacing real titles have.
    fn title(&mut self) -> String {
        let script: &[&str] = match self.rng.random_range(0..10) {
            0 => CYRILLIC,
            1 => CJK,
            2 => ARABIC,
            _ => LATIN,
        };
        let words = self.rng.random_range(1..=4);
        let mut t = String::new();
        for w in 0..words {
            if w > 0 {
                t.push_str(self.pick(JOINERS));
            }
            let list = if self.chance(0.1) { NUMBERS } else { script };
            t.push_str(self.pick(list));
        }
        if self.chance(0.05) {
            t.push('?');
        }
        t
    }

    fn record(&mut self, index: usize) -> Value {
        if self.messy && self.chance(0.13) {
            let kind = self.rng.random_range(0..BAD_KINDS);
            let bad = self.bad_record(kind);
            self.rejected
                .add(&[field(Some(&self.key)), field(Some(&index.to_string()))]);
            return bad;
        }
        if self.chance(self.other_share) {
            self.skipped += 1;
            let ty = self.pick(OTHER_TYPES);
            let title = self.title();
            return json!({"type": ty, "data": {"title": title, "id": self.rng.random_range(1..1_000_000u32)}});
        }
        match self.rng.random_range(0..3) {
            0 => self.song(),
            1 => self.movie(),
            _ => self.app(),
        }
    }

    /// Puts an optional value: absent, `null` (both load as NULL) or present.
    fn put(&mut self, data: &mut Map<String, Value>, name: &str, v: Option<Value>) {
        match v {
            Some(v) => {
                data.insert(name.into(), v);
            }
            None => {
                if self.chance(0.5) {
                    data.insert(name.into(), Value::Null);
                }
            }
        }
    }

    /// An integer as JSON; in a messy bucket sometimes as a string or a
    /// whole float, which the contract coerces.
    fn int_value(&mut self, i: i64) -> Value {
        if self.messy {
            match self.rng.random_range(0..4) {
                0 => return Value::String(i.to_string()),
                1 if i.unsigned_abs() < (1 << 53) => {
                    return Value::Number(Number::from_f64(i as f64).expect("finite"));
                }
                _ => {}
            }
        }
        Value::from(i)
    }

    fn extras(&mut self, data: &mut Map<String, Value>) {
        if self.chance(0.2) {
            data.insert(
                "id".into(),
                Value::from(self.rng.random_range(1..10_000_000u64)),
            );
        }
        if self.chance(0.1) {
            data.insert("tags".into(), json!(["imported", "2021"]));
        }
    }

    fn song(&mut self) -> Value {
        let artist = self.chance(0.9).then(|| self.pick(ARTISTS).to_string());
        let title = self.title();
        let year = self
            .chance(0.85)
            .then(|| self.rng.random_range(1950..=2024i64));
        let release = self.chance(0.7).then(|| self.title());
        let mut d = Map::new();
        self.put(&mut d, "artist_name", artist.clone().map(Value::String));
        d.insert("title".into(), Value::String(title.clone()));
        let yv = year.map(|y| self.int_value(y));
        self.put(&mut d, "year", yv);
        self.put(&mut d, "release", release.clone().map(Value::String));
        self.extras(&mut d);
        self.songs.add(&[
            field(Some(&self.key)),
            field(opt(artist.as_ref())),
            field(Some(&title)),
            field(year.map(|y| y.to_string()).as_deref()),
            field(opt(release.as_ref())),
        ]);
        json!({"type": "song", "data": d})
    }

    fn movie(&mut self) -> Value {
        let title = self.title();
        let lang = self.chance(0.8).then(|| self.pick(LANGUAGES).to_string());
        // Budgets reach past 2^31, as blockbusters' do (in cents or yen).
        let budget = self
            .chance(0.8)
            .then(|| self.rng.random_range(0..400_000_000_000i64));
        let adult = self.chance(0.8).then(|| self.chance(0.1));
        let date = self.chance(0.85).then(|| {
            let start = NaiveDate::from_ymd_opt(1925, 1, 1).expect("valid");
            start + chrono::Days::new(self.rng.random_range(0..36_500))
        });
        let mut d = Map::new();
        let key = if self.messy && self.chance(0.2) {
            "original_title:"
        } else {
            "original_title"
        };
        d.insert(key.into(), Value::String(title.clone()));
        self.put(&mut d, "original_language", lang.clone().map(Value::String));
        let bv = budget.map(|b| self.int_value(b));
        self.put(&mut d, "budget", bv);
        let av = adult.map(|a| {
            if self.messy && self.chance(0.5) {
                Value::String(if a { "TRUE" } else { "False" }.into())
            } else {
                Value::Bool(a)
            }
        });
        self.put(&mut d, "is_adult", av);
        self.put(
            &mut d,
            "release_date",
            date.map(|x| Value::String(x.format("%Y-%m-%d").to_string())),
        );
        self.extras(&mut d);
        self.movies.add(&[
            field(Some(&self.key)),
            field(Some(&title)),
            field(opt(lang.as_ref())),
            field(budget.map(|b| b.to_string()).as_deref()),
            field(adult.map(|a| a.to_string()).as_deref()),
            field(date.map(|x| x.format("%Y-%m-%d").to_string()).as_deref()),
            field(Some(&normalize_title(&title))),
        ]);
        json!({"type": "movie", "data": d})
    }

    fn app(&mut self) -> Value {
        let name = format!("{}{}", self.title(), self.pick(APP_SUFFIXES));
        let genre = self.chance(0.8).then(|| self.pick(GENRES).to_string());
        let rating = self
            .chance(0.85)
            .then(|| f64::from(self.rng.random_range(0..=50u8)) / 10.0);
        // A version is text; a messy bucket sometimes writes it as a JSON
        // number (2.1), which loads as its JSON text.
        let (version, version_value) = match self.rng.random_range(0..10) {
            0 | 1 => (None, None),
            2 if self.messy => {
                let n = Number::from_f64(f64::from(self.rng.random_range(1..40u8)) / 10.0)
                    .expect("finite");
                (Some(n.to_string()), Some(Value::Number(n)))
            }
            _ => {
                let v = format!(
                    "{}.{}.{}",
                    self.rng.random_range(0..5),
                    self.rng.random_range(0..20),
                    self.rng.random_range(0..30)
                );
                (Some(v.clone()), Some(Value::String(v)))
            }
        };
        let size = self
            .chance(0.85)
            .then(|| self.rng.random_range(10_000..10_000_000_000i64));
        let mut d = Map::new();
        d.insert("name".into(), Value::String(name.clone()));
        self.put(&mut d, "genre", genre.clone().map(Value::String));
        let rv = rating.map(|r| {
            if self.messy && self.chance(0.3) {
                Value::String(r.to_string())
            } else {
                Value::Number(Number::from_f64(r).expect("finite"))
            }
        });
        self.put(&mut d, "rating", rv);
        self.put(&mut d, "version", version_value);
        let sv = size.map(|s| self.int_value(s));
        self.put(&mut d, "size_bytes", sv);
        self.extras(&mut d);
        self.apps.add(&[
            field(Some(&self.key)),
            field(Some(&name)),
            field(opt(genre.as_ref())),
            field(rating.map(rating_text).as_deref()),
            field(opt(version.as_ref())),
            field(size.map(|s| s.to_string()).as_deref()),
            field(Some(&rating.is_some_and(|r| r >= 4.5).to_string())),
        ]);
        json!({"type": "app", "data": d})
    }

    /// A record that breaks the contract in the given way.
    fn bad_record(&mut self, kind: usize) -> Value {
        let title = self.title();
        match kind {
            0 => match self.rng.random_range(0..3) {
                0 => json!([1, 2, 3]),
                1 => json!("song: Come as You Are"),
                _ => json!(42),
            },
            1 => json!({"data": {"title": title}}),
            2 => json!({"type": "song"}),
            3 => json!({"type": "movie", "data": title}),
            4 => match self.rng.random_range(0..3) {
                0 => json!({"type": "song", "data": {"artist_name": "Nobody", "year": 1999}}),
                1 => json!({"type": "movie", "data": {"budget": 5}}),
                _ => json!({"type": "app", "data": {"name": null, "rating": 4.0}}),
            },
            5 => {
                json!({"type": "song", "data": {"title": title, "year": if self.chance(0.5) { json!(1994.5) } else { json!("199x") }}})
            }
            6 => json!({"type": "song", "data": {"title": title, "year": 3_000_000_000i64}}),
            7 => {
                if self.chance(0.5) {
                    json!({"type": "movie", "data": {"original_title": title, "budget": -5}})
                } else {
                    json!({"type": "app", "data": {"name": title, "size_bytes": "-1"}})
                }
            }
            8 => json!({"type": "app", "data": {"name": title, "rating": "excellent"}}),
            9 => json!({"type": "movie", "data": {"original_title": title, "is_adult": "yes"}}),
            10 => {
                json!({"type": "movie", "data": {"original_title": title, "release_date": if self.chance(0.5) { "2021-02-30" } else { "2021/02/03" }}})
            }
            11 => match self.rng.random_range(0..3) {
                0 => json!({"type": "song", "data": {"title": [title]}}),
                1 => {
                    json!({"type": "song", "data": {"title": title, "artist_name": {"name": "x"}}})
                }
                _ => json!({"type": "app", "data": {"name": title, "genre": true}}),
            },
            _ => json!({"type": "song", "data": {"title": format!("{title}\u{0}")}}),
        }
    }
}
