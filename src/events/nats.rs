//! Publishes life events to NATS JetStream, for agencies that would rather consume a stream than
//! run a webhook receiver.
//!
//! Each event goes to `{subject_prefix}.{EventType}` with the same thin JSON body a webhook
//! carries and the event id in `Nats-Msg-Id`. The stream is made with a two-minute duplicate
//! window, so when the dispatcher publishes an event again (its lease ran out before it could
//! mark the delivery done) JetStream stores it once. A publish counts as done only when the
//! server's acknowledgement arrives, which it sends after storing the message.
//!
//! Credentials in `nats_url` (`nats://user:password@host`, `nats://token@host`) are taken out of
//! the address and handed to the client separately, so neither the client's logs nor this
//! module's errors ever show them.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use reqwest::Url;

/// The bound on reaching the server (TCP, TLS and the NATS handshake), so a gateway started with
/// an unreachable `nats_url` reports it instead of hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound on one publish, from sending to the server's acknowledgement; also the bound on
/// the JetStream API calls that look up or create the stream.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long JetStream remembers a `Nats-Msg-Id` to drop a repeat; longer than a delivery lease,
/// so a redelivery after a lost acknowledgement is still recognised.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Why connecting or publishing failed. Server addresses appear without credentials; bodies
/// never appear.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsError {
    /// `nats_url` is not a list of NATS server addresses.
    #[error("`nats_url` is not a comma-separated list of NATS server addresses")]
    BadUrl,
    /// The subject prefix is not dot-separated tokens without wildcards or spaces.
    #[error("subject prefix `{prefix}` must be dot-separated tokens without spaces, `*` or `>`")]
    BadSubjectPrefix {
        /// The prefix given.
        prefix: String,
    },
    /// An event type that would not make a single subject token.
    #[error("event type `{event_type}` is not made of letters, digits, `_` and `-`")]
    BadEventType {
        /// The type given.
        event_type: String,
    },
    /// An event id that cannot travel in a header.
    #[error("an event id must be non-empty printable text to be sent as `Nats-Msg-Id`")]
    BadEventId,
    /// The server did not complete the connection within the connect timeout.
    #[error("connecting to NATS at {server} timed out after {timeout_s} s")]
    ConnectTimeout {
        /// The address, without credentials.
        server: String,
        /// The bound waited.
        timeout_s: u64,
    },
    /// The connection was refused or failed.
    #[error("connecting to NATS at {server}: {reason}")]
    Connect {
        /// The address, without credentials.
        server: String,
        /// What the client said.
        reason: String,
    },
    /// The stream could not be looked up or created (JetStream off, a name it refuses, …).
    #[error("JetStream stream `{stream}`: {reason}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// What the server or client said.
        reason: String,
    },
    /// The stream exists but does not take the gateway's subjects, so publishes would go
    /// elsewhere or nowhere.
    #[error("JetStream stream `{stream}` has subjects [{subjects}], which do not cover `{wanted}`")]
    StreamSubjects {
        /// The stream's name.
        stream: String,
        /// Its configured subjects.
        subjects: String,
        /// The subjects the gateway publishes to.
        wanted: String,
    },
    /// The server did not acknowledge the message within the publish timeout: it may or may not
    /// be stored, so the caller publishes again (the duplicate window absorbs a repeat).
    #[error("publishing to `{subject}`: no acknowledgement within {timeout_ms} ms")]
    AckTimeout {
        /// The subject published to.
        subject: String,
        /// The bound waited.
        timeout_ms: u64,
    },
    /// The server refused the message, or the connection broke.
    #[error("publishing to `{subject}`: {reason}")]
    Publish {
        /// The subject published to.
        subject: String,
        /// What the server or client said.
        reason: String,
    },
    /// Another stream captured the subject, so the event is not where subscribers read.
    #[error("publishing to `{subject}`: stored in stream `{actual}`, not `{expected}`")]
    WrongStream {
        /// The subject published to.
        subject: String,
        /// The configured stream.
        expected: String,
        /// The stream that acknowledged.
        actual: String,
    },
}

/// Credentials found in `nats_url`, passed to the client apart from the address.
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// `nats_url` split into addresses without credentials, and the credentials.
struct ServerList {
    addresses: Vec<String>,
    credentials: Option<Credentials>,
}

