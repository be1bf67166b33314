//! An error and its causes as one line of text. A leaf module.

/// The error's message followed by each cause, `: `-separated (`a: b: c`), so a
/// log line or an exception says why. A cause whose text the line already holds is
/// skipped (many errors repeat their source in their own message).
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// #[error("cannot read config")]
/// struct Outer(#[source] std::io::Error);
///
/// let error = Outer(std::io::Error::other("permission denied"));
/// assert_eq!(
///     flotta_core::error_chain::error_chain(&error),
///     "cannot read config: permission denied"
/// );
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Layer {
        message: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layer(message: &'static str, source: Option<Layer>) -> Layer {
        Layer {
            message,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn joins_causes_and_skips_repeats() {
        let error = layer("a", Some(layer("b", Some(layer("c", None)))));
        assert_eq!(error_chain(&error), "a: b: c");
        let repeated = layer("a: b", Some(layer("b", Some(layer("", None)))));
        assert_eq!(error_chain(&repeated), "a: b");
    }
}
