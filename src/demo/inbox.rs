//! The agencies' webhook inboxes: in the demo, each agency subscribes to life events with a
//! webhook here, and every event received is checked against its Standard Webhooks signature and
//! kept for `GET /inbox`, so a developer sees what each agency is sent (and, for the benefits
//! agency, what the consent filter holds back).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::events::signature::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSecret};
use crate::events::{NewSubscriber, Outbox, OutboxError};

/// How many events each inbox keeps.
const KEEP: usize = 50;

/// The agencies that subscribe, each for one purpose of the catalogue.
pub const SUBSCRIBERS: &[(&str, &str)] = &[
    ("registry", "benefit-eligibility"),
    ("ui", "unemployment-claim"),
    ("dmv", "benefit-eligibility"),
    ("benefits", "benefit-eligibility"),
];

#[derive(Default)]
struct Boxes {
    secrets: HashMap<String, WebhookSecret>,
    received: BTreeMap<String, VecDeque<Value>>,
}

/// The inbox server.
pub struct AgencyInboxes {
    /// Where it listens.
    pub addr: SocketAddr,
    boxes: Arc<Mutex<Boxes>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for AgencyInboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgencyInboxes")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock(boxes: &Mutex<Boxes>) -> std::sync::MutexGuard<'_, Boxes> {
    boxes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn receive(
    State(boxes): State<Arc<Mutex<Boxes>>>,
    Path(agency): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut boxes = lock(&boxes);
    let Some(secret) = boxes.secrets.get(&agency) else {
        return StatusCode::NOT_FOUND;
    };
    let verified = secret
        .verify(
            &header(ID_HEADER),
            &header(TIMESTAMP_HEADER),
            &header(SIGNATURE_HEADER),
            body.as_bytes(),
            chrono::Utc::now().timestamp(),
            300,
        )
        .is_ok();
    if !verified {
        return StatusCode::BAD_REQUEST;
    }
    let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let entry = json!({
        "webhookId": header(ID_HEADER),
        "signatureVerified": true,
        "type": event["type"],
        "data": event["data"],
    });
    let inbox = boxes.received.entry(agency).or_default();
    // A redelivery carries the same id: keep one.
    if !inbox.iter().any(|e| e["webhookId"] == entry["webhookId"]) {
        inbox.push_front(entry);
        inbox.truncate(KEEP);
    }
    StatusCode::NO_CONTENT
}

async fn list(State(boxes): State<Arc<Mutex<Boxes>>>) -> axum::Json<Value> {
    let boxes = lock(&boxes);
    let mut out = serde_json::Map::new();
    for (agency, _) in SUBSCRIBERS {
        let events: Vec<Value> = boxes
            .received
            .get(*agency)
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default();
        out.insert((*agency).to_string(), Value::Array(events));
    }
    axum::Json(Value::Object(out))
}

impl AgencyInboxes {
    /// Starts the inbox server on a loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let boxes = Arc::new(Mutex::new(Boxes::default()));
        let app = Router::new()
            .route("/hooks/{agency}", post(receive))
            .route("/inbox", get(list))
            .with_state(Arc::clone(&boxes));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "The demo's agency inboxes stopped.");
            }
        });
        Ok(Self { addr, boxes, task })
    }

    /// `GET` this to see what each agency received.
    pub fn url(&self) -> String {
        format!("http://{}/inbox", self.addr)
    }

    /// Registers one webhook subscriber per agency in [`SUBSCRIBERS`] in the gateway's outbox,
    /// each with a fresh secret this server verifies with.
    pub async fn subscribe(&self, outbox: &Outbox) -> Result<(), OutboxError> {
        for (agency, purpose) in SUBSCRIBERS {
            let Ok(secret) = WebhookSecret::generate() else {
                continue;
            };
            outbox
                .add_subscriber(NewSubscriber {
                    agency: (*agency).to_string(),
                    purpose: (*purpose).to_string(),
                    endpoint: format!("http://{}/hooks/{agency}", self.addr),
                    secret: secret.expose(),
                    event_types: Vec::new(),
                    created_by: "civicgraph demo".to_string(),
                })
                .await?;
            lock(&self.boxes)
                .secrets
                .insert((*agency).to_string(), secret);
        }
        Ok(())
    }

    /// Stops the server.
    pub fn shutdown(self) {
        self.task.abort();
    }
}
