//! The `bucket` command: serve a generated bucket on loopback (with the
//! network fidelity flags), upload it to an S3 API, or write it to disk.
//! `src/bin/bucket.rs` parses and dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::cli::network::{NetworkArgs, describe};
use crate::cli::{self, NetArgs, S3Args, SpecArgs};
use crate::sim::{Conditions, ServeOptions, SimAuth, SimBucket};

/// A seeded, realistic S3-like bucket for tests and benchmarks.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    verbosity: cli::Verbosity,
}

impl Args {
    /// Sets up logging at the level `-v`/`-q` ask for.
    pub fn init_logging(&self) {
        self.verbosity.init_logging();
    }
}

/// S3 API options of `upload` (the listing options of [`S3Args`],
/// `--suffix` and `--manifest`, mean nothing when writing).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "S3 API")]
struct UploadS3Args {
    /// S3 endpoint for S3-compatible stores (MinIO, Ceph, R2, moto); default
    /// AWS_ENDPOINT_URL, then AWS itself.
    #[arg(long)]
    endpoint: Option<String>,
    /// Region; default AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1.
    #[arg(long)]
    region: Option<String>,
    /// Path-style URLs even on AWS (always used for custom endpoints).
    #[arg(long)]
    path_style: bool,
}

impl UploadS3Args {
    fn s3(&self) -> S3Args {
        S3Args {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            ..S3Args::default()
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a generated bucket on loopback (manifest mode and an S3 subset).
    /// Prints the base URL as the first line, then serves until killed.
    Serve {
        #[command(flatten)]
        spec: SpecArgs,
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:9000")]
        addr: SocketAddr,
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        fidelity: FidelityArgs,
        /// Every this many seconds, add new files and delete old ones.
        #[arg(long, help_heading = "Churn", allow_negative_numbers = true, value_parser = cli::seconds)]
        churn_every: Option<f64>,
        /// Files added per churn step.
        #[arg(long, default_value_t = 2, help_heading = "Churn", value_parser = cli::count)]
        churn_add: usize,
        /// Files deleted per churn step.
        #[arg(long, default_value_t = 1, help_heading = "Churn")]
        churn_delete: usize,
        /// Write the expected load result (for the current listing) here.
        #[arg(long)]
        expected: Option<PathBuf>,
        /// Bucket name in S3 paths (the base URL ends with it).
        #[arg(long, default_value = crate::sim::server::BUCKET)]
        bucket_name: String,
        /// Check SigV4 signatures against AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
        /// (from the environment) and refuse anonymous requests.
        #[arg(long)]
        require_auth: bool,
        /// With --require-auth, still let anonymous requests read (a public bucket).
        #[arg(long, requires = "require_auth")]
        public_read: bool,
    },
    /// Upload a generated bucket to an S3 API (moto, MinIO, AWS) with the
    /// credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
    Upload {
        #[command(flatten)]
        spec: SpecArgs,
        /// Destination, s3://BUCKET[/PREFIX] (created if missing).
        to: String,
        #[command(flatten)]
        s3: UploadS3Args,
        /// Also write the expected result here.
        #[arg(long)]
        expected: Option<PathBuf>,
    },
    /// Print a completion script for this shell on stdout
    /// (`bucket completions bash > /etc/bash_completion.d/bucket`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the objects, `files_list.data` and `expected.json` to a directory.
    Generate {
        #[command(flatten)]
        spec: SpecArgs,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Also write the expected result here.
        #[arg(long)]
        expected: Option<PathBuf>,
    },
}

/// How closely the served bucket behaves like S3 over a real network.
/// A preset sets everything; the flags override its parts.
#[derive(clap::Args, Debug)]
struct FidelityArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// Serve HTTPS with a CA made for this run (its PEM path is printed on
    /// stderr; clients verify with `--ca-file`).
    #[arg(long, help_heading = "Simulated network")]
    tls: bool,
    /// Also write the CA's PEM here.
    #[arg(long, requires = "tls", help_heading = "Simulated network")]
    ca_out: Option<PathBuf>,
}

impl FidelityArgs {
    /// The conditions and network model: the preset, then the flags.
    fn settings(&self, net: &NetArgs) -> anyhow::Result<(Conditions, crate::sim::NetworkModel)> {
        self.network.settings(net, self.tls)
    }
}

/// Runs one `bucket` subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Completions { shell } => {
            cli::print_completions::<Args>(shell, "bucket");
            Ok(())
        }
        Command::Upload {
            spec,
            to,
            s3,
            expected,
        } => {
            let to = crate::bucket::BucketLocation::parse_with(&to, &s3.s3().options())?;
            let bucket = SimBucket::generate(spec.spec()?);
            let n = crate::sim::upload::upload(&bucket, &to)?;
            if let Some(p) = expected {
                bucket.write_expected(&p)?;
            }
            crate::esayln!("uploaded {n} objects to {}", to.describe());
            Ok(())
        }
        Command::Generate {
            spec,
            out,
            expected,
        } => {
            let bucket = SimBucket::generate(spec.spec()?);
            bucket.write_to_dir(&out)?;
            if let Some(p) = expected {
                bucket.write_expected(&p)?;
            }
            let e = bucket.expected();
            crate::esayln!(
                "wrote {} objects to {} ({} songs, {} movies, {} apps, {} rejected, {} skipped expected)",
                bucket.store().len(),
                out.display(),
                e.songs,
                e.movies,
                e.apps,
                e.rejected,
                e.skipped
            );
            Ok(())
        }
        Command::Serve {
            spec,
            addr,
            net,
            fidelity,
            churn_every,
            churn_add,
            churn_delete,
            expected,
            bucket_name,
            require_auth,
            public_read,
        } => {
            let auth = if require_auth {
                let creds = rusty_s3::Credentials::from_env()
                    .ok_or_else(|| anyhow::anyhow!("--require-auth needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"))?;
                Some(SimAuth {
                    access_key: creds.key().to_string(),
                    secret_key: creds.secret().to_string(),
                    public_read,
                })
            } else {
                None
            };
            let bucket = SimBucket::generate(spec.spec()?);
            if let Some(p) = &expected {
                bucket.write_expected(p)?;
            }
            let options = ServeOptions {
                bucket: bucket_name.clone(),
                auth,
            };
            let (conditions, model) = fidelity.settings(&net)?;
            let description = describe(fidelity.network.preset(&net), &conditions, &model);
            let server = bucket.serve_network(conditions, addr, options, model)?;
            // The CA first: a client may connect as soon as it reads the URL.
            if let Some(ca) = server.ca_file() {
                if let Some(out) = &fidelity.ca_out {
                    server.write_ca_file(out)?;
                    crate::esayln!("ca-file: {}", out.display());
                } else {
                    crate::esayln!("ca-file: {}", ca.display());
                }
            }
            crate::sayln!("{}", server.base_url());
            crate::esayln!("{description}");
            // Files as every other output counts them: the manifest apart.
            let files = bucket
                .store()
                .keys()
                .iter()
                .filter(|k| k.as_str() != super::store::MANIFEST_KEY)
                .count();
            crate::esayln!(
                "serving the {} profile, {}; manifest at {}/files_list.data; S3 endpoint {} bucket {}",
                bucket.spec().profile.as_str(),
                crate::report::plural(files as u64, "file", "files"),
                server.base_url(),
                server.endpoint(),
                bucket_name
            );
            let _churn = churn_every.map(|secs| {
                let every = Duration::from_secs_f64(secs.max(0.01));
                bucket.start_churn(every, churn_add, churn_delete)
            });
            // Stop cleanly on Ctrl-C/SIGTERM, so the server's CA directory
            // is removed with it.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = stop.clone();
            for signal in [
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGHUP,
            ] {
                signal_hook::flag::register(signal, flag.clone())?;
            }
            // Keep `--expected` current while churning.
            let mut ticks = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                ticks += 1;
                if let (Some(p), Some(_), 0) = (&expected, churn_every, ticks % 5) {
                    bucket.write_expected(p)?;
                }
            }
            let s = server.stats();
            use crate::report::plural;
            crate::esayln!(
                "served {} on {} ({}, {} resumed), {} throttled",
                plural(s.requests, "request", "requests"),
                plural(s.connections, "connection", "connections"),
                plural(s.tls_handshakes, "TLS handshake", "TLS handshakes"),
                s.tls_resumed,
                s.throttled
            );
            Ok(())
        }
    }
}
