//! `fleet verify`: every gateway's chain as the fleet's stream holds it (`audit::fleet`).

use std::process::ExitCode;

use super::args::FleetAction;
use super::CliError;
use crate::audit::fleet::{self, FleetCheck, FleetReport};

/// Runs a `fleet` subcommand.
pub(super) fn fleet(action: &FleetAction) -> Result<ExitCode, CliError> {
    let FleetAction::Verify {
        json, public_keys, ..
    } = action;
    let keys = match public_keys {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
            fleet::read_keys(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        }
        None => Default::default(),
    };
    let check = FleetCheck::new(keys);
    let report = match action {
        FleetAction::Verify {
            kafka: Some(brokers),
            ..
        } => kafka(action, brokers, check)?,
        _ => nats(action, check)?,
    };
    if *json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outp!("{}", report.render());
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(feature = "sink-nats")]
fn nats(action: &FleetAction, check: FleetCheck) -> Result<FleetReport, CliError> {
    let FleetAction::Verify {
        nats,
        stream,
        creds,
        user,
        password,
        token,
        ca_file,
        ..
    } = action;
    let (Some(nats), Some(stream)) = (nats, stream) else {
        return Err(CliError::Usage(
            "give --nats URL --stream NAME, or --kafka BROKERS --topic NAME".into(),
        ));
    };
    if password.is_some() && user.is_none() {
        return Err(CliError::Usage(
            "NATS_PASSWORD is set but --user is not".into(),
        ));
    }
    let target = fleet::nats::NatsTarget {
        url: nats.clone(),
        stream: stream.clone(),
        credentials_file: creds.clone(),
        user: user
            .as_ref()
            .map(|u| (u.clone(), password.clone().unwrap_or_default())),
        token: token.clone(),
        ca_file: ca_file.clone(),
    };
    // One thread: the client's connection task and the check hand every message over; on
    // another thread each hand-over is a wake-up (about a tenth slower, `benches/nats_verify.rs`).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    rt.block_on(fleet::nats::verify(&target, check))
        .map_err(CliError::Unavailable)
}

#[cfg(not(feature = "sink-nats"))]
fn nats(_: &FleetAction, _: FleetCheck) -> Result<FleetReport, CliError> {
    Err(CliError::Usage(
        "this build has no NATS support (feature sink-nats)".into(),
    ))
}

#[cfg(feature = "sink-kafka")]
fn kafka(action: &FleetAction, brokers: &str, check: FleetCheck) -> Result<FleetReport, CliError> {
    use crate::transport::kafka::SaslMechanism;
    let FleetAction::Verify {
        topic,
        user,
        kafka_password,
        sasl_mechanism,
        ca_file,
        creds,
        token,
        ..
    } = action;
    let Some(topic) = topic else {
        return Err(CliError::Usage("--kafka needs --topic".into()));
    };
    if creds.is_some() || token.is_some() {
        return Err(CliError::Usage(
            "--creds and NATS_TOKEN are for NATS; Kafka takes --user (KAFKA_PASSWORD) and --ca-file"
                .into(),
        ));
    }
    let mechanism = match sasl_mechanism.as_deref() {
        None => SaslMechanism::ScramSha512,
        Some(m) => SaslMechanism::parse(m).ok_or_else(|| {
            CliError::Usage(format!(
                "--sasl-mechanism {m:?}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            ))
        })?,
    };
    if mechanism == SaslMechanism::Plain && ca_file.is_none() {
        return Err(CliError::Usage(
            "--sasl-mechanism PLAIN sends the password as it is: give --ca-file (TLS)".into(),
        ));
    }
    let sasl = match (user, kafka_password) {
        (Some(u), Some(p)) => Some((mechanism, u.clone(), p.clone())),
        (Some(_), None) => {
            return Err(CliError::Usage(
                "--user needs the password in KAFKA_PASSWORD".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(CliError::Usage(
                "KAFKA_PASSWORD is set but --user is not".into(),
            ))
        }
        (None, None) => None,
    };
    let target = fleet::kafka::KafkaTarget {
        brokers: brokers.to_string(),
        topic: topic.clone(),
        sasl,
        ca_file: ca_file.clone(),
    };
    fleet::kafka::verify(&target, check).map_err(CliError::Unavailable)
}

#[cfg(not(feature = "sink-kafka"))]
fn kafka(_: &FleetAction, _: &str, _: FleetCheck) -> Result<FleetReport, CliError> {
    Err(CliError::Usage(
        "this build has no Kafka support: build with `--features sink-kafka` (docs/kafka.md)"
            .into(),
    ))
}
