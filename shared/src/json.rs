//! JSON helpers shared by the adapters and the secret parsing.

/// Describes a JSON error by its kind and position only. serde_json's own message may quote
/// the data it choked on (a recipient, a message text, a secret), which must not reach a log
/// line or an error body.
pub fn describe_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "i/o error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "truncated",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_errors_do_not_quote_the_data() {
        let e = serde_json::from_str::<u16>("\"s3cr3t-value\"").err();
        let described = e.as_ref().map(super::describe_error).unwrap_or_default();
        assert!(!described.contains("s3cr3t"), "{described}");
        assert!(described.starts_with("unexpected data"), "{described}");
    }
}
