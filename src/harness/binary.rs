//! How the running binary was built (profile, opt-level, debug
//! assertions): recorded in `environment.json`, the report and the
//! terminal, with a warning when the binary is unoptimised; and the hand-over
//! by which `cargo run --bin compare` (the dev profile) measures with the
//! release build instead.

use serde::{Deserialize, Serialize};

/// The build of the binary that measured a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// Cargo's profile family: `debug` (dev, test) or `release` (release,
    /// bench).
    pub profile: String,
    /// The crate's own `opt-level` (`0`–`3`, `s`, `z`).
    pub opt_level: String,
    pub debug_assertions: bool,
}

impl Build {
    /// This binary's build.
    pub fn current() -> Self {
        Build {
            profile: env!("BUCKETBENCH_BUILD_PROFILE").to_string(),
            opt_level: env!("BUCKETBENCH_BUILD_OPT_LEVEL").to_string(),
            debug_assertions: cfg!(debug_assertions),
        }
    }

    /// Whether the crate was compiled without optimisation: its times
    /// then measure the compiler's unoptimised code, not the models.
    pub fn unoptimised(&self) -> bool {
        self.opt_level == "0"
    }

    /// `release (opt-level 3, debug assertions off)`.
    pub fn describe(&self) -> String {
        format!(
            "{} (opt-level {}, debug assertions {})",
            self.profile,
            self.opt_level,
            if self.debug_assertions { "on" } else { "off" }
        )
    }

    /// The loud line for an unoptimised binary, `None` otherwise.
    pub fn warning(&self) -> Option<String> {
        self.unoptimised().then(|| {
            format!(
                "WARNING: this compare binary is unoptimised ({}): its times are not representative; build with `cargo run --release --bin compare`",
                self.describe()
            )
        })
    }
}

/// Set (to anything) to measure with an unoptimised `compare` instead of
/// handing over to the release build; the tests set it, since they check
/// behaviour, not speed.
pub const MEASURE_UNOPTIMISED_ENV: &str = "BUCKETBENCH_MEASURE_UNOPTIMISED";

/// Why not just warn: `cargo run --bin compare` is the obvious command,
/// and its dev profile makes every model several times slower and the
/// CPU-bound ones most of all, so the ranking itself changes. Optimising the
/// dev profile instead would slow every `cargo test` build for the sake of
/// one command; building the release profile once costs a few minutes, and
/// later runs reuse it.
///
/// When this binary is unoptimised and was started by Cargo (`CARGO` is set,
/// as `cargo run` does) from this crate's source tree, builds the release
/// `compare` with that Cargo and replaces this process with it, same
/// arguments. Returns (to measure here, with the warning) when the hand-over
/// does not apply; exits with one line when the release build fails.
pub fn hand_over_to_release() {
    let unoptimised = Build::current().unoptimised();
    let cargo = std::env::var_os("CARGO");
    if !unoptimised || std::env::var_os(MEASURE_UNOPTIMISED_ENV).is_some() {
        return;
    }
    let Some(cargo) = cargo else { return };
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let Some(release) = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?.parent()?.join("release");
        Some(dir.join(exe.file_name()?))
    }) else {
        return;
    };
    if !manifest.is_file() {
        return;
    }
    crate::esayln!(
        "compare: this binary is unoptimised (the dev profile); building the release profile to measure with it (set {MEASURE_UNOPTIMISED_ENV}=1 to measure this one)"
    );
    let mut build = std::process::Command::new(&cargo);
    build
        .args(["build", "--release", "--bin", "compare", "--manifest-path"])
        .arg(&manifest);
    // What `cargo run` set for this process is not the user's environment:
    // ring's build script reruns when OUT_DIR, CARGO_MANIFEST_DIR or
    // CARGO_PKG_* change, so inheriting them rebuilt ring, rustls and reqwest here (two
    // minutes), and again at the user's next plain `cargo build --release`.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            build.env_remove(&name);
        }
    }
    let status = build.status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            crate::esayln!(
                "error: building the release compare failed ({s}); run `cargo run --release --bin compare` to see why"
            );
            std::process::exit(1);
        }
        Err(e) => {
            crate::esayln!(
                "error: cannot run {} to build the release compare: {e}",
                std::path::Path::new(&cargo).display()
            );
            std::process::exit(1);
        }
    }
    use std::os::unix::process::CommandExt as _;
    let e = std::process::Command::new(&release)
        .args(std::env::args_os().skip(1))
        .exec();
    crate::esayln!("error: cannot run {}: {e}", release.display());
    std::process::exit(1);
}

/// Whether `cargo run` sets `name` for the program it runs (Cargo's
/// "environment variables Cargo sets for crates", and `OUT_DIR` for a
/// package with a build script), as opposed to the
/// user's own Cargo configuration (`CARGO_HOME`, `CARGO_TARGET_DIR`,
/// `CARGO_PROFILE_*`, ...), which a nested build must keep.
fn set_by_cargo_run(name: &str) -> bool {
    matches!(
        name,
        "CARGO"
            | "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_TARGET_TMPDIR"
            | "CARGO_RUSTC_CURRENT_DIR"
            | "OUT_DIR"
    ) || name.starts_with("CARGO_PKG_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nested_build_drops_what_cargo_run_set_and_keeps_the_users_configuration() {
        for set in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_PRE",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_run(set), "{set}");
        }
        for own in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_PROFILE_RELEASE_DEBUG",
            "PATH",
        ] {
            assert!(!set_by_cargo_run(own), "{own}");
        }
    }

    #[test]
    fn an_unoptimised_build_is_warned_about() {
        let debug = Build {
            profile: "debug".into(),
            opt_level: "0".into(),
            debug_assertions: true,
        };
        assert!(debug.warning().unwrap().contains("unoptimised"));
        let release = Build {
            profile: "release".into(),
            opt_level: "3".into(),
            debug_assertions: false,
        };
        assert_eq!(release.warning(), None);
        assert_eq!(
            release.describe(),
            "release (opt-level 3, debug assertions off)"
        );
        assert!(!Build::current().profile.is_empty());
    }
}
