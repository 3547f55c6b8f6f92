//! S3 test support: a real third-party S3 server (moto_server, from PyPI)
//! started once per test binary, and bucket set-up through signed requests.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};

/// Test credentials: fake, and only ever used on loopback.
pub const ACCESS_KEY: &str = "AKIDBUCKETBENCHTEST";
pub const SECRET_KEY: &str = "bucketbench-test-secret-7f3a9c";

pub fn creds() -> Credentials {
    Credentials::new(ACCESS_KEY, SECRET_KEY)
}

const INSTALL: &str = "python3 -m venv .venv && .venv/bin/pip install 'moto[server]'";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `MOTO_SERVER`, then `PATH`, then `.venv/` and `target/moto-venv/` of
/// this project; failing those, installs moto into `target/moto-venv` from
/// PyPI, and fails with the install command if that does not work.
fn find_moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("moto_server"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(manifest_dir().join(".venv/bin/moto_server"));
    let venv = manifest_dir().join("target/moto-venv");
    candidates.push(venv.join("bin/moto_server"));
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    eprintln!(
        "moto_server not found; installing moto[server] into {}",
        venv.display()
    );
    let ok = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "moto[server]"])
            .status()
            .is_ok_and(|s| s.success());
    let bin = venv.join("bin/moto_server");
    assert!(
        ok && bin.is_file(),
        "moto_server (a real S3 server) is needed for these tests and could not be installed; install it with: {INSTALL}"
    );
    bin
}

pub struct Moto {
    pub endpoint: String,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The test binary's moto_server. It dies with the test process (parent
/// death signal, from a thread that lives as long as the server).
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| {
        let bin = find_moto_server();
        let port = super::free_port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prctl is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                    Ok(())
                });
            }
            match cmd.spawn() {
                Ok(mut child) => {
                    tx.send(Ok(())).unwrap();
                    let _ = child.wait();
                }
                Err(e) => tx.send(Err(e)).unwrap(),
            }
        });
        rx.recv().unwrap().unwrap_or_else(|e| {
            panic!("cannot start moto_server ({e}); install it with: {INSTALL}")
        });
        super::wait_for_port(port, Duration::from_secs(60), "moto_server");
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    })
}

fn bucket(endpoint: &str, name: &str) -> Bucket {
    Bucket::new(
        url::Url::parse(endpoint).unwrap(),
        UrlStyle::Path,
        name.to_string(),
        "us-east-1",
    )
    .unwrap()
}

const TTL: Duration = Duration::from_secs(600);

/// Creates a bucket on moto with a signed request.
pub fn create_bucket(endpoint: &str, name: &str, public_read: bool) {
    let c = creds();
    let b = bucket(endpoint, name);
    let url = b.create_bucket(&c).sign(TTL);
    let mut req = ureq::put(url.as_str());
    if public_read {
        req = req.header("x-amz-acl", "public-read");
    }
    let resp = req.send_empty().unwrap();
    assert!(
        resp.status().is_success(),
        "create bucket {name}: {}",
        resp.status()
    );
}

/// Uploads objects with signed PUTs, eight at a time.
pub fn put_objects(endpoint: &str, name: &str, objects: &[(String, Vec<u8>)]) {
    let c = creds();
    let b = bucket(endpoint, name);
    std::thread::scope(|s| {
        for chunk in objects.chunks(objects.len().div_ceil(8).max(1)) {
            let (b, c) = (&b, &c);
            s.spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                for (key, body) in chunk {
                    let url = b.put_object(Some(c), key).sign(TTL);
                    let resp = agent.put(url.as_str()).send(&body[..]).unwrap();
                    assert!(resp.status().is_success(), "put {key}: {}", resp.status());
                }
            });
        }
    });
}
