//! A Kafka-protocol listener that speaks as far as the login and no further: `ApiVersions`,
//! `SaslHandshake` (v1) and `SaslAuthenticate` (v0, v1), checking the client's login as a broker
//! does: PLAIN by the password it carries, SCRAM-SHA-256 and SCRAM-SHA-512 by the client's proof
//! (RFC 5802, RFC 7677; PBKDF2 and HMAC from `ring`). librdkafka's mock cluster has no SASL, so
//! this is what the Kafka sink's login is tested against. After the login it answers the
//! server's final message (or the refusal) and closes the connection.

use std::num::NonZeroU32;

use base64::Engine as _;
use ring::{digest, hmac, pbkdf2};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What one connection's login was.
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    /// The mechanism the client asked for.
    pub mechanism: String,
    /// The user it named.
    pub user: String,
    /// Whether it proved the password (and got the broker's success).
    pub accepted: bool,
}

const API_VERSIONS: i16 = 18;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const ITERATIONS: u32 = 4096;

/// Accepts connections on `listener` (inside TLS when `tls` is given) until the task is aborted,
/// serving each a [`login`] for `user` with `password`; each login seen is sent on the channel.
pub fn listen(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    user: &str,
    password: &str,
) -> (mpsc::UnboundedReceiver<Login>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (user, password) = (user.to_string(), password.to_string());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = match &tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => login(stream, &user, &password).await,
                    Err(e) => Err(format!("TLS: {e}")),
                },
                None => login(tcp, &user, &password).await,
            };
            if let Ok(l) = seen {
                let _ = tx.send(l);
            }
        }
    });
    (rx, task)
}

/// Serves one connection on `stream` for `user` with `password`; the login it saw, or why the
/// client stopped before one.
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    user: &str,
    password: &str,
) -> Result<Login, String> {
    let mut mechanism = String::new();
    let mut scram: Option<Scram> = None;
    loop {
        let (api_key, version, correlation, body) = read_request(&mut stream).await?;
        let mut out = correlation.to_be_bytes().to_vec();
        match api_key {
            API_VERSIONS => api_versions(version, &mut out),
            SASL_HANDSHAKE => {
                mechanism = string(&body, 0).ok_or("a handshake without a mechanism")?;
                let known = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
                out.extend(i16::to_be_bytes(if known.contains(&mechanism.as_str()) {
                    0
                } else {
                    33 // UNSUPPORTED_SASL_MECHANISM
                }));
                out.extend(3i32.to_be_bytes());
                for m in known {
                    put_string(&mut out, m);
                }
            }
            SASL_AUTHENTICATE => {
                let len: [u8; 4] = body
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or("no auth bytes")?;
                let len =
                    usize::try_from(i32::from_be_bytes(len)).map_err(|_| "negative length")?;
                let auth = body.get(4..4 + len).ok_or("auth bytes cut short")?;
                let step = match (&mechanism[..], scram.take()) {
                    ("PLAIN", _) => Step::Done(plain(auth, user, password)),
                    (_, None) => {
                        let (s, reply) = Scram::first(&mechanism, auth, user, password)?;
                        scram = Some(s);
                        Step::Reply(reply)
                    }
                    (_, Some(s)) => Step::Done(s.last(auth)),
                };
                let (error, reply, done) = match step {
                    Step::Reply(r) => (0, r, None),
                    Step::Done(Ok((name, r))) => (0, r, Some((name, true))),
                    Step::Done(Err(name)) => {
                        (SASL_AUTHENTICATION_FAILED, Vec::new(), Some((name, false)))
                    }
                };
                out.extend(error.to_be_bytes());
                if error == 0 {
                    out.extend((-1i16).to_be_bytes());
                } else {
                    put_string(&mut out, "Authentication failed: invalid credentials");
                }
                out.extend(len32(reply.len()));
                out.extend(&reply);
                if version >= 1 {
                    out.extend(0i64.to_be_bytes());
                }
                write_response(&mut stream, &out).await?;
                if let Some((user, accepted)) = done {
                    return Ok(Login {
                        mechanism,
                        user,
                        accepted,
                    });
                }
                continue;
            }
            other => return Err(format!("request {other} before the login")),
        }
        write_response(&mut stream, &out).await?;
    }
}

enum Step {
    Reply(Vec<u8>),
    /// The user named, with the server's last message, or refused.
    Done(Result<(String, Vec<u8>), String>),
}

