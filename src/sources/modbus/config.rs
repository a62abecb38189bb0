//! `[sources.<id>] type = "modbus"`: one Modbus TCP device (or gateway) or one RTU serial bus.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::decode::{DataType, WordOrder};
use super::plan::{RegisterKind, Span};
use crate::config::ConfigError;

/// How the peer is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Modbus TCP (`address = "host:port"`).
    Tcp,
    /// Modbus RTU on a serial line (`device = "/dev/ttyUSB0"`).
    Rtu,
}

/// How addresses in `tags` are written. There is no default: the two conventions differ by one and
/// mixing them up reads the neighbouring register without any error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Addressing {
    /// 0-based protocol (PDU) addresses with an explicit `kind`: holding register 0 is the first.
    Pdu,
    /// 1-based "Modicon" numbers whose leading digit gives the kind: 00001 coil, 10001 discrete
    /// input, 30001 input register, 40001 holding register (6-digit forms 100001/300001/400001 too).
    Modicon,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    /// None.
    None,
    /// Even (the Modbus RTU default).
    #[default]
    Even,
    /// Odd.
    Odd,
}

/// One tag of a Modbus device.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusTag {
    /// Tag name; rules refer to it as `<source>.<name>`.
    pub name: String,
    /// Unit (slave) id; default: the source's `unit`.
    #[serde(default)]
    pub unit: Option<u8>,
    /// `holding`, `input`, `coil` or `discrete`; required with `addressing = "pdu"`, implied by the
    /// number with `"modicon"`.
    #[serde(default)]
    pub kind: Option<RegisterKind>,
    /// Address, as `addressing` says.
    pub address: u32,
    /// Value type.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Byte/word order of multi-byte types.
    #[serde(default)]
    pub order: WordOrder,
    /// Length of a `string` in registers.
    #[serde(default)]
    pub registers: Option<u16>,
    /// For `bool` from a register: the bit (0 = least significant).
    #[serde(default)]
    pub bit: Option<u8>,
    /// value × scale + offset.
    #[serde(default)]
    pub scale: Option<f64>,
    /// value × scale + offset.
    #[serde(default)]
    pub offset: Option<f64>,
}

/// Options of a Modbus source.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusSourceConfig {
    /// `tcp` or `rtu`.
    pub transport: Transport,
    /// TCP: `host:port` (use 127.0.0.1, not localhost, for local peers).
    #[serde(default)]
    pub address: Option<String>,
    /// RTU: the serial device.
    #[serde(default)]
    pub device: Option<PathBuf>,
    /// RTU: baud rate.
    #[serde(default = "default_baud")]
    pub baud_rate: u32,
    /// RTU: parity.
    #[serde(default)]
    pub parity: Parity,
    /// RTU: stop bits (1 or 2).
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// RTU: data bits (7 or 8).
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// RTU: silence between frames; default 3.5 character times (at least 2 ms).
    #[serde(default)]
    pub inter_frame_delay_ms: Option<u64>,
    /// How tag addresses are written: `pdu` or `modicon` (required).
    pub addressing: Addressing,
    /// Default unit id of tags.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Unit ids on this connection; tags may only use these (empty: any).
    #[serde(default)]
    pub units: Vec<u8>,
    /// Poll cycle.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// Answer timeout per request.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Retries of a request that timed out, before the connection is considered lost.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Read over up to this many unused registers (or bits) to save a request.
    #[serde(default = "default_gap")]
    pub max_gap: u16,
    /// First reconnect delay; doubles up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    /// Longest reconnect delay (default 5 s).
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// The tags.
    pub tags: Vec<ModbusTag>,
}

fn default_baud() -> u32 {
    19200
}
fn default_stop_bits() -> u8 {
    1
}
fn default_data_bits() -> u8 {
    8
}
fn default_unit() -> u8 {
    1
}
fn default_poll() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    1000
}
fn default_retries() -> u32 {
    1
}
fn default_gap() -> u16 {
    8
}
fn default_reconnect_initial() -> u64 {
    500
}
/// LAN devices come back quickly (a power cycle, a cable): a device is looked for again within a
/// few seconds, and a poll of a missing one costs next to nothing.
fn default_reconnect_max() -> u64 {
    5_000
}

/// A tag with its address resolved to a PDU address and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTag {
    /// Name.
    pub name: String,
    /// Registers or bits it occupies.
    pub span: Span,
    /// Value type.
    pub data_type: DataType,
    /// Order.
    pub order: WordOrder,
    /// Bit of a register.
    pub bit: Option<u8>,
    /// Scale.
    pub scale: Option<f64>,
    /// Offset.
    pub offset: Option<f64>,
}

