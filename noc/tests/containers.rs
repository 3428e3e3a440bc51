//! `docker/` with real containers: the Dockerfile's runtime stage built from this build's
//! binaries, and `docker/compose.yaml` started with podman-compose (Redis, two dispatchers
//! on it behind the dispatcher switch, two media servers), then a `confclient` on the host
//! joins through the switch and hears the other member's tone.
//!
//! No registry can be pulled from here, so the images the Dockerfile and the compose file
//! name are made locally, as `../shared/PEERS.md` describes: `debian:bookworm-slim` from
//! Debian's packages with mmdebstrap, and a Redis image the same way with redis-server in
//! it. The Dockerfile's `build` stage (a Rust image) and the Prometheus and Grafana services
//! (no Debian package to build their images from) are not run here. podman runs with runc
//! and no default ulimits (crun fails on setrlimit here), through a containers.conf of the
//! test's own; Debian's podman-compose 1.0.3 cannot run `network_mode: host` services (it
//! adds a network alias), so the test installs podman-compose 1.2.0 from PyPI into a venv.
//!
//! Where podman, mmdebstrap or that venv cannot be had, the test says so on stderr and
//! passes as skipped; `NOC_REQUIRE_CONTAINERS=1` makes that a failure.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use client::tone::{read_wav, ToneAnalysis, Window};
use testkit::harness::{self, Client, TempDir};

const PROJECT: &str = "noctest";
const SECRET: &str = "container-secret-5a1c";
const IMAGE: &str = "localhost/noc:test";
const REDIS_IMAGE: &str = "localhost/noc-test-redis:latest";
/// The services this test starts (Prometheus and Grafana are left out: see above).
const SERVICES: [&str; 6] = [
    "redis",
    "dispatcher-1",
    "dispatcher-2",
    "switch",
    "mediaserver-1",
    "mediaserver-2",
];
/// Every fixed port of the compose file's services.
const PORTS: [u16; 10] = [3450, 3451, 3452, 3461, 3462, 3471, 3472, 8081, 8082, 6379];

fn work() -> PathBuf {
    harness::root().join("target/containers")
}

/// Runs a command to its end; Err with its output when it fails.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed ({}):\n{text}", out.status))
    }
}

fn podman(args: &[&str]) -> Command {
    let mut c = Command::new("podman");
    c.args(args)
        .env("CONTAINERS_CONF", work().join("containers.conf"));
    c
}

/// What the test needs from the machine; Err says what is missing.
fn prepare() -> Result<PathBuf, String> {
    for tool in ["podman", "mmdebstrap", "python3"] {
        run(Command::new("sh").args(["-c", &format!("command -v {tool}")]))
            .map_err(|_| format!("{tool} is not installed (make deps installs it)"))?;
    }
    let dir = work();
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("containers.conf"),
        "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n",
    )
    .map_err(|e| e.to_string())?;
    run(&mut podman(&["info"])).map_err(|e| format!("podman cannot run here: {e}"))?;
    let compose = dir.join("venv/bin/podman-compose");
    if !compose.exists() {
        let venv = dir.join("venv");
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .map_err(|e| format!("no Python venv for podman-compose: {e}"))?;
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", "podman-compose==1.2.0"]))
            .map_err(|e| format!("podman-compose 1.2.0 could not be installed: {e}"))?;
    }
    Ok(compose)
}

/// Debian's FFmpeg runtime libraries the media server links (as the Dockerfile installs):
/// the codecs and scaling for the compositor, libavformat for recordings. The base image's
/// tag names the set, so a machine that kept an older base builds the new one.
const FFMPEG_LIBS: &[&str] = &[
    "libavcodec59",
    "libavformat59",
    "libavutil57",
    "libswscale6",
];
const FFMPEG_BASE: &str = "localhost/debian:bookworm-ffmpeg-avformat";

/// A base image from Debian's packages (`mmdebstrap`), imported once and kept.
fn base_image(tag: &str, tar: &str, include: &[&str]) -> Result<(), String> {
    if run(&mut podman(&["image", "exists", tag])).is_ok() {
        return Ok(());
    }
    let path = work().join(tar);
    if path.is_dir() {
        // Left by an older run that let mmdebstrap write a directory.
        std::fs::remove_dir_all(&path).map_err(|e| e.to_string())?;
    }
    if !path.exists() {
        // mmdebstrap picks its output format from the name's extension unless told:
        // the partial name keeps `.tar` last and the format is named anyway.
        let partial = work().join(format!("partial-{tar}"));
        let _ = std::fs::remove_file(&partial);
        let mut c = Command::new("mmdebstrap");
        c.arg("--variant=minbase")
            .arg("--format=tar")
            .arg("--quiet");
        if !include.is_empty() {
            c.arg(format!("--include={}", include.join(",")));
        }
        run(c.arg("bookworm").arg(&partial))?;
        std::fs::rename(&partial, &path).map_err(|e| e.to_string())?;
    }
    run(&mut podman(&["import", &path.to_string_lossy(), tag]))?;
    Ok(())
}