impl ServerList {
    fn parse(text: &str) -> Result<Self, NatsError> {
        let mut addresses = Vec::new();
        let mut credentials = None;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let full = if part.contains("://") {
                part.to_owned()
            } else {
                format!("nats://{part}")
            };
            let mut url = Url::parse(&full).map_err(|_| NatsError::BadUrl)?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(NatsError::BadUrl);
            }
            if !url.username().is_empty() {
                let decode = |text: &str| percent_decode_str(text).decode_utf8_lossy().into_owned();
                let user = decode(url.username());
                let found = match url.password() {
                    Some(password) => Credentials::UserPassword(user, decode(password)),
                    None => Credentials::Token(user),
                };
                credentials.get_or_insert(found);
            }
            url.set_username("").map_err(|()| NatsError::BadUrl)?;
            url.set_password(None).map_err(|()| NatsError::BadUrl)?;
            addresses.push(url.to_string());
        }
        if addresses.is_empty() {
            return Err(NatsError::BadUrl);
        }
        Ok(Self {
            addresses,
            credentials,
        })
    }

    /// The addresses for messages: credentials already removed.
    fn display(&self) -> String {
        self.addresses.join(",")
    }
}

/// Whether `text` is one subject token the gateway accepts: the event-type alphabet.
fn is_plain_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_subject_prefix(prefix: &str) -> Result<(), NatsError> {
    let valid = prefix.split('.').all(|token| {
        !token.is_empty()
            && token
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '*' && c != '>')
    });
    if valid {
        Ok(())
    } else {
        Err(NatsError::BadSubjectPrefix {
            prefix: prefix.to_owned(),
        })
    }
}

/// Whether a stream subject `pattern` takes every subject `{prefix}.{one token}`: the prefix's
/// tokens matched literally or by `*`, then `*` or `>` for the event type (or `>` earlier).
fn pattern_covers(pattern: &str, prefix: &str) -> bool {
    let wanted: Vec<Option<&str>> = prefix.split('.').map(Some).chain([None]).collect();
    let tokens: Vec<&str> = pattern.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        let Some(want) = wanted.get(i) else {
            return false;
        };
        match (*token, want) {
            (">", _) => return true,
            ("*", _) => {}
            (literal, Some(want)) if literal == *want => {}
            _ => return false,
        }
    }
    tokens.len() == wanted.len()
}

/// A connection to NATS and the JetStream stream events are stored in. Cheap to clone; the
/// client reconnects by itself after the first connection.
#[derive(Debug, Clone)]
pub struct NatsPublisher {
    jetstream: jetstream::Context,
    stream: String,
    subject_prefix: String,
}

impl NatsPublisher {
    /// Connects to `url` (one address or a comma-separated list; `nats://`, `tls://`), then gets
    /// the stream `stream`, creating it with subjects `{subject_prefix}.>`, file storage and a
    /// two-minute duplicate window if it does not exist. An existing stream is kept as it is
    /// but must take the gateway's subjects.
    pub async fn connect(url: &str, stream: &str, subject_prefix: &str) -> Result<Self, NatsError> {
        check_subject_prefix(subject_prefix)?;
        let servers = ServerList::parse(url)?;
        let mut options = async_nats::ConnectOptions::new()
            .name("civicgraph")
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(PUBLISH_TIMEOUT));
        options = match servers.credentials {
            Some(Credentials::UserPassword(ref user, ref password)) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Some(Credentials::Token(ref token)) => options.token(token.clone()),
            None => options,
        };
        let client = tokio::time::timeout(CONNECT_TIMEOUT, options.connect(&servers.addresses))
            .await
            .map_err(|_| NatsError::ConnectTimeout {
                server: servers.display(),
                timeout_s: CONNECT_TIMEOUT.as_secs(),
            })?
            .map_err(|error| NatsError::Connect {
                server: servers.display(),
                // The kind only: the client's sources can quote the address it was given.
                reason: error.kind().to_string(),
            })?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(PUBLISH_TIMEOUT);

