//! Records how the crate is being built (Cargo's profile and opt-level),
//! which `compare` reports beside its measurements: times taken with an
//! unoptimised binary are not the models' own. It also makes a new or
//! edited file in `migrations/` rebuild the crate: refinery embeds them
//! with a macro whose inputs Cargo does not otherwise track.

fn main() {
    for var in ["PROFILE", "OPT_LEVEL"] {
        println!(
            "cargo:rustc-env=BUCKETBENCH_BUILD_{var}={}",
            std::env::var(var).unwrap_or_default()
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=migrations");
}
