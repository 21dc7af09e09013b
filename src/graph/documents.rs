//! A bounded cache of parsed queries.
//!
//! Clients send the same few query texts with different variables, and parsing was the largest
//! single cost the gateway added to a request (the load benchmark's breakdown). Only documents
//! that parse are cached; the cache is bounded by an estimate of their memory.

use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::parser::{Error as ParseError, parse_query};

/// Parsed documents by query text.
#[derive(Clone)]
pub struct DocumentCache {
    documents: moka::sync::Cache<String, Arc<ExecutableDocument>>,
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
        Self { documents }
    }

    /// The parsed document for `query`, from the cache or freshly parsed.
    pub fn parse(&self, query: &str) -> Result<Arc<ExecutableDocument>, ParseError> {
        if let Some(document) = self.documents.get(query) {
            return Ok(document);
        }
        let document = Arc::new(parse_query(query)?);
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
            .spawn(move || DocumentCache::new(1 << 20).parse(&query).is_err())
            .expect("spawn a small-stack thread")
            .join()
            .expect("no stack overflow");
        assert!(outcome, "the parser refuses the nesting");
    }
}
