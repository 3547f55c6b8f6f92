//! The typed rows of the three loaded tables, and a rejected record.

use chrono::NaiveDate;

/// A row of `songs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Song {
    pub artist_name: Option<String>,
    pub title: String,
    pub year: Option<i32>,
    pub release: Option<String>,
}

/// A row of `movies`.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    pub original_title: String,
    pub original_language: Option<String>,
    pub budget: Option<i64>,
    pub is_adult: Option<bool>,
    pub release_date: Option<NaiveDate>,
    pub original_title_normalized: String,
}

/// A row of `apps`.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub name: String,
    pub genre: Option<String>,
    pub rating: Option<f64>,
    pub version: Option<String>,
    pub size_bytes: Option<i64>,
    pub is_awesome: bool,
}

/// One record that passed the contract.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Song(Song),
    Movie(Movie),
    App(App),
}

/// A record that failed the contract. It is stored, never dropped: `raw` is
/// the record as it was (made safe for `jsonb`), `reason` says why in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// 0-based position in the file's array.
    pub index: i32,
    pub reason: String,
    pub raw: serde_json::Value,
}
