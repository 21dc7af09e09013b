//! The `sql` connector (being built).

use std::sync::Arc;

use super::ConnectorSpec;
use crate::config::{Diagnostic, SqlConfig, TomlFile};

/// A built sql backend.
#[derive(Debug)]
pub struct SqlConnector;

impl SqlConnector {
    /// Builds the connector, collecting every problem with its line.
    pub(crate) fn build(
        config: &SqlConfig,
        file: &TomlFile,
    ) -> Result<(Arc<dyn super::Connector>, ConnectorSpec), Vec<Diagnostic>> {
        Err(vec![Diagnostic::at(
            file.location(&config.name.span()),
            "the `sql` connector is not built yet",
        )])
    }
}
