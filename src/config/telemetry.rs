//! `[telemetry]`: the log format and where traces go.

use serde::{Deserialize, Deserializer};

/// `[telemetry]`: logs and traces. Metrics need no settings: `GET /metrics` is always served.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` for people at a terminal, `json` for log collectors (one object a line, with
    /// the request id of the request it belongs to). `--log-format` on the command line wins.
    pub log_format: LogFormat,
    /// The OTLP/HTTP collector's base URL, e.g. `http://otel-collector:4318`; spans are POSTed
    /// as protobuf to `{otlp_endpoint}/v1/traces`. Absent: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) from the environment, and no traces when neither is set.
    #[serde(deserialize_with = "endpoint")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute every span carries.
    pub service_name: String,
    /// The share of new traces kept, from 0.0 to 1.0. A request that arrives with a sampled
    /// W3C `traceparent` is always kept, so a trace is never cut in the middle.
    pub sampling_ratio: SamplingRatio,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            service_name: "civicgraph".to_string(),
            sampling_ratio: SamplingRatio(1.0),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// A probability: refused at load time (with the file and line) unless within 0.0..=1.0, so a
/// typo such as `10` does not silently mean "everything".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingRatio(f64);

impl SamplingRatio {
    /// The ratio, within 0.0..=1.0.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for SamplingRatio {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ratio = f64::deserialize(deserializer)?;
        if (0.0..=1.0).contains(&ratio) {
            Ok(Self(ratio))
        } else {
            Err(serde::de::Error::custom(format!(
                "sampling_ratio must be between 0.0 and 1.0, got {ratio}"
            )))
        }
    }
}

/// An `http://` or `https://` URL with a host, or empty for none.
fn endpoint<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let uri: http::Uri = text.parse().map_err(|_| {
        serde::de::Error::custom(
            "otlp_endpoint is not a URL (expected e.g. `http://otel-collector:4318`)",
        )
    })?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none() {
        return Err(serde::de::Error::custom(
            "otlp_endpoint must be an http:// or https:// URL with a host, e.g. `http://otel-collector:4318`",
        ));
    }
    Ok(Some(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Wrapper {
        telemetry: TelemetryConfig,
    }

    #[test]
    fn reads_every_key() {
        let parsed: Wrapper = toml::from_str(
            "[telemetry]\nlog_format = \"json\"\notlp_endpoint = \"http://127.0.0.1:4318\"\nservice_name = \"gw\"\nsampling_ratio = 0.25\n",
        )
        .expect("valid");
        assert_eq!(parsed.telemetry.log_format, LogFormat::Json);
        assert_eq!(
            parsed.telemetry.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );
        assert_eq!(parsed.telemetry.service_name, "gw");
        assert_eq!(parsed.telemetry.sampling_ratio.get(), 0.25);
    }

    #[test]
    fn refuses_a_ratio_outside_zero_to_one() {
        let error = toml::from_str::<Wrapper>("[telemetry]\nsampling_ratio = 10.0\n")
            .expect_err("out of range");
        let message = error.to_string();
        assert!(message.contains("between 0.0 and 1.0"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn refuses_an_endpoint_that_is_not_an_http_url() {
        for bad in [
            "127.0.0.1:4318",
            "grpc://collector:4317",
            "http://",
            "not a url",
        ] {
            let error =
                toml::from_str::<Wrapper>(&format!("[telemetry]\notlp_endpoint = \"{bad}\"\n"))
                    .expect_err(bad);
            assert!(
                error.to_string().contains("otlp_endpoint"),
                "{bad}: {error}"
            );
        }
        let empty: Wrapper = toml::from_str("[telemetry]\notlp_endpoint = \"\"\n").expect("empty");
        assert_eq!(empty.telemetry.otlp_endpoint, None);
    }

    #[test]
    fn refuses_an_unknown_key_and_format() {
        assert!(toml::from_str::<Wrapper>("[telemetry]\nlog_fromat = \"json\"\n").is_err());
        assert!(toml::from_str::<Wrapper>("[telemetry]\nlog_format = \"xml\"\n").is_err());
    }
}
