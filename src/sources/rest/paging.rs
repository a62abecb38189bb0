//! Finding the next page (OData `@odata.nextLink`, RFC 8288 `Link`) and watermark arithmetic (pure).

use serde_json::Value;

/// The next page of an OData response, resolved against the URL of the request that returned it
/// (a relative link such as `WorkOrders?$skiptoken=100` is already percent-encoded: it is joined,
/// not encoded again).
pub fn odata_next(body: &Value, request: &url::Url) -> Option<url::Url> {
    let link = body.get("@odata.nextLink")?.as_str()?;
    request.join(link).ok()
}

/// The `rel="next"` target of an RFC 8288 `Link` header, resolved against the request URL.
pub fn link_next(header: &str, request: &url::Url) -> Option<url::Url> {
    for part in header.split(',') {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let target = target.strip_prefix('<')?.strip_suffix('>')?;
        let is_next = pieces.any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|r| {
                    r.trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
                })
                .unwrap_or(false)
        });
        if is_next {
            return request.join(target).ok();
        }
    }
    None
}

/// The larger of two watermark values: numbers by value, RFC 3339 times as instants, other text as
/// text.
pub fn later(a: &str, b: &str) -> bool {
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x > y;
    }
    match (crate::time::parse(a), crate::time::parse(b)) {
        (Some(x), Some(y)) => x > y,
        _ => a > b,
    }
}

/// The watermark a query starts from: `overlap_s` before `mark` for times, `mark` otherwise.
pub fn with_overlap(mark: &str, overlap_s: u64) -> String {
    match crate::time::parse(mark) {
        Some(t) => crate::time::format(t - time::Duration::seconds(overlap_s as i64)),
        None => mark.to_string(),
    }
}

/// A row's watermark field as text.
pub fn field_text(row: &Value, pointer: &str) -> Option<String> {
    match row.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn relative_next_links_are_joined_not_reencoded() {
        let req =
            url::Url::parse("http://127.0.0.1:4004/odata/v4/erp/WorkOrders?%24top=5").expect("url");
        let body = json!({ "@odata.nextLink": "WorkOrders?%24count=true&%24orderby=modifiedAt&%24skiptoken=100" });
        assert_eq!(
            odata_next(&body, &req).map(|u| u.to_string()),
            Some("http://127.0.0.1:4004/odata/v4/erp/WorkOrders?%24count=true&%24orderby=modifiedAt&%24skiptoken=100".into())
        );
        assert_eq!(odata_next(&json!({ "value": [] }), &req), None);
    }

    #[test]
    fn link_headers() {
        let req = url::Url::parse("https://mes/api/orders?page=1").expect("url");
        let h =
            r#"<https://mes/api/orders?page=1>; rel="prev", </api/orders?page=3>; rel="next last""#;
        assert_eq!(
            link_next(h, &req).map(|u| u.to_string()),
            Some("https://mes/api/orders?page=3".into())
        );
        assert_eq!(link_next(r#"<x>; rel="prev""#, &req), None);
    }

    #[test]
    fn watermark_order_and_overlap() {
        assert!(later("2026-11-21T10:00:01Z", "2026-11-21T10:00:00.999Z"));
        assert!(later("10", "9"));
        assert!(!later("2026-01-01T00:00:00+01:00", "2025-12-31T23:30:00Z"));
        assert_eq!(
            with_overlap("2026-11-21T10:01:00Z", 60),
            "2026-11-21T10:00:00.000Z"
        );
        assert_eq!(with_overlap("12345", 60), "12345");
    }
}
