//! `[limits]`: how large and how expensive one GraphQL request may be, and `[server] profile`.
//!
//! Every limit is checked before any backend call, most before async-graphql validates the
//! query, so a hostile query costs the gateway a linear pass over its text and nothing more.
//! Defaults are safe for a public endpoint; the depth limit is `[server] max_depth`.

use serde::Deserialize;

/// `[limits]`: the request limits. Messages that refuse a request never state these values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Lexical tokens in a query text, counted before it is parsed, so a huge query is refused
    /// without building its syntax tree.
    pub max_tokens: usize,
    /// Brackets (`{`, `(`, `[`) open at once in a query text, checked before parsing; the
    /// parser itself refuses selection sets nested deeper than 64 whatever this says.
    pub max_nesting: usize,
    /// Aliased fields in an operation, fragments expanded (aliases multiply backend work).
    pub max_aliases: u64,
    /// Fields selected at an operation's root, fragments expanded.
    pub max_root_fields: u64,
    /// Directives in an operation, fragments expanded.
    pub max_directives: u64,
    /// Fields in an operation once every fragment is expanded (a "fragment bomb" is small
    /// text that expands to millions of fields).
    pub max_fields: u64,
    /// Entries in any list, in the variables or written in the query.
    pub max_list_length: usize,
    /// Size of the variables as JSON, in bytes.
    pub max_variables_bytes: usize,
    /// The highest estimated cost an operation may have (see `field_cost`, `backend_cost`,
    /// `default_list_size`); the estimate is what a per-client budget would charge.
    pub max_cost: u64,
    /// What one field adds to the cost.
    pub field_cost: u64,
    /// What one field bound to a backend (`@connect`) adds to the cost instead.
    pub backend_cost: u64,
    /// How many items a list field is expected to hold when no `first`/`last`/`limit`
    /// argument and no list argument says; every field under it counts that many times.
    pub default_list_size: u64,
    /// Operations a partner agency may send in one JSON array; 0 turns batching off. Citizens
    /// and anonymous callers may never batch.
    pub max_batch_operations: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_tokens: 15_000,
            max_nesting: 64,
            max_aliases: 100,
            max_root_fields: 64,
            max_directives: 50,
            max_fields: 2_000,
            max_list_length: 100,
            max_variables_bytes: 64 * 1024,
            max_cost: 10_000,
            field_cost: 1,
            backend_cost: 10,
            default_list_size: 10,
            max_batch_operations: 0,
        }
    }
}

/// `[server] profile`: what kind of deployment this is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// GraphiQL, introspection and "Did you mean" suggestions as configured.
    #[default]
    Development,
    /// GraphiQL, introspection and field suggestions off whatever `[server]` says, so the
    /// endpoint tells a stranger nothing about the graph it was not asked.
    Production,
}

impl super::ServerConfig {
    /// These settings as the profile leaves them: in production, GraphiQL and introspection
    /// are off.
    pub fn effective(&self) -> Self {
        let mut server = self.clone();
        if server.profile == Profile::Production {
            server.graphiql = false;
            server.introspection = false;
        }
        server
    }

    /// Whether validation errors may suggest field names ("Did you mean …?").
    pub fn suggestions(&self) -> bool {
        self.profile != Profile::Production
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_turns_off_graphiql_introspection_and_suggestions() {
        let server: crate::config::ServerConfig =
            toml::from_str("profile = \"production\"\ngraphiql = true\nintrospection = true\n")
                .expect("valid");
        let effective = server.effective();
        assert!(!effective.graphiql);
        assert!(!effective.introspection);
        assert!(!effective.suggestions());
        let development = crate::config::ServerConfig::default();
        assert!(development.effective().graphiql && development.suggestions());
    }

    #[test]
    fn an_unknown_limit_or_profile_is_refused() {
        assert!(toml::from_str::<LimitsConfig>("max_tokenz = 1").is_err());
        assert!(toml::from_str::<crate::config::ServerConfig>("profile = \"prod\"").is_err());
        let limits: LimitsConfig = toml::from_str("max_batch_operations = 5").expect("valid");
        assert_eq!(limits.max_batch_operations, 5);
        assert_eq!(limits.max_list_length, 100);
    }
}
