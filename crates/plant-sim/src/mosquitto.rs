//! A Mosquitto broker per test on a free 127.0.0.1 port, persistent, stopped by PID on drop. Fails
//! (never skips) when mosquitto is missing, saying how to install it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra listener settings (TLS, password file).
    extra: String,
    _keep: Option<tempfile::TempDir>,
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_with(String::new())
    }

    /// A broker that keeps sessions in memory only: a restart forgets them.
    pub fn start_volatile() -> Broker {
        Self::start_with("persistence false\n".into())
    }

    /// A broker that requires a client certificate signed by the test CA (TLS on its port).
    pub fn start_mtls(pki: &crate::tls::TestPki) -> Broker {
        Self::start_with(format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
            pki.ca_file.display(),
            pki.server_cert.display(),
            pki.server_key.display()
        ))
    }

    /// A broker that requires user `edge` with `password`.
    pub fn start_auth(password: &str) -> Broker {
        let dir = crate::tempdir();
        let file = dir.path().join("passwd");
        let ok = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&file)
            .args(["edge", password])
            .status()
            .unwrap_or_else(|e| panic!("cannot run mosquitto_passwd ({e}); install it with `apt-get install mosquitto`"));
        assert!(ok.success());
        let mut b = Self::start_with(format!(
            "allow_anonymous false\npassword_file {}\n",
            file.display()
        ));
        b._keep = Some(dir);
        b
    }

    /// Mosquitto cannot take a bound socket: the port is chosen free, and if another process takes
    /// it before Mosquitto binds it (Mosquitto exits), another port is tried.
    fn start_with(extra: String) -> Broker {
        let mut b = Broker {
            port: 0,
            dir: crate::tempdir(),
            child: None,
            extra,
            _keep: None,
        };
        for _ in 0..5 {
            b.port = std::net::TcpListener::bind("127.0.0.1:0")
                .expect("bind")
                .local_addr()
                .expect("addr")
                .port();
            match b.spawn() {
                Ok(()) => return b,
                Err(e) => eprintln!("mosquitto: {e}; trying another port"),
            }
        }
        panic!("mosquitto did not start on any of 5 free ports")
    }

    /// Starts Mosquitto on `self.port`; `Err` when it exited instead of listening.
    fn spawn(&mut self) -> Result<(), String> {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nlistener {} 127.0.0.1\n{}{}{}persistence_location {}/\nautosave_interval 1\nuser root\n",
                self.port,
                self.extra,
                if self.extra.contains("allow_anonymous") { "" } else { "allow_anonymous true\n" },
                if self.extra.contains("persistence") { "" } else { "persistence true\n" },
                self.dir.path().display()
            ),
        )
        .expect("conf");
        let bin = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto ({e}): the MQTT tests need it; install it with `apt-get install mosquitto`"));
        self.child = Some(child);
        let port = self.port;
        let child = self.child.as_mut().expect("just started");
        // Listening means Mosquitto runs and the port answers (another process on a port taken
        // meanwhile would answer too, but Mosquitto would have exited).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!(
                    "exited ({status}) instead of listening on port {port}"
                ));
            }
            if port_open(port) {
                return Ok(());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto not listening on {port} after 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker (SIGKILL) and starts it again on the same port with its persisted sessions.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        self.spawn()
            .unwrap_or_else(|e| panic!("mosquitto did not come back on port {}: {e}", self.port));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Publishes with credentials.
pub async fn publish_all_auth(
    port: u16,
    (user, pass): (&str, &str),
    messages: Vec<(String, Vec<u8>)>,
) {
    publish_with(port, messages, |o| {
        o.set_credentials(user, pass);
    })
    .await;
}

/// Publishes with options set by `tweak` (TLS, credentials).
pub async fn publish_with(
    port: u16,
    messages: Vec<(String, Vec<u8>)>,
    tweak: impl FnOnce(&mut rumqttc::MqttOptions),
) {
    publish(port, messages, Duration::from_millis(5), tweak).await;
}

/// Publishes `(topic, payload)` messages with QoS 1 from a rumqttc client, waiting for each PUBACK.
pub async fn publish_all(port: u16, messages: Vec<(String, Vec<u8>)>, gap: Duration) {
    publish(port, messages, gap, |_| {}).await;
}

async fn publish(
    port: u16,
    messages: Vec<(String, Vec<u8>)>,
    gap: Duration,
    tweak: impl FnOnce(&mut rumqttc::MqttOptions),
) {
    let mut opts =
        rumqttc::MqttOptions::new(format!("test-pub-{}", fastrand::u32(..)), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    // Large messages too (rumqttc's default limit is 10 KiB).
    opts.set_max_packet_size(16 << 20, 16 << 20);
    tweak(&mut opts);
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 64);
    let total = messages.len();
    let pump = tokio::spawn(async move {
        let mut acked = 0;
        while acked < total {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    for (topic, payload) in messages {
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish");
        tokio::time::sleep(gap).await;
    }
    tokio::time::timeout(Duration::from_secs(60), pump)
        .await
        .expect("every PUBACK within 60 s")
        .expect("pump");
}
