//! What loadgen's tests against a real broker share: the broker is
//! Sluice's own binary (`SLUICE_BIN`, else target/release or
//! target/debug), started on a free port in a temporary directory, or any
//! broker already running at `LOADGEN_TEST_BOOTSTRAP` (host:port).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a test says when it has no broker (and passes).
pub const NO_BROKER: &str = "SKIPPED: no broker: build Sluice (cargo build --bin sluice), \
    set SLUICE_BIN, or point LOADGEN_TEST_BOOTSTRAP at a running Kafka-compatible broker";

pub struct Broker {
    pub bootstrap: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn sluice_binary() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    if let Ok(path) = std::env::var("SLUICE_BIN") {
        // The broker runs in a temporary directory: make the path absolute,
        // trying it from here and from the workspace root.
        let path = PathBuf::from(path);
        let found = [path.clone(), root.join(&path)]
            .into_iter()
            .find_map(|candidate| candidate.canonicalize().ok());
        return Some(found.unwrap_or(path));
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("sluice"))
        .find(|path| path.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the broker, or `None` when there is no broker to test against.
pub fn start_broker() -> Option<Broker> {
    if let Ok(bootstrap) = std::env::var("LOADGEN_TEST_BOOTSTRAP") {
        return Some(Broker {
            bootstrap,
            child: None,
            dir: None,
        });
    }
    let binary = sluice_binary()?;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let address = format!("127.0.0.1:{port}");
    let child = Command::new(&binary)
        .args(["--listen", &address, "--advertise", &address, "--data-dir"])
        .arg(dir.join("data"))
        .current_dir(&dir) // so no config/sluice.toml is picked up
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
    let broker = Broker {
        bootstrap: address.clone(),
        child: Some(child),
        dir: Some(dir),
    };
    let socket: SocketAddr = address.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listening(&socket) {
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {address}",
            binary.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(broker)
}

/// True when something listens on `socket`. With nothing listening, a
/// connect to a port in the ephemeral range can connect to itself (same
/// local and peer address): that is not the broker.
fn listening(socket: &SocketAddr) -> bool {
    match TcpStream::connect_timeout(socket, Duration::from_millis(200)) {
        Ok(stream) => stream.local_addr().ok() != stream.peer_addr().ok(),
        Err(_) => false,
    }
}

/// The JSON report loadgen wrote to `path`.
pub fn report_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the report")).expect("JSON")
}
