//! How the running binary was built (profile, opt-level, debug
//! assertions): recorded in `environment.json`, the report and the
//! terminal, with a warning when the binary is unoptimised.

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

#[cfg(test)]
mod tests {
    use super::*;

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
