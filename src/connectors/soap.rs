//! The `soap` connector (being built).

use std::sync::Arc;

use super::ConnectorSpec;
use crate::config::{Diagnostic, SoapConfig, TomlFile};

/// A built soap backend.
#[derive(Debug)]
pub struct SoapConnector;

impl SoapConnector {
    /// Builds the connector, collecting every problem with its line.
    pub(crate) fn build(
        config: &SoapConfig,
        file: &TomlFile,
    ) -> Result<(Arc<dyn super::Connector>, ConnectorSpec), Vec<Diagnostic>> {
        Err(vec![Diagnostic::at(
            file.location(&config.name.span()),
            "the `soap` connector is not built yet",
        )])
    }
}
