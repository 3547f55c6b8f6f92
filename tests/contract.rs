//! The data contract, rule by rule (docs/contract.md).

use bucketbench::contract::{FileError, Record, parse_file, parse_record};
use chrono::NaiveDate;
use serde_json::json;

fn song(data: serde_json::Value) -> Result<bucketbench::contract::Song, String> {
    match parse_record(&json!({"type": "song", "data": data}))? {
        Some(Record::Song(s)) => Ok(s),
        other => panic!("expected a song, got {other:?}"),
    }
}

fn movie(data: serde_json::Value) -> Result<bucketbench::contract::Movie, String> {
    match parse_record(&json!({"type": "movie", "data": data}))? {
        Some(Record::Movie(m)) => Ok(m),
        other => panic!("expected a movie, got {other:?}"),
    }
}

fn app(data: serde_json::Value) -> Result<bucketbench::contract::App, String> {
    match parse_record(&json!({"type": "app", "data": data}))? {
        Some(Record::App(a)) => Ok(a),
        other => panic!("expected an app, got {other:?}"),
    }
}

/// Parses a record from JSON text, so numbers keep their exact spelling.
fn app_text(data: &str) -> Result<bucketbench::contract::App, String> {
    let v: serde_json::Value =
        serde_json::from_str(&format!("{{\"type\":\"app\",\"data\":{data}}}")).unwrap();
    match parse_record(&v)? {
        Some(Record::App(a)) => Ok(a),
        other => panic!("expected an app, got {other:?}"),
    }
}

// --- Records and types -----------------------------------------------------

