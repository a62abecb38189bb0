//! Audit tools that read the journal: `verify` (the hash chain), `status` (health for OT staff)
//! `trace` (the thread of a part, lot, work order or gauge) and `export` (evidence packages, checked
//! offline by `verify --package`), `replay` and `dead-letters` (re-send requests the running agent
//! performs) and reconciliation (`status --by`).

pub mod export;
pub mod fleet;
pub mod package;
pub mod reconcile;
pub mod resend;
pub mod status;
pub mod trace;
pub mod verify;

/// Text for a terminal: every control character but the line break and tab (an escape sequence in
/// a serial number from a device could clear the auditor's screen or rewrite what it shows) and the
/// bidirectional overrides (which reorder what is seen) are shown as `\u{…}` escapes. JSON output
/// needs none of this: its strings escape control characters already.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_and_bidi_overrides_are_shown_not_obeyed() {
        assert_eq!(super::terminal_safe("SN-1\ttab\nline"), "SN-1\ttab\nline");
        assert_eq!(
            super::terminal_safe("SN-\u{1b}[2J\u{202E}x\r"),
            "SN-\\u{1b}[2J\\u{202e}x\\u{d}"
        );
    }
}
