//! Records how the crate is being built (Cargo's profile and opt-level,
//! and the git revision), which `compare` reports beside its measurements:
//! times taken with an unoptimised binary are not the models' own, and a
//! result names the code that produced it, wherever the binary is run. It also makes a new or
//! edited file in `migrations/` rebuild the crate: refinery embeds them
//! with a macro whose inputs Cargo does not otherwise track.

fn main() {
    for var in ["PROFILE", "OPT_LEVEL"] {
        println!(
            "cargo:rustc-env=BUCKETBENCH_BUILD_{var}={}",
            std::env::var(var).unwrap_or_default()
        );
    }
    println!(
        "cargo:rustc-env=BUCKETBENCH_GIT_REVISION={}",
        git_revision().unwrap_or_else(|| "unknown".into())
    );
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=migrations");
    // The revision is asked again when the checkout moves or the code
    // changes, so a binary never claims a commit it was not built from.
    for path in [".git/HEAD", ".git/refs/heads", "src", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={path}");
    }
}

/// The commit the crate is built from, `-dirty` when tracked files differ
/// from it; `None` outside a git checkout (a crate from a tarball).
fn git_revision() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(format!("{rev}{}", if dirty { "-dirty" } else { "" }))
}
