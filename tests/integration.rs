//! The one integration test binary. Index:
//!
//! | module | what it proves |
//! |---|---|
//! | `suite::config_cases` | every case in `tests/cases/config/` fails `validate` (exit 78) with its expected messages, all at once; every shipped example and the reference configuration validate |
//! | `suite::journal` | ordering, hash chain, tampering detected at the right seq, crash snapshot, retention checkpoint, size limit and disk full refuse without deleting, dedupe, source state |
//! | `suite::kill9` | the real binary SIGKILLed 20 times while appending: every acknowledged record survives, the chain verifies |
//! | `suite::http_sink` | delivery to an in-process QMS: 2xx, 500, timeouts, 429 Retry-After, 400 dead letters, 30 s outage, TLS with a private CA and mTLS |
//! | `suite::file_sink` | JSON Lines with rotation; resume after a torn line without loss or duplicate |
//! | `suite::bad_input` | unwritable data dir, corrupted journal file: clear error, no panic |
//! | `suite::pipeline` | sources are acknowledged only after commit, with their state; duplicates are named; open outages end in a gap record at stop |
//! | `suite::rule_cases` | every case in `tests/cases/rules/`: observations through the engine and a real journal give exactly the expected records |
//! | `suite::opcua` | in-process async-opcua server: subscription to records, trust on first connect, SignAndEncrypt with a user, no fallback, reordered namespaces after a restart, poll mode with browse paths and a pin, the silent-session watchdog |
//! | `suite::modbus` | in-process tokio-modbus devices: decoding, request plan, exceptions, outages, RTU over a pty |
//! | `suite::rest` | in-process OData-style ERP: paging under churn, watermark resume, bad bodies, 429, OAuth 2.0, TLS |
//! | `suite::mqtt` | a Mosquitto per test: QoS 1 after commit, SIGKILLs, quarantine, TLS, QoS 0 gaps, the MQTT sink |
//! | `suite::nats_sink` | a `nats-server` per test (or a three-node cluster): every record once with its chain, resends dropped by `Nats-Msg-Id`, a missing, foreign or full stream, 10 SIGKILLs, the R3 leader killed, password, token, NKey, `.creds`, mutual TLS |
//! | `suite::kafka_sink` | feature `sink-kafka`, librdkafka's mock cluster in process: every record once by id with its chain and receipt, broker errors, leader changes and slow answers, a missing topic, every broker down, TLS with a client certificate, SASL (SCRAM-SHA-256/512, PLAIN in TLS) against `support::kafka_sasl`; `fleet verify --kafka` over four partitions, exit 69 |
//! | `suite::fleet` | `fleet verify` on a stream three agents deliver into: a shortened and a re-forged journal named, the third clean; exit 69 when unreachable |
//! | `suite::cli` | `generate-config` validates, `status` and `verify` on a real journal, exit codes |
//! | `suite::audit` | `trace` of parts, work orders, lots and gauges; evidence packages and tampering; signatures; replay and dead-letter retry; reconciliation |
//! | `suite::metrics` | `/metrics` and `/healthz` scraped while parts flow; the verdict `status` gives |
//! | `suite::service` | the systemd unit's own Exec lines: validate, READY, watchdog, reload with a rotated credential, stop |
//! | `suite::disk_full` | the real binary on a tmpfs filled up mid-run: refusal logged, health degraded, every MQTT message arrives once space returns, one gap |
//! | `suite::security` | the security review's attacks, each named by its finding: REST next links to other hosts, paging loops, redirects, endless bodies, URL secrets, a forged file-sink tail, the journal shortened or re-forged |
//! | `suite::layout` | sources never import sinks nor sinks sources; both meet in `src/transport/` |
//! | `suite::metrology` | the QIF and AQDEF parsers on the public samples, joined values by hand, hostile input, seeded mutations of QIF, AQDEF and tables |
//! | `suite::metrology_source` | the metrology source in the real binary: once by SHA-256 across SIGKILL, failed/ with the reason, a full journal, AQDEF pairs, a vanished folder, inotify, serial from the name, Calypso tables, hashes forgotten |
//! | `suite::metrology_cases` | every case in `tests/cases/metrology/NN-*/` through the real agent gives its expected records |
//! | `suite::e2e` | the real binary against the whole demo cell and Mosquitto: each peer fails in turn, the QMS away, kill -9 ×20 under load with all four sources |
//!
//! Every record a test sees is validated against `config/quality-record.v1.schema.json`.

mod suite;
mod support;
