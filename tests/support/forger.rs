//! What a forger with write access to the journal file does (drop the append-only trigger, edit,
//! re-chain), for the tests that prove `verify` finds it.

/// The forger's connection: the append-only trigger dropped.
pub fn forge(data: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(data.join("journal.sqlite")).expect("open");
    conn.execute_batch("DROP TRIGGER IF EXISTS records_append_only")
        .expect("drop trigger");
    conn
}

/// Re-chains every row from `from` on (as a forger without the key would), with `sign` deciding
/// each row's signature column from its seq and old signature.
pub fn rechain(
    conn: &rusqlite::Connection,
    from: i64,
    sign: impl Fn(i64, Option<String>) -> Option<String>,
) {
    use shopfloor_agent::journal::chain::chain_hash_raw;
    let prev: Vec<u8> = conn
        .query_row("SELECT hash FROM records WHERE seq = ?1", [from - 1], |r| {
            r.get(0)
        })
        .expect("row");
    let mut prev: [u8; 32] = prev.try_into().expect("32 bytes");
    let rows: Vec<(i64, String, Option<String>)> = conn
        .prepare("SELECT seq, body, signature FROM records WHERE seq >= ?1 ORDER BY seq")
        .expect("prepare")
        .query_map([from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for (seq, body, old) in rows {
        let hash = chain_hash_raw(&prev, body.as_bytes());
        conn.execute(
            "UPDATE records SET hash = ?1, signature = ?2 WHERE seq = ?3",
            rusqlite::params![&hash[..], sign(seq, old), seq],
        )
        .expect("update");
        prev = hash;
    }
}