#[test]
fn only_song_movie_app_load_other_types_are_skipped() {
    assert!(
        parse_record(&json!({"type": "book", "data": {"title": "x"}}))
            .unwrap()
            .is_none()
    );
    assert!(
        parse_record(&json!({"type": "Song", "data": {"title": "x"}}))
            .unwrap()
            .is_none(),
        "types are case-sensitive"
    );
    let f = parse_file(br#"[{"type":"podcast","data":{}},{"type":"song","data":{"title":"t"}}]"#)
        .unwrap();
    assert_eq!((f.songs.len(), f.skipped), (1, 1));
}

#[test]
fn malformed_records_are_rejected_with_a_reason() {
    for (rec, reason) in [
        (json!([1, 2]), "not a JSON object"),
        (json!("song"), "not a JSON object"),
        (json!({"data": {"title": "t"}}), "no \"type\""),
        (json!({"type": "song"}), "no \"data\""),
        (json!({"type": "song", "data": null}), "no \"data\""),
        (
            json!({"type": "song", "data": [1]}),
            "\"data\" is not an object",
        ),
        (
            json!({"type": "song", "data": "x"}),
            "\"data\" is not an object",
        ),
        (json!({"type": 3, "data": {}}), "\"type\" is not a string"),
        // Structure is checked before the type: a bad record of an unknown type is still rejected.
        (
            json!({"type": "book", "data": 1}),
            "\"data\" is not an object",
        ),
    ] {
        let err = parse_record(&rec).expect_err(&rec.to_string());
        assert!(
            err.contains(reason),
            "{rec}: {err:?} should mention {reason:?}"
        );
    }
}

#[test]
fn a_file_that_is_not_json_or_not_an_array_fails_whole() {
    assert!(matches!(
        parse_file(b"not json"),
        Err(FileError::NotJson(_))
    ));
    assert!(matches!(
        parse_file(b"[{\"type\":\"song\""),
        Err(FileError::NotJson(_))
    ));
    assert!(matches!(parse_file(b""), Err(FileError::NotJson(_))));
    // A truncated object is not JSON, and says where it ends, not that an
    // object is not an array (serde's first complaint).
    let truncated = br#"{"type": "song", "data": {"title": "trunc"#;
    match parse_file(truncated) {
        Err(FileError::NotJson(why)) => assert!(why.starts_with("EOF while parsing"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_file(br#"{"type":"song"}"#),
        Err(FileError::NotArray("an object"))
    );
    assert_eq!(parse_file(b"42"), Err(FileError::NotArray("a number")));
    assert_eq!(parse_file(b"\"x\""), Err(FileError::NotArray("a string")));
    let e = parse_file(b"{}").unwrap_err().to_string();
    assert!(e.contains("not an array"), "{e}");
}

#[test]
fn an_empty_array_is_a_loaded_file_with_no_rows() {
    let f = parse_file(b" [ ] \n").unwrap();
    assert_eq!((f.rows(), f.rejected.len(), f.skipped), (0, 0, 0));
}

#[test]
fn rejected_records_keep_their_index_reason_and_raw_value() {
    let f = parse_file(
        br#"[{"type":"song","data":{"title":"ok"}},{"type":"song","data":{"year":1}},7]"#,
    )
    .unwrap();
    assert_eq!(f.songs.len(), 1);
    assert_eq!(f.rejected.len(), 2);
    assert_eq!(f.rejected[0].index, 1);
    assert_eq!(
        f.rejected[0].raw,
        json!({"type": "song", "data": {"year": 1}})
    );
    assert!(
        f.rejected[0].reason.contains("title"),
        "{}",
        f.rejected[0].reason
    );
    assert_eq!((f.rejected[1].index, &f.rejected[1].raw), (2, &json!(7)));
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let f = parse_file(b"\xEF\xBB\xBF[{\"type\":\"song\",\"data\":{\"title\":\"t\"}}]").unwrap();
    assert_eq!(f.songs.len(), 1);
}

// --- Missing and null --------------------------------------------------------

#[test]
fn missing_or_null_fields_load_as_null() {
    let s = song(json!({"title": "t", "artist_name": null})).unwrap();
    assert_eq!((s.artist_name, s.year, s.release), (None, None, None));
    let m = movie(json!({"original_title": "t", "budget": null})).unwrap();
    assert_eq!(
        (m.original_language, m.budget, m.is_adult, m.release_date),
        (None, None, None, None)
    );
    let a = app(json!({"name": "n", "rating": null})).unwrap();
    assert_eq!(
        (a.genre, a.rating, a.version, a.size_bytes),
        (None, None, None, None)
    );
}

#[test]
fn required_fields_reject_when_missing_or_null() {
    assert!(
        song(json!({"artist_name": "a"}))
            .unwrap_err()
            .contains("\"title\"")
    );
    assert!(
        song(json!({"title": null}))
            .unwrap_err()
            .contains("\"title\"")
    );
    assert!(
        movie(json!({"budget": 1}))
            .unwrap_err()
            .contains("\"original_title\"")
    );
    assert!(app(json!({"name": null})).unwrap_err().contains("\"name\""));
}

// --- Integers ------------------------------------------------------------------

#[test]
fn integers_accept_ints_whole_floats_and_integer_strings() {
    assert_eq!(
        song(json!({"title": "t", "year": 1994})).unwrap().year,
        Some(1994)
    );
    assert_eq!(
        song(json!({"title": "t", "year": 1994.0})).unwrap().year,
        Some(1994)
    );
    assert_eq!(
        song(json!({"title": "t", "year": "1994"})).unwrap().year,
        Some(1994)
    );
    assert_eq!(
        movie(json!({"original_title": "t", "budget": "3000000000"}))
            .unwrap()
            .budget,
        Some(3_000_000_000)
    );
    assert_eq!(
        app(json!({"name": "n", "size_bytes": 5e9}))
            .unwrap()
            .size_bytes,
        Some(5_000_000_000)
    );
}

#[test]
fn integers_reject_everything_else() {
    for bad in [
        json!(1994.5),
        json!("1994.0"),
        json!("nineteen"),
        json!(""),
        json!(true),
        json!([1994]),
        json!({"y": 1}),
    ] {
        let err = song(json!({"title": "t", "year": bad})).expect_err(&bad.to_string());
        assert!(err.contains("\"year\" must be an integer"), "{err}");
    }
    assert!(
        song(json!({"title": "t", "year": 3_000_000_000i64}))
            .unwrap_err()
            .contains("out of range")
    );
    assert!(
        movie(json!({"original_title": "t", "budget": 1e30})).is_err(),
        "beyond i64"
    );
    assert!(
        app_text(r#"{"name":"n","size_bytes":99999999999999999999999}"#).is_err(),
        "beyond i64"
    );
}

#[test]
fn budget_and_size_must_not_be_negative() {
    assert!(
        movie(json!({"original_title": "t", "budget": -1}))
            .unwrap_err()
            .contains(">= 0")
    );
    assert!(
        app(json!({"name": "n", "size_bytes": "-5"}))
            .unwrap_err()
            .contains(">= 0")
    );
    assert_eq!(
        movie(json!({"original_title": "t", "budget": 0}))
            .unwrap()
            .budget,
        Some(0)
    );
}

// --- rating and is_awesome ---------------------------------------------------------

#[test]
fn rating_accepts_numbers_and_numeric_strings() {
    assert_eq!(
        app(json!({"name": "n", "rating": 4})).unwrap().rating,
        Some(4.0)
    );
    assert_eq!(
        app(json!({"name": "n", "rating": "3.25"})).unwrap().rating,
        Some(3.25)
    );
    for bad in [
        json!("high"),
        json!(true),
        json!("NaN"),
        json!("inf"),
        json!([4.5]),
    ] {
        assert!(app(json!({"name": "n", "rating": bad})).is_err(), "{bad}");
    }
    assert!(
        app_text(r#"{"name":"n","rating":1e400}"#).is_err(),
        "beyond f64"
    );
}

#[test]
fn is_awesome_is_rating_at_least_4_5_and_false_without_rating() {
    assert!(app(json!({"name": "n", "rating": 4.5})).unwrap().is_awesome);
    assert!(app(json!({"name": "n", "rating": "5"})).unwrap().is_awesome);
    assert!(
        !app(json!({"name": "n", "rating": 4.49}))
            .unwrap()
            .is_awesome
    );
    assert!(!app(json!({"name": "n"})).unwrap().is_awesome);
    assert!(
        !app(json!({"name": "n", "rating": null}))
            .unwrap()
            .is_awesome
    );
}

// --- is_adult ------------------------------------------------------------------------

#[test]
fn is_adult_accepts_booleans_and_true_false_strings_in_any_case() {
    for (v, want) in [
        (json!(true), true),
        (json!(false), false),
        (json!("TRUE"), true),
        (json!("False"), false),
        (json!("true"), true),
    ] {
        assert_eq!(
            movie(json!({"original_title": "t", "is_adult": v}))
                .unwrap()
                .is_adult,
            Some(want)
        );
    }
    for bad in [json!(1), json!(0), json!("yes"), json!("t"), json!([])] {
        assert!(
            movie(json!({"original_title": "t", "is_adult": bad})).is_err(),
            "{bad}"
        );
    }
}

// --- release_date --------------------------------------------------------------------

#[test]
fn release_date_must_be_a_real_yyyy_mm_dd_date() {
    let d = movie(json!({"original_title": "t", "release_date": "2000-02-29"}))
        .unwrap()
        .release_date;
    assert_eq!(d, NaiveDate::from_ymd_opt(2000, 2, 29));
    for bad in [
        "1999-02-29",
        "2021-13-01",
        "2021-1-5",
        "01/02/2021",
        "2021-01-01T00:00:00",
        "20210101",
        "",
        "2021-00-10",
    ] {
        let err = movie(json!({"original_title": "t", "release_date": bad})).expect_err(bad);
        assert!(err.contains("YYYY-MM-DD"), "{err}");
    }
    assert!(movie(json!({"original_title": "t", "release_date": 20210101})).is_err());
}

// --- Text ------------------------------------------------------------------------------

#[test]
fn text_accepts_strings_and_numbers_as_their_json_text() {
    assert_eq!(
        app_text(r#"{"name":"n","version":2.1}"#)
            .unwrap()
            .version
            .as_deref(),
        Some("2.1")
    );
    assert_eq!(
        app_text(r#"{"name":"n","version":2.10}"#)
            .unwrap()
            .version
            .as_deref(),
        Some("2.10")
    );
    assert_eq!(
        app_text(r#"{"name":"n","version":"1.10.3"}"#)
            .unwrap()
            .version
            .as_deref(),
        Some("1.10.3")
    );
    assert_eq!(song(json!({"title": 1984})).unwrap().title, "1984");
}

#[test]
fn text_rejects_objects_arrays_and_booleans() {
    for bad in [json!({"a": 1}), json!(["a"]), json!(true)] {
        let err = song(json!({"title": "t", "release": bad})).expect_err(&bad.to_string());
        assert!(err.contains("\"release\" must be text"), "{err}");
    }
    assert!(app(json!({"name": false})).is_err());
}

#[test]
fn text_with_a_nul_character_is_rejected_and_the_rest_of_the_file_loads() {
    let f = parse_file(
        br#"[{"type":"song","data":{"title":"a\u0000b"}},{"type":"song","data":{"title":"ok"}}]"#,
    )
    .unwrap();
    assert_eq!(f.songs.len(), 1);
    assert_eq!(f.rejected.len(), 1);
    assert!(f.rejected[0].reason.contains("NUL"));
    assert!(
        !f.rejected[0].raw.to_string().contains("\\u0000"),
        "raw must be storable as jsonb"
    );
}

// --- original_title: alias, extra fields, normalization ---------------------------------------

#[test]
fn original_title_colon_alias_is_accepted() {
    let m = movie(json!({"original_title:": "Amélie"})).unwrap();
    assert_eq!(m.original_title, "Amélie");
    assert_eq!(m.original_title_normalized, "amélie");
    let both = movie(json!({"original_title": "A", "original_title:": "B"})).unwrap();
    assert_eq!(both.original_title, "A");
    assert!(
        movie(json!({"original_title:": null}))
            .unwrap_err()
            .contains("\"original_title\"")
    );
}

#[test]
fn extra_fields_are_ignored() {
    let s = song(json!({"title": "t", "duration": 3.5, "tags": ["x"]})).unwrap();
    assert_eq!(s.title, "t");
}

#[test]
fn normalized_title_follows_the_spec_examples() {
    for (title, want) in [
        (
            "Star Wars: The Force Awakens",
            "star_wars_the_force_awakens",
        ),
        ("Amélie", "amélie"),
        ("Spider-Man:  No Way Home", "spiderman_no_way_home"),
        ("Ocean's Eleven", "oceans_eleven"),
    ] {
        assert_eq!(
            movie(json!({"original_title": title}))
                .unwrap()
                .original_title_normalized,
            want
        );
    }
}

// --- Hostile shapes ---------------------------------------------------------------------------

#[test]
fn deep_nesting_fails_the_file_without_overflowing_the_stack() {
    // A deeply nested record is rejected on its own; the rest of the file loads.
    let deep = format!(
        "[{}{}, {{\"type\":\"song\",\"data\":{{\"title\":\"t\"}}}}]",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let f = parse_file(deep.as_bytes()).unwrap();
    assert_eq!((f.songs.len(), f.rejected.len()), (1, 1));
    assert!(
        f.rejected[0].reason.contains("recursion limit"),
        "{}",
        f.rejected[0].reason
    );
    // An unterminated deep file is not JSON.
    assert!(matches!(
        parse_file("[".repeat(10_000).as_bytes()),
        Err(FileError::NotJson(_))
    ));
}

#[test]
fn invalid_utf8_fails_the_file() {
    assert!(matches!(
        parse_file(b"[{\"type\":\"song\",\"data\":{\"title\":\"\xff\"}}]"),
        Err(FileError::NotJson(_))
    ));
}

#[test]
fn numbers_in_exponent_form_are_text_exactly_as_written() {
    let f = parse_file(
        br#"[{"type":"app","data":{"name":1E3,"version":1E-2,"genre":2.5e+10,"size_bytes":1E3}},
            {"type":"movie","data":{"original_title:":1E3,"original_language":7e0,"budget":2E1}},
            {"type":"song","data":{"title":1e3,"artist_name":1E3,"release":-1.5E-7,"title":2E1,"year":1.994E3}},
            {"type":"app","data":{"name":"n","version":2.10}}]"#,
    )
    .unwrap();
    assert!(f.rejected.is_empty(), "{:?}", f.rejected);
    let a = &f.apps[0];
    assert_eq!(
        (
            a.name.as_str(),
            a.version.as_deref(),
            a.genre.as_deref(),
            a.size_bytes
        ),
        ("1E3", Some("1E-2"), Some("2.5e+10"), Some(1000))
    );
    assert_eq!(f.apps[1].version.as_deref(), Some("2.10"));
    let m = &f.movies[0];
    assert_eq!(
        (
            m.original_title.as_str(),
            m.original_title_normalized.as_str()
        ),
        ("1E3", "1e3")
    );
    assert_eq!(
        (m.original_language.as_deref(), m.budget),
        (Some("7e0"), Some(20))
    );
    let s = &f.songs[0];
    assert_eq!(
        (
            s.title.as_str(),
            s.artist_name.as_deref(),
            s.release.as_deref(),
            s.year
        ),
        ("2E1", Some("1E3"), Some("-1.5E-7"), Some(1994))
    );
}