impl ResolvedTag {
    /// How provenance names the address: `unit=1 holding=100 f32 cdab`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "unit={} {}={} {}",
            self.span.unit,
            self.span.kind.as_str(),
            self.span.start,
            self.data_type.as_str()
        );
        if self.span.kind.is_bits() {
            return format!(
                "unit={} {}={}",
                self.span.unit,
                self.span.kind.as_str(),
                self.span.start
            );
        }
        if let Some(b) = self.bit {
            s.push_str(&format!(" bit={b}"));
        } else if self.data_type == DataType::String {
            s.push_str(&format!("[{}]", self.span.count));
        } else if self.span.count > 1 {
            s.push(' ');
            s.push_str(self.order.as_str());
        }
        s
    }
}

fn modicon(address: u32) -> Option<(RegisterKind, u32)> {
    match address {
        1..=9999 => Some((RegisterKind::Coil, address - 1)),
        10001..=19999 => Some((RegisterKind::Discrete, address - 10001)),
        30001..=39999 => Some((RegisterKind::Input, address - 30001)),
        40001..=49999 => Some((RegisterKind::Holding, address - 40001)),
        100001..=165536 => Some((RegisterKind::Discrete, address - 100001)),
        300001..=365536 => Some((RegisterKind::Input, address - 300001)),
        400001..=465536 => Some((RegisterKind::Holding, address - 400001)),
        _ => None,
    }
}