async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Result<(i16, i16, i32, Vec<u8>), String> {
    let len = s.read_i32().await.map_err(|e| format!("read: {e}"))?;
    let len = usize::try_from(len).map_err(|_| "negative size")?;
    if !(10..=1 << 20).contains(&len) {
        return Err(format!("a request of {len} bytes"));
    }
    let mut buf = vec![0; len];
    s.read_exact(&mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let api_key = i16::from_be_bytes([buf[0], buf[1]]);
    let version = i16::from_be_bytes([buf[2], buf[3]]);
    let correlation = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    // client_id: a nullable string (i16 length).
    let id_len = i16::from_be_bytes([buf[8], buf[9]]).max(0) as usize;
    let mut at = 10 + id_len;
    // Request header v2 (flexible versions) ends with tagged fields: none are sent here.
    if api_key == API_VERSIONS && version >= 3 {
        at += 1;
    }
    Ok((
        api_key,
        version,
        correlation,
        buf[at.min(buf.len())..].to_vec(),
    ))
}

async fn write_response<S: AsyncWrite + Unpin>(s: &mut S, body: &[u8]) -> Result<(), String> {
    let mut frame = len32(body.len()).to_vec();
    frame.extend(body);
    s.write_all(&frame)
        .await
        .map_err(|e| format!("write: {e}"))?;
    s.flush().await.map_err(|e| format!("write: {e}"))
}

/// ApiVersions: this listener's three APIs, in the layout of the version asked for (v3 and later
/// flexible: compact arrays and tagged fields; the response header is v0 always).
fn api_versions(version: i16, out: &mut Vec<u8>) {
    let apis: [(i16, i16, i16); 3] = [
        (API_VERSIONS, 0, 3),
        (SASL_HANDSHAKE, 0, 1),
        (SASL_AUTHENTICATE, 0, 1),
    ];
    out.extend(0i16.to_be_bytes());
    if version >= 3 {
        out.push(apis.len() as u8 + 1);
        for (key, min, max) in apis {
            out.extend(key.to_be_bytes());
            out.extend(min.to_be_bytes());
            out.extend(max.to_be_bytes());
            out.push(0);
        }
        out.extend(0i32.to_be_bytes());
        out.push(0);
    } else {
        out.extend((apis.len() as i32).to_be_bytes());
        for (key, min, max) in apis {
            out.extend(key.to_be_bytes());
            out.extend(min.to_be_bytes());
            out.extend(max.to_be_bytes());
        }
        if version >= 1 {
            out.extend(0i32.to_be_bytes());
        }
    }
}

/// A length as Kafka's INT32 (every message here is small).
fn len32(n: usize) -> [u8; 4] {
    i32::try_from(n).expect("a small message").to_be_bytes()
}

fn string(body: &[u8], at: usize) -> Option<String> {
    let len = usize::try_from(i16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?)).ok()?;
    String::from_utf8(body.get(at + 2..at + 2 + len)?.to_vec()).ok()
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    let len = i16::try_from(s.len()).expect("a short string");
    out.extend(len.to_be_bytes());
    out.extend(s.as_bytes());
}

/// PLAIN: `authzid NUL user NUL password`.
fn plain(auth: &[u8], user: &str, password: &str) -> Result<(String, Vec<u8>), String> {
    let parts: Vec<&[u8]> = auth.split(|b| *b == 0).collect();
    let named = parts
        .get(1)
        .map(|u| String::from_utf8_lossy(u).into_owned())
        .unwrap_or_default();
    if parts.len() == 3 && named == user && parts[2] == password.as_bytes() {
        Ok((named, Vec::new()))
    } else {
        Err(named)
    }
}

/// A SCRAM exchange after the client's first message.
struct Scram {
    sha512: bool,
    user: String,
    /// Whether `user` is the listener's user.
    known: bool,
    salted: Vec<u8>,
    /// client-first-message-bare "," server-first-message
    said: String,
    nonce: String,
}

impl Scram {
    fn first(
        mechanism: &str,
        auth: &[u8],
        user: &str,
        password: &str,
    ) -> Result<(Scram, Vec<u8>), String> {
        let text = std::str::from_utf8(auth).map_err(|_| "client-first is not UTF-8")?;
        let bare = text
            .strip_prefix("n,,")
            .ok_or("client-first without the gs2 header n,,")?;
        let named = bare
            .split(',')
            .find_map(|a| a.strip_prefix("n="))
            .ok_or("no user")?;
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .ok_or("no nonce")?;
        let sha512 = mechanism == "SCRAM-SHA-512";
        let salt = b"shopfloor-test-salt";
        let mut salted = vec![0; if sha512 { 64 } else { 32 }];
        let algorithm = if sha512 {
            pbkdf2::PBKDF2_HMAC_SHA512
        } else {
            pbkdf2::PBKDF2_HMAC_SHA256
        };
        // Salted with `password` whoever logs in: another user fails by name, a wrong
        // password by the proof.
        pbkdf2::derive(
            algorithm,
            NonZeroU32::new(ITERATIONS).expect("iterations"),
            salt,
            password.as_bytes(),
            &mut salted,
        );
        let nonce = format!("{client_nonce}c2VydmVyLW5vbmNl");
        let server_first = format!("r={nonce},s={},i={ITERATIONS}", b64(salt));
        Ok((
            Scram {
                sha512,
                user: named.to_string(),
                known: named == user,
                salted,
                said: format!("{bare},{server_first}"),
                nonce,
            },
            server_first.into_bytes(),
        ))
    }

    fn last(self, auth: &[u8]) -> Result<(String, Vec<u8>), String> {
        let text = std::str::from_utf8(auth).map_err(|_| self.user.clone())?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(self.user.clone())?;
        let proof = base64::engine::general_purpose::STANDARD
            .decode(proof)
            .map_err(|_| self.user.clone())?;
        if !without_proof.contains(&format!("r={}", self.nonce)) || !self.known {
            return Err(self.user);
        }
        let auth_message = format!("{},{without_proof}", self.said);
        let (mac, dig) = if self.sha512 {
            (hmac::HMAC_SHA512, &digest::SHA512)
        } else {
            (hmac::HMAC_SHA256, &digest::SHA256)
        };
        let sign = |key: &[u8], data: &[u8]| {
            hmac::sign(&hmac::Key::new(mac, key), data)
                .as_ref()
                .to_vec()
        };
        let client_key = sign(&self.salted, b"Client Key");
        let stored_key = digest::digest(dig, &client_key);
        let client_signature = sign(stored_key.as_ref(), auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(self.user);
        }
        let recovered: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if digest::digest(dig, &recovered).as_ref() != stored_key.as_ref() {
            return Err(self.user);
        }
        let server_key = sign(&self.salted, b"Server Key");
        let server_signature = sign(&server_key, auth_message.as_bytes());
        Ok((
            self.user,
            format!("v={}", b64(&server_signature)).into_bytes(),
        ))
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
