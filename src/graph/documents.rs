//! A bounded cache of parsed queries, and the lexical limits checked before parsing.
//!
//! Clients send the same few query texts with different variables, and parsing was the largest
//! single cost the gateway added to a request (the load benchmark's breakdown). Only documents
//! that parse are cached; the cache is bounded by an estimate of their memory.
//!
//! Before a text is parsed, one linear pass counts its tokens and how deeply its brackets
//! nest ([`scan`]): the parser builds a tree for every token (BAD_INPUTS row 13) and recurses
//! for every bracket (row 12), so both are bounded before it runs.

use std::sync::Arc;

use async_graphql::ServerError;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::parser::{Error as ParseError, parse_query};

use crate::error::ErrorCode;

/// Why a query text did not become a document.
#[derive(Debug, thiserror::Error)]
pub enum ParseDocumentError {
    /// More tokens than `[limits] max_tokens`.
    #[error("the query has too many tokens")]
    TooManyTokens,
    /// Brackets nested deeper than `[limits] max_nesting` (or the parser's own limit).
    #[error("the query is nested too deeply")]
    NestedTooDeeply,
    /// Not GraphQL syntax.
    #[error("{0}")]
    Syntax(ParseError),
}

impl ParseDocumentError {
    /// The stable `extensions.code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooManyTokens => ErrorCode::TooManyTokens,
            Self::NestedTooDeeply => ErrorCode::ParserRecursionLimit,
            Self::Syntax(_) => ErrorCode::GraphqlParseFailed,
        }
    }

    /// The error as a client sees it: one line, its position when known, its code; never a
    /// limit's value.
    pub fn to_server_error(&self) -> ServerError {
        let (message, position) = match self {
            Self::TooManyTokens => (
                "The query is too long: it has more tokens than this gateway accepts.".to_string(),
                None,
            ),
            Self::NestedTooDeeply => (
                "The query is nested too deeply for this gateway to parse.".to_string(),
                None,
            ),
            Self::Syntax(error) => (syntax_message(error), error.positions().next()),
        };
        let mut error = ServerError::new(message, position);
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", self.code().as_str());
        error
    }
}

/// A one-line, human message for a query that does not parse.
pub(crate) fn syntax_message(error: &ParseError) -> String {
    match error {
        ParseError::Syntax { message, .. } => {
            // pest's message is a multi-line drawing; its "= expected …" line is the useful part.
            let expected = message
                .lines()
                .find_map(|line| line.trim_start().strip_prefix("= "))
                .unwrap_or("unexpected input");
            format!("Syntax error: {expected}.")
        }
        ParseError::RecursionLimitExceeded => "The query is nested too deeply.".to_string(),
        other => other.to_string(),
    }
}

/// The lexical limits of [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexLimits {
    /// Most tokens a query may have.
    pub max_tokens: usize,
    /// Most brackets open at once.
    pub max_nesting: usize,
}

impl Default for LexLimits {
    fn default() -> Self {
        let limits = crate::config::LimitsConfig::default();
        Self {
            max_tokens: limits.max_tokens,
            max_nesting: limits.max_nesting,
        }
    }
}

/// Counts the GraphQL tokens of `text` and the depth of its brackets in one pass, stopping
/// at the first limit crossed. Ignored text (white space, commas, comments) is not counted;
/// a character that is no token counts as one, and the parser reports it.
pub fn scan(text: &str, limits: LexLimits) -> Result<usize, ParseDocumentError> {
    let bytes = text.as_bytes();
    let mut tokens = 0usize;
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'{' | b'(' | b'[' => {
                depth += 1;
                if depth > limits.max_nesting {
                    return Err(ParseDocumentError::NestedTooDeeply);
                }
                i += 1;
            }
            b'}' | b')' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                loop {
                    match bytes.get(i) {
                        None => break,
                        Some(b'\\') if bytes[i + 1..].starts_with(b"\"\"\"") => i += 4,
                        Some(b'"') if bytes[i..].starts_with(b"\"\"\"") => {
                            i += 3;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n' | b'\r') => break,
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => {
                // A name or a number: a run of name characters, plus the signs, points and
                // exponents a number may hold.
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || (byte != b'_'
                            && !byte.is_ascii_alphabetic()
                            && (bytes[i] == b'.'
                                || ((bytes[i] == b'+' || bytes[i] == b'-')
                                    && matches!(bytes[i - 1], b'e' | b'E')))))
                {
                    i += 1;
                }
            }
            _ => {
                // A punctuator or a character the parser will refuse: one token, whole
                // UTF-8 sequence at a time.
                i += 1;
                while i < bytes.len() && !text.is_char_boundary(i) {
                    i += 1;
                }
            }
        }
        tokens += 1;
        if tokens > limits.max_tokens {
            return Err(ParseDocumentError::TooManyTokens);
        }
    }
    Ok(tokens)
}

