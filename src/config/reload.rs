//! `[reload]`: how a serving gateway picks up edits to its graph without a restart.

use serde::Deserialize;

/// `[reload]`: watching the project's files. SIGHUP reloads whatever this says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReloadConfig {
    /// Reload when `civicgraph.toml` or a file under the schema or connectors directory
    /// changes. On by default: a broken edit never replaces a working graph, so watching is
    /// safe in production too; turn it off where files change only through deployments.
    pub watch: bool,
    /// How long the files must be quiet before a reload starts, so an editor's burst of
    /// writes (or a `git checkout` of many files) becomes one reload.
    pub debounce_ms: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: true,
            debounce_ms: 300,
        }
    }
}