/// The binaries this test run built, copied where the build context can see them.
fn stage_binaries() -> Result<String, String> {
    let rel = "target/containers/bin";
    let dest = harness::root().join(rel);
    std::fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
    for name in ["noc", "dispatcher", "mediaserver", "confclient"] {
        std::fs::copy(harness::bin(name), dest.join(name)).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(rel.to_owned())
}

/// Takes the compose project down when the test ends, whatever happened.
struct Deployment {
    compose: PathBuf,
}

impl Deployment {
    fn compose(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.compose);
        c.current_dir(harness::root())
            .args(["-p", PROJECT, "-f", "docker/compose.yaml"])
            .args(args)
            .env("CONTAINERS_CONF", work().join("containers.conf"))
            .env("NOC_IMAGE", IMAGE)
            .env("REDIS_IMAGE", REDIS_IMAGE)
            .env("NOC_SECRET", SECRET);
        c
    }

    fn logs(&self) -> String {
        SERVICES
            .iter()
            .map(|s| {
                let name = format!("{PROJECT}_{s}_1");
                let out = run(&mut podman(&["logs", "--tail", "15", &name])).unwrap_or_else(|e| e);
                format!("--- {name}\n{out}")
            })
            .collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = run(&mut self.compose(&["down", "-t", "2"]));
        // Each build leaves the previous image untagged; keep the disk from filling.
        let _ = run(&mut podman(&["image", "prune", "-f"]));
    }
}

fn healthy(container: &str) -> bool {
    run(&mut podman(&["healthcheck", "run", container])).is_ok()
}

fn ports_free() -> Result<(), String> {
    for p in PORTS {
        TcpListener::bind(("127.0.0.1", p)).map_err(|e| {
            format!("port {p} is taken ({e}): the compose file's ports must be free")
        })?;
    }
    Ok(())
}

#[test]
fn compose_deployment_in_podman_carries_a_conference() {
    let compose = match prepare() {
        Ok(c) => c,
        Err(why) => {
            let msg = format!("SKIPPED compose_deployment_in_podman_carries_a_conference: {why}");
            assert!(
                std::env::var_os("NOC_REQUIRE_CONTAINERS").is_none(),
                "{msg}"
            );
            eprintln!("{msg}");
            return;
        }
    };
    let started = Instant::now();
    // The media server links FFmpeg (libavcodec, libswscale, libavformat): the base has
    // them already, as the Dockerfile's runtime stage installs them where it can fetch.
    base_image(FFMPEG_BASE, "bookworm-ffmpeg-avformat.tar", FFMPEG_LIBS).expect("base image");
    run(&mut podman(&[
        "tag",
        FFMPEG_BASE,
        "docker.io/library/debian:bookworm-slim",
    ]))
    .expect("tag the base as bookworm-slim");
    base_image(REDIS_IMAGE, "bookworm-redis.tar", &["redis-server"]).expect("redis image");

    // The Dockerfile's runtime stage, from this build's binaries.
    let bin_dir = stage_binaries().expect("binaries");
    let built = run(podman(&[
        "build",
        "--format",
        "docker",
        "-f",
        "docker/Dockerfile",
        "--build-arg",
        "BINARIES=prebuilt",
        "--build-arg",
        &format!("BIN_DIR={bin_dir}"),
        "--target",
        "runtime",
        "-t",
        IMAGE,
        ".",
    ])
    .current_dir(harness::root()));
    built.expect("the runtime stage builds");
    eprintln!("images ready after {:?}", started.elapsed());

    ports_free().expect("free ports");
    let deployment = Deployment { compose };
    let mut up = deployment.compose(&["up", "-d"]);
    up.args(SERVICES);
    run(&mut up).expect("podman-compose up");

    // /readyz through the image's health check: dispatchers with a media server in
    // service, media servers registered.
    let deadline = Instant::now() + Duration::from_secs(40);
    for s in [
        "dispatcher-1",
        "dispatcher-2",
        "mediaserver-1",
        "mediaserver-2",
    ] {
        let name = format!("{PROJECT}_{s}_1");
        while !healthy(&name) {
            assert!(
                Instant::now() < deadline,
                "{name} never became ready:\n{}",
                deployment.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    // Two clients through the containerised switch: ann hears bob's tone.
    let switch: SocketAddr = "127.0.0.1:3450".parse().expect("literal address");
    let dir = TempDir::new("containers");
    let wav = dir.file("ann.wav");
    let mut ann = Client::spawn(
        switch,
        "boxed",
        "demo",
        "ann",
        &["--record", &wav, "--duration", "5"],
    );
    let mut bob = Client::spawn(
        switch,
        "boxed",
        "demo",
        "bob",
        &["--tone", "660", "--duration", "5"],
    );
    let ok = ann.wait(Duration::from_secs(30)).success();
    assert!(
        ok,
        "ann: {:?} {:?}\n{}",
        ann.stdout.all(),
        ann.stderr.all(),
        deployment.logs()
    );
    assert!(
        bob.wait(Duration::from_secs(30)).success(),
        "{:?}",
        bob.stderr.all()
    );
    let (samples, rate) = read_wav(Path::new(&wav)).expect("ann's recording");
    let window = Window {
        skip: 1.5,
        duration: 2.5,
        block: 0.1,
    };
    let a = ToneAnalysis::new(&samples, rate, window).expect("long enough");
    assert!(
        a.level_db(660.0) >= -35.0,
        "ann hears bob at {:.1} dBFS\n{}",
        a.level_db(660.0),
        deployment.logs()
    );
    // Both were placed on one of the containerised media servers.
    let at = |c: &Client| c.dispatched_to().port();
    assert_eq!(at(&ann), at(&bob));
    assert!([3471, 3472].contains(&at(&ann)), "{}", at(&ann));

    // A dispatcher's /readyz and /metrics answer from inside its container.
    let metrics = harness::http_get("127.0.0.1:8081".parse().expect("literal"), "/metrics");
    assert!(metrics.contains("# TYPE"), "{metrics}");
    eprintln!("compose test done after {:?}", started.elapsed());
}
