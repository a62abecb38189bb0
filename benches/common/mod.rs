//! What benches measure about the agent process they start: CPU time and resident memory, from
//! /proc (Linux).

#![allow(dead_code, unreachable_pub)]

/// USER_HZ on Linux: the unit of the CPU times in /proc/<pid>/stat.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU time of `pid` so far, in ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of /proc/pid/stat (1-based), 12 and 13 after the ')'.
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// A `Vm…` line of `/proc/<pid>/status` in KiB (`pid` "self" for this process), 0 if missing.
fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(&pid.to_string(), "VmRSS")
}

/// Peak resident memory of `pid` in KiB (`VmHWM`).
pub fn peak_kib(pid: u32) -> u64 {
    status_kib(&pid.to_string(), "VmHWM")
}

/// Bytes `pid` has caused to be written to storage so far (`write_bytes` of `/proc/<pid>/io`: its
/// threads' writes, counted as they dirty the page cache), 0 if unreadable.
pub fn written_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The bench setting in environment variable `name`, or `default` when it is unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of this process in MiB.
pub fn own_rss_mib() -> f64 {
    status_kib("self", "VmRSS") as f64 / 1024.0
}

/// `--name N` from the bench's arguments, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One record of a gateway's chain as the stream sinks deliver it (the CloudEvents binary
/// headers' values and the body).
pub struct ChainRecord {
    pub gateway: usize,
    pub id: String,
    pub source: String,
    pub sequence: String,
    pub prevhash: String,
    pub hash: String,
    pub body: String,
}

impl ChainRecord {
    /// The CloudEvents binary headers the stream sinks write.
    pub fn headers(&self) -> [(&'static str, &str); 9] {
        [
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", &self.id),
            ("ce-source", &self.source),
            ("ce-type", "org.shopfloor.quality.inspection.v1"),
            ("ce-time", "2026-12-04T01:00:00.000Z"),
            ("ce-sequence", &self.sequence),
            ("ce-prevhash", &self.prevhash),
            ("ce-hash", &self.hash),
        ]
    }
}

/// The chains of `gateways` gateways, records dealt round-robin: record `i` belongs to gateway
/// `i % gateways`. Bodies are the size of an inspection record (about 380 bytes).
pub struct Chains {
    prev: Vec<String>,
}

impl Chains {
    pub fn new(gateways: usize) -> Chains {
        let genesis = shopfloor_agent::journal::chain::GENESIS.to_string();
        Chains {
            prev: vec![genesis; gateways.max(1)],
        }
    }

    /// Record `i` (call in order).
    pub fn record(&mut self, i: usize) -> ChainRecord {
        let g = i % self.prev.len();
        let seq = i / self.prev.len() + 1;
        let body = format!(
            r#"{{"schema":"quality-record/1","kind":"inspection","subject":{{"serial":"SN-{g}-{seq:07}","work_order":"WO-1001","station":"cell{g}"}},"inspection":{{"characteristic":"OD-1","value":25.0012,"unit":"mm","lower_limit":24.98,"upper_limit":25.02,"result":"pass","gauge_id":"G-102"}},"captured_at":"2026-12-04T01:00:00.000Z","provenance":{{"source":"gauge","protocol":"modbus","address":"holding 0"}}}}"#
        );
        let hash = shopfloor_agent::journal::chain::chain_hash(&self.prev[g], body.as_bytes());
        let prevhash = std::mem::replace(&mut self.prev[g], hash.clone());
        ChainRecord {
            gateway: g,
            id: format!("rec-{g}-{seq}"),
            source: format!("urn:shopfloor-agent:gw-{g}"),
            sequence: seq.to_string(),
            prevhash,
            hash,
            body,
        }
    }
}
