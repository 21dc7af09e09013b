//! `civicgraph audit verify` as an operator runs it: exit 0 with a summary on an intact chain,
//! exit 1 naming the record an administrator edited behind the triggers' back, and exit 2
//! without creating anything when the signing key is missing.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use civicgraph::audit::{AuditLog, AuditRecord, Decision, write_checkpoint};
use civicgraph::config::StorageConfig;
use civicgraph::identity::CitizenId;
use civicgraph::signing::SigningKey;
use civicgraph::store::Store;

fn verify(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_civicgraph"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .env_remove("CIVICGRAPH_CONFIG")
        .output()
        .expect("run civicgraph audit verify")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn record(n: u32) -> AuditRecord {
    AuditRecord {
        at: Utc
            .with_ymd_and_hms(2026, 11, 22, 9, 30, n)
            .single()
            .unwrap(),
        request_id: format!("req-{n}"),
        principal: "agency:dmv-portal".to_string(),
        agency: Some("dmv".to_string()),
        citizen: CitizenId::parse("C0000001").unwrap(),
        categories: ["dmv.license".to_string()].into(),
        fields: ["Citizen.driverLicense".to_string()].into(),
        purpose: Some("licence-renewal".to_string()),
        decision: Decision::Allowed,
        basis: Some("legal basis: Motor Vehicle Act s. 12".to_string()),
    }
}

#[tokio::test]
async fn audit_verify_passes_an_intact_chain_and_names_an_edited_record() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("civicgraph.db").display()
    );
    let config = dir.path().join("civicgraph.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nurl = \"{url}\"\nmax_connections = 2\n\n\
             [trust]\nsigning_key = \"keys/signing.pem\"\n\n\
             [audit]\ncheckpoint_file = \"audit/checkpoints.jsonl\"\n"
        ),
    )
    .unwrap();

    // Before any key exists, verify refuses and creates none.
    let output = verify(&config);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("signing_key"),
        "{}",
        text(&output.stderr)
    );
    assert!(!dir.path().join("keys/signing.pem").exists());

    let key = SigningKey::load_or_create(&dir.path().join("keys/signing.pem")).unwrap();
    let store = Store::connect(&StorageConfig {
        url: url.clone(),
        max_connections: 2,
    })
    .await
    .unwrap();
    let log = AuditLog::new(store.clone(), Duration::from_secs(5));
    log.append(vec![record(1), record(2)]).await.unwrap();
    log.append(vec![record(3)]).await.unwrap();
    let head = write_checkpoint(&log, &key, &dir.path().join("audit/checkpoints.jsonl"))
        .await
        .unwrap()
        .expect("a checkpoint of the new head");
    store.close().await;

    let output = verify(&config);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!(
            "audit chain OK: 3 records, 1 checkpoints, head 3 {}",
            &head.hash[..16]
        )
    );

    // An administrator drops the trigger and rewrites why record 2 was read.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "DROP TRIGGER audit_records_no_update; \
         UPDATE audit_records SET purpose = 'none of your business' WHERE seq = 2;",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let output = verify(&config);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "audit chain BROKEN at record 2: record 2 does not match its hash: it was changed after it was written"
    );
    assert!(
        !stdout.contains("none of your business") && !stdout.contains("C0000001"),
        "no record contents in the output: {stdout}"
    );
}

#[tokio::test]
async fn audit_verify_says_when_there_is_no_checkpoint_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("audit.db").display()
    );
    let config = dir.path().join("civicgraph.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nurl = \"{url}\"\n[trust]\nsigning_key = \"signing.pem\"\n\
             [audit]\ncheckpoint_file = \"checkpoints.jsonl\"\n"
        ),
    )
    .unwrap();
    SigningKey::load_or_create(&dir.path().join("signing.pem")).unwrap();

    let output = verify(&config);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("no checkpoint file at"), "{stdout}");
    assert!(
        stdout.contains("audit chain OK: 0 records, 0 checkpoints, head 0 0000000000000000"),
        "{stdout}"
    );
}