/// Parsed documents by query text.
#[derive(Clone)]
pub struct DocumentCache {
    documents: moka::sync::Cache<String, Arc<ExecutableDocument>>,
    limits: LexLimits,
}

impl std::fmt::Debug for DocumentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentCache")
            .field("entries", &self.documents.entry_count())
            .finish()
    }
}

impl DocumentCache {
    /// A cache holding about `max_bytes` of parsed documents; 0 turns caching off.
    pub fn new(max_bytes: u64) -> Self {
        let documents = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            // A parsed document takes roughly ten times its text; the key is the text itself.
            .weigher(|query: &String, _| {
                u32::try_from(query.len().saturating_mul(11)).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            documents,
            limits: LexLimits::default(),
        }
    }

    /// This cache with other lexical limits, checked on every text before it is parsed.
    pub fn with_limits(mut self, limits: LexLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The parsed document for `query`, from the cache or freshly parsed once its tokens and
    /// nesting are within the limits.
    pub fn parse(&self, query: &str) -> Result<Arc<ExecutableDocument>, ParseDocumentError> {
        if let Some(document) = self.documents.get(query) {
            return Ok(document);
        }
        scan(query, self.limits)?;
        let document = Arc::new(parse_query(query).map_err(|error| match error {
            ParseError::RecursionLimitExceeded => ParseDocumentError::NestedTooDeeply,
            error => ParseDocumentError::Syntax(error),
        })?);
        self.documents
            .insert(query.to_string(), Arc::clone(&document));
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_once_and_serves_the_same_document() {
        let cache = DocumentCache::new(1 << 20);
        let first = cache.parse("{ a }").expect("valid");
        let second = cache.parse("{ a }").expect("valid");
        assert!(Arc::ptr_eq(&first, &second));
        assert!(cache.parse("{ a ").is_err());
    }

    #[test]
    fn a_zero_sized_cache_still_parses() {
        let cache = DocumentCache::new(0);
        let first = cache.parse("{ a }").expect("valid");
        let second = cache.parse("{ a }").expect("valid");
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
    }

    #[test]
    fn a_query_nested_ten_thousand_deep_is_an_error_even_on_a_small_stack() {
        let query = format!("{}{}", "{a".repeat(10_000), "}".repeat(10_000));
        let outcome = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let lexed = DocumentCache::new(1 << 20).parse(&query).err();
                // With the pre-parse check off, the parser still refuses it (as a syntax
                // error: pest gives up before async-graphql's recursion limit is reached).
                let unlimited = LexLimits {
                    max_tokens: usize::MAX,
                    max_nesting: usize::MAX,
                };
                let parsed = DocumentCache::new(1 << 20)
                    .with_limits(unlimited)
                    .parse(&query)
                    .err();
                (lexed.map(|e| e.code()), parsed.is_some())
            })
            .expect("spawn a small-stack thread")
            .join()
            .expect("no stack overflow");
        assert_eq!(outcome, (Some(ErrorCode::ParserRecursionLimit), true));
    }

    fn count(text: &str) -> usize {
        let unlimited = LexLimits {
            max_tokens: usize::MAX,
            max_nesting: usize::MAX,
        };
        scan(text, unlimited).expect("no limit")
    }

    #[test]
    fn counts_graphql_tokens_and_skips_ignored_text() {
        assert_eq!(count("{ a }"), 3);
        assert_eq!(count("query Q($id: ID!) { citizen(id: $id) { ...F } }"), 22);
        assert_eq!(count("{ a(x: -1.5e+3, y: \"s, \\\" }\") }"), 11);
        assert_eq!(
            count("{ a(x: \"\"\"block { \\\"\"\" } [\"\"\") } # comment { {"),
            8
        );
        assert_eq!(count("\u{feff}{ é }"), 4);
        assert_eq!(count(""), 0);
    }

    #[test]
    fn a_hundred_thousand_tokens_are_refused_before_parsing() {
        let query = format!("{{{}}}", " __typename".repeat(100_000));
        let error = DocumentCache::new(1 << 20)
            .parse(&query)
            .expect_err("refused");
        assert_eq!(error.code(), ErrorCode::TooManyTokens);
        let message = error.to_server_error().message;
        assert!(
            !message.contains("15000") && !message.contains("15 000"),
            "{message}"
        );
    }

    #[test]
    fn unterminated_strings_and_stray_bytes_end_the_scan_safely() {
        assert_eq!(count("{ a(x: \"open"), 6);
        assert_eq!(count("\"\"\"never closed"), 1);
        assert_eq!(count("}}}]]) {"), 7);
        let error = DocumentCache::new(1 << 20)
            .parse("{ a(x: \"open")
            .expect_err("bad");
        assert_eq!(error.code(), ErrorCode::GraphqlParseFailed);
    }
}