        let wanted = format!("{subject_prefix}.>");
        let config = StreamConfig {
            name: stream.to_owned(),
            subjects: vec![wanted.clone()],
            storage: StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        let found = jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|error| NatsError::Stream {
                stream: stream.to_owned(),
                reason: error.to_string(),
            })?;
        let subjects = &found.cached_info().config.subjects;
        if !subjects.iter().any(|p| pattern_covers(p, subject_prefix)) {
            return Err(NatsError::StreamSubjects {
                stream: stream.to_owned(),
                subjects: subjects.join(", "),
                wanted,
            });
        }
        tracing::info!(
            stream,
            subject_prefix,
            server = %servers.display(),
            "Publishing life events to NATS JetStream."
        );
        Ok(Self {
            jetstream,
            stream: stream.to_owned(),
            subject_prefix: subject_prefix.to_owned(),
        })
    }

    /// The stream events are stored in.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The subject an event of `event_type` is published to, or why that type cannot be one.
    pub fn subject(&self, event_type: &str) -> Result<String, NatsError> {
        if !is_plain_token(event_type) {
            return Err(NatsError::BadEventType {
                event_type: event_type.to_owned(),
            });
        }
        Ok(format!("{}.{event_type}", self.subject_prefix))
    }

    /// Publishes one event and waits until JetStream has stored it. Publishing the same
    /// `event_id` again within the duplicate window stores nothing new and still succeeds, so
    /// the dispatcher can retry freely.
    pub async fn publish(
        &self,
        event_type: &str,
        event_id: &str,
        body: Bytes,
    ) -> Result<(), NatsError> {
        let subject = self.subject(event_type)?;
        if event_id.is_empty() || event_id.chars().any(|c| c.is_control()) {
            return Err(NatsError::BadEventId);
        }
        let message = PublishMessage::build().payload(body).message_id(event_id);
        let publish = async {
            let pending = self
                .jetstream
                .send_publish(subject.clone(), message)
                .await?;
            pending.await
        };
        let timed_out = || NatsError::AckTimeout {
            subject: subject.clone(),
            timeout_ms: u64::try_from(PUBLISH_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        };
        let ack = match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(ack)) => ack,
            Ok(Err(error)) if error.kind() == PublishErrorKind::TimedOut => return Err(timed_out()),
            Ok(Err(error)) => {
                return Err(NatsError::Publish {
                    subject,
                    reason: error.to_string(),
                });
            }
            Err(_) => return Err(timed_out()),
        };
        if ack.stream != self.stream {
            return Err(NatsError::WrongStream {
                subject,
                expected: self.stream.clone(),
                actual: ack.stream,
            });
        }
        tracing::debug!(
            subject = %subject,
            stream_seq = ack.sequence,
            duplicate = ack.duplicate,
            "Life event published to JetStream."
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn takes_credentials_out_of_the_url() {
        let list =
            ServerList::parse("nats://civic:p%40ss@nats-1:4222, nats-2:4223").expect("a list");
        assert_eq!(list.addresses, ["nats://nats-1:4222", "nats://nats-2:4223"]);
        assert!(!list.display().contains("p%40ss") && !list.display().contains("civic"));
        match list.credentials {
            Some(Credentials::UserPassword(user, password)) => {
                assert_eq!((user.as_str(), password.as_str()), ("civic", "p@ss"));
            }
            _ => panic!("user and password expected"),
        }
        let token = ServerList::parse("tls://s3cr3t@nats.example:4443").expect("a token URL");
        assert_eq!(token.addresses, ["tls://nats.example:4443"]);
        assert!(matches!(token.credentials, Some(Credentials::Token(t)) if t == "s3cr3t"));
        let plain = ServerList::parse("127.0.0.1:4222").expect("a bare address");
        assert_eq!(plain.addresses, ["nats://127.0.0.1:4222"]);
        assert!(plain.credentials.is_none());
        for bad in ["", " , ", "nats://", "nats://user:pw@"] {
            assert_eq!(
                ServerList::parse(bad).err(),
                Some(NatsError::BadUrl),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn checks_prefixes_event_types_and_stream_subjects() {
        assert!(check_subject_prefix("civicgraph.events").is_ok());
        for bad in [
            "",
            "civicgraph.",
            ".events",
            "civic graph",
            "civicgraph.*",
            "a.>",
        ] {
            assert!(check_subject_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(is_plain_token("JobLost") && is_plain_token("job_lost-2"));
        for bad in ["", "Job.Lost", "Job*", ">", "Job Lost", "Jöb"] {
            assert!(!is_plain_token(bad), "{bad:?}");
        }
        let prefix = "civicgraph.events";
        for covering in [
            "civicgraph.events.>",
            "civicgraph.events.*",
            "civicgraph.>",
            "civicgraph.*.*",
            ">",
        ] {
            assert!(pattern_covers(covering, prefix), "{covering}");
        }
        for other in [
            "civicgraph.events",
            "civicgraph.events.JobLost",
            "civicgraph.*",
            "civicgraph.audit.>",
            "civicgraph.events.*.*",
        ] {
            assert!(!pattern_covers(other, prefix), "{other}");
        }
    }

    /// The test server's URL, or `None` (with the reason printed) when it is not configured.
    fn nats_url() -> Option<String> {
        match std::env::var("CIVICGRAPH_TEST_NATS_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!("CIVICGRAPH_TEST_NATS_URL is unset: skipping the NATS test");
                None
            }
        }
    }

    /// A stream name and subject prefix no other test run uses.
    fn unique_names() -> (String, String) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        (format!("CG_TEST_{id}"), format!("cgtest.{id}.events"))
    }

    #[tokio::test]
    async fn publishes_events_once_each_with_their_ids() {
        let Some(url) = nats_url() else { return };
        let (stream_name, prefix) = unique_names();
        let publisher = NatsPublisher::connect(&url, &stream_name, &prefix)
            .await
            .expect("connected");
        let sent = [
            (
                "JobLost",
                "evt_1",
                r#"{"type":"JobLost","data":{"id":"evt_1"}}"#,
            ),
            (
                "ChildBorn",
                "evt_2",
                r#"{"type":"ChildBorn","data":{"id":"evt_2"}}"#,
            ),
        ];
        // The checks run in their own task so the stream is deleted even when one fails.
        let checks = tokio::spawn({
            let publisher = publisher.clone();
            let (stream_name, prefix) = (stream_name.clone(), prefix.clone());
            async move {
                for (event_type, id, body) in sent {
                    publisher
                        .publish(event_type, id, Bytes::from_static(body.as_bytes()))
                        .await
                        .expect("published");
                }
                // A redelivery of the first event: acknowledged, not stored again.
                publisher
                    .publish("JobLost", "evt_1", Bytes::from_static(sent[0].2.as_bytes()))
                    .await
                    .expect("republished");

                let mut stream = publisher
                    .jetstream
                    .get_stream(&stream_name)
                    .await
                    .expect("the stream");
                let info = stream.info().await.expect("stream info");
                assert_eq!(info.state.messages, 2);
                assert_eq!(info.config.duplicate_window, DUPLICATE_WINDOW);
                assert_eq!(info.config.storage, StorageType::File);

                let consumer = stream
                    .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
                    .await
                    .expect("an ordered consumer");
                let mut messages = consumer.messages().await.expect("messages");
                for (event_type, id, body) in sent {
                    let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
                        .await
                        .expect("a message in time")
                        .expect("a message")
                        .expect("no consumer error");
                    assert_eq!(message.subject.as_str(), format!("{prefix}.{event_type}"));
                    let headers = message.headers.as_ref().expect("headers");
                    assert_eq!(headers.get("Nats-Msg-Id").map(|v| v.as_str()), Some(id));
                    assert_eq!(message.payload.as_ref(), body.as_bytes());
                }
            }
        })
        .await;
        publisher
            .jetstream
            .delete_stream(&stream_name)
            .await
            .expect("stream deleted");
        if let Err(failed) = checks {
            std::panic::resume_unwind(failed.into_panic());
        }
    }

    #[tokio::test]
    async fn refuses_bad_event_types_and_foreign_streams() {
        let Some(url) = nats_url() else { return };
        let (stream_name, prefix) = unique_names();
        let publisher = NatsPublisher::connect(&url, &stream_name, &prefix)
            .await
            .expect("connected");
        let refused = publisher
            .publish("Job.Lost", "evt_1", Bytes::from_static(b"{}"))
            .await;
        assert_eq!(
            refused,
            Err(NatsError::BadEventType {
                event_type: "Job.Lost".into()
            })
        );
        // The same stream name asked for with another prefix: kept as it is, and refused.
        let other = NatsPublisher::connect(&url, &stream_name, "cgtest.elsewhere").await;
        publisher
            .jetstream
            .delete_stream(&stream_name)
            .await
            .expect("stream deleted");
        assert!(
            matches!(other, Err(NatsError::StreamSubjects { .. })),
            "{other:?}"
        );
    }

    #[tokio::test]
    async fn reports_an_unreachable_server_without_its_password() {
        // Port 1 on loopback: nothing listens, so the connection is refused at once.
        let error = NatsPublisher::connect(
            "nats://civic:hunter2@127.0.0.1:1",
            "CG_UNUSED",
            "cgtest.unused",
        )
        .await
        .expect_err("nothing listens on port 1");
        let message = error.to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            matches!(
                error,
                NatsError::Connect { .. } | NatsError::ConnectTimeout { .. }
            ),
            "{error:?}"
        );
    }
}
