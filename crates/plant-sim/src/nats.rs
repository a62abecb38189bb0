//! NATS servers with JetStream as child processes on free 127.0.0.1 ports, one or a three-node
//! cluster, each with its own store in a temporary directory, stopped by PID on drop. Fails (never
//! skips) when `nats-server` is missing, saying how to install it. `NATS_SERVER` names another
//! build of the server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `nats-server` process.
pub struct NatsServer {
    /// Client port.
    pub port: u16,
    /// `server_name`, as JetStream reports a stream's leader.
    pub name: String,
    conf: PathBuf,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

impl NatsServer {
    /// A single server with JetStream.
    pub fn start() -> NatsServer {
        Self::start_with("")
    }

    /// A single server with JetStream and `extra` lines of configuration (`authorization { … }`,
    /// `tls { … }`).
    pub fn start_with(extra: &str) -> NatsServer {
        for _ in 0..5 {
            let mut s = Self::configure("nats-1", free_port(), extra);
            match s.spawn() {
                Ok(()) => return s,
                Err(e) => eprintln!("nats-server: {e}; trying another port"),
            }
        }
        panic!("nats-server did not start on any of 5 free ports")
    }

    fn configure(name: &str, port: u16, extra: &str) -> NatsServer {
        let dir = crate::tempdir();
        let conf = dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\nserver_name: {name}\njetstream {{\n  store_dir: {:?}\n}}\n{extra}\n",
                dir.path().join("store").display().to_string()
            ),
        )
        .expect("nats.conf");
        NatsServer {
            port,
            name: name.into(),
            conf,
            _dir: dir,
            child: None,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.conf.with_file_name("nats.log");
        let stderr = std::fs::File::create(&log).expect("nats.log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nats-server ({e}): the NATS tests need it; install it with `apt-get install nats-server` (tests/run.sh does)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let child = self.child.as_mut().expect("just started");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "exited ({status}) instead of listening on {}: {}",
                    self.port,
                    said.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
                ));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not listening on {} after 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the server is gone at once, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on its ports with its store (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn()
            .unwrap_or_else(|e| panic!("nats-server {} did not come back: {e}", self.name));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JetStream cluster of three servers (`nats-1` … `nats-3`, cluster `fleet`).
pub struct NatsCluster {
    /// The servers.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three servers routed to each other.
    pub fn start() -> NatsCluster {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let cluster = format!(
                "cluster {{\n  name: fleet\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            );
            let mut s = NatsServer::configure(&format!("nats-{}", i + 1), *port, &cluster);
            s.spawn()
                .unwrap_or_else(|e| panic!("cluster node {}: {e}", i + 1));
            nodes.push(s);
        }
        NatsCluster { nodes }
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// The node named `name`.
    pub fn node(&mut self, name: &str) -> &mut NatsServer {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }
}