impl ModbusSourceConfig {
    /// Resolves every tag; collects every problem with its path.
    pub fn resolve(&self, at: &str, errors: &mut Vec<ConfigError>) -> Vec<ResolvedTag> {
        let mut out = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.tags.iter().enumerate() {
            let tat = format!("{at}.tags[{i}]");
            let before = errors.len();
            if t.name.is_empty()
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                errors.push(
                    ConfigError::new(
                        format!("{tat}.name"),
                        format!("{:?} is not a valid tag name", t.name),
                    )
                    .hint("use letters, digits and '_'"),
                );
            }
            if !names.insert(t.name.clone()) {
                errors.push(ConfigError::new(
                    format!("{tat}.name"),
                    format!("duplicate tag name {:?}", t.name),
                ));
            }
            let unit = t.unit.unwrap_or(self.unit);
            let unit_ok = match self.transport {
                Transport::Rtu => (1..=247).contains(&unit),
                Transport::Tcp => true,
            };
            if !unit_ok || (!self.units.is_empty() && !self.units.contains(&unit)) {
                errors.push(
                    ConfigError::new(
                        format!("{tat}.unit"),
                        format!("unit id {unit} is not allowed here"),
                    )
                    .hint(if self.units.is_empty() {
                        "RTU unit ids are 1..=247".to_string()
                    } else {
                        format!("this source lists units = {:?}", self.units)
                    }),
                );
            }
            let (kind, start) = match self.addressing {
                Addressing::Pdu => match t.kind {
                    Some(k) => (k, t.address),
                    None => {
                        errors.push(
                            ConfigError::new(
                                format!("{tat}.kind"),
                                "missing with addressing = \"pdu\"",
                            )
                            .hint("give kind = \"holding\", \"input\", \"coil\" or \"discrete\""),
                        );
                        continue;
                    }
                },
                Addressing::Modicon => match modicon(t.address) {
                    Some((k, a)) => {
                        if t.kind.is_some_and(|given| given != k) {
                            errors.push(ConfigError::new(
                                format!("{tat}.kind"),
                                format!(
                                    "address {} is {} {} address, not {}",
                                    t.address,
                                    if k == RegisterKind::Input { "an" } else { "a" },
                                    k.as_str(),
                                    t.kind.map_or("", |k| k.as_str())
                                ),
                            ));
                        }
                        (k, a)
                    }
                    None => {
                        errors.push(
                            ConfigError::new(format!("{tat}.address"), format!("{} is not a Modicon address", t.address))
                                .hint("00001-09999 coils, 10001 discrete inputs, 30001 input registers, 40001 holding registers; or use addressing = \"pdu\""),
                        );
                        continue;
                    }
                },
            };
            let count = if kind.is_bits() {
                if t.data_type != DataType::Bool {
                    errors.push(
                        ConfigError::new(
                            format!("{tat}.type"),
                            format!(
                                "{} of a {} is not possible",
                                t.data_type.as_str(),
                                kind.as_str()
                            ),
                        )
                        .hint("coils and discrete inputs are bool"),
                    );
                }
                1
            } else if t.data_type == DataType::String {
                match t.registers {
                    Some(n) if (1..=125).contains(&n) => n,
                    _ => {
                        errors.push(
                            ConfigError::new(
                                format!("{tat}.registers"),
                                "a string needs registers = 1..=125",
                            )
                            .hint("each register holds two ASCII characters"),
                        );
                        1
                    }
                }
            } else {
                if t.registers
                    .is_some_and(|n| Some(n) != t.data_type.registers())
                {
                    errors.push(ConfigError::new(
                        format!("{tat}.registers"),
                        format!(
                            "{} occupies {} registers, not {}",
                            t.data_type.as_str(),
                            t.data_type.registers().unwrap_or(0),
                            t.registers.unwrap_or(0)
                        ),
                    ));
                }
                if t.data_type == DataType::Bool && t.bit.is_none() {
                    errors.push(
                        ConfigError::new(
                            format!("{tat}.bit"),
                            "a bool from a register needs bit = 0..=15",
                        )
                        .hint("or read a coil / discrete input"),
                    );
                }
                t.data_type.registers().unwrap_or(1)
            };
            if t.bit.is_some_and(|b| b > 15)
                || (t.bit.is_some() && (t.data_type != DataType::Bool || kind.is_bits()))
            {
                errors.push(ConfigError::new(
                    format!("{tat}.bit"),
                    "bit applies to bool tags of registers and is 0..=15",
                ));
            }
            if start + u32::from(count) > 65536 {
                errors.push(ConfigError::new(
                    format!("{tat}.address"),
                    format!(
                        "{} {} + {count} runs past the last address 65535",
                        kind.as_str(),
                        start
                    ),
                ));
            }
            if errors.len() > before {
                continue;
            }
            out.push(ResolvedTag {
                name: t.name.clone(),
                span: Span {
                    unit,
                    kind,
                    start: start as u16,
                    count,
                },
                data_type: t.data_type,
                order: t.order,
                bit: t.bit,
                scale: t.scale,
                offset: t.offset,
            });
        }
        // Overlaps: two tags reading the same registers are a mistake, unless they are different
        // bits of one register.
        for (i, a) in out.iter().enumerate() {
            for b in &out[i + 1..] {
                let (sa, sb) = (a.span, b.span);
                let overlap = sa.unit == sb.unit
                    && sa.kind == sb.kind
                    && sa.start < sb.start.saturating_add(sb.count)
                    && sb.start < sa.start.saturating_add(sa.count);
                let distinct_bits = a.bit.is_some() && b.bit.is_some() && a.bit != b.bit;
                if overlap && !distinct_bits {
                    errors.push(
                        ConfigError::new(format!("{at}.tags"), format!("tags {:?} ({}) and {:?} ({}) overlap", a.name, a.describe(), b.name, b.describe()))
                            .hint("check the addresses (and the addressing convention); read one register as several bits with bit = N"),
                    );
                }
            }
        }
        out
    }

    /// Checks the values; `at` is the key path (`sources.gauge1`).
    pub(crate) fn check(&self, at: &str, errors: &mut Vec<ConfigError>) {
        match self.transport {
            Transport::Tcp => match &self.address {
                Some(a)
                    if a.rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) => {}
                _ => errors.push(
                    ConfigError::new(
                        format!("{at}.address"),
                        format!(
                            "{:?} is not host:port",
                            self.address.clone().unwrap_or_default()
                        ),
                    )
                    .hint("e.g. address = \"10.1.4.30:502\""),
                ),
            },
            Transport::Rtu => {
                if self.device.is_none() {
                    errors.push(
                        ConfigError::new(format!("{at}.device"), "missing for transport = \"rtu\"")
                            .hint("e.g. device = \"/dev/ttyUSB0\""),
                    );
                }
                if !matches!(self.stop_bits, 1 | 2) || !matches!(self.data_bits, 7 | 8) {
                    errors.push(ConfigError::new(
                        format!("{at}.stop_bits"),
                        "stop_bits is 1 or 2, data_bits 7 or 8",
                    ));
                }
            }
        }
        if self.poll_interval_ms == 0 || self.timeout_ms == 0 {
            errors.push(ConfigError::new(
                format!("{at}.poll_interval_ms"),
                "poll_interval_ms and timeout_ms must be above 0",
            ));
        }
        if self.tags.is_empty() {
            errors.push(
                ConfigError::new(format!("{at}.tags"), "no tags")
                    .hint("add [[sources.<id>.tags]] entries"),
            );
        }
        self.resolve(at, errors);
    }

    /// The inter-frame delay: configured, or 3.5 character times (11 bits each), at least 2 ms.
    pub fn inter_frame_delay(&self) -> std::time::Duration {
        let ms = self.inter_frame_delay_ms.unwrap_or_else(|| {
            let char_us = 11_000_000 / u64::from(self.baud_rate.max(1));
            (char_us * 35 / 10).div_ceil(1000).max(2)
        });
        std::time::Duration::from_millis(ms)
    }
}
