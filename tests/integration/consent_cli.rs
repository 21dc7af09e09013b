//! `civicgraph consent verify`: the real binary checks a receipt the library issued, with the key
//! `[trust] signing_key` names relative to the configuration file, and refuses a tampered one.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use civicgraph::config::GatewayConfig;
use civicgraph::consent::{Consent, ConsentState, ReceiptAction, receipt};
use civicgraph::identity::CitizenId;
use civicgraph::signing::SigningKey;

const TRUST: &str = r#"
[trust]
signing_key = "keys/receipts.pem"
[trust.purposes]
benefit-eligibility = "checking your eligibility for benefits"
[trust.categories]
"dmv.license" = "your driver's licence"
[trust.agencies.dmv]
name = "the Motor Vehicle Agency"
"#;

/// Runs `civicgraph consent verify` from `cwd` (not the config's directory, so the key path
/// must be resolved against the config file), feeding `stdin`.
fn verify(cwd: &Path, args: &[&std::ffi::OsStr], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_civicgraph"))
        .args(["consent", "verify"])
        .args(args)
        .current_dir(cwd)
        .env_remove("CIVICGRAPH_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start civicgraph consent verify");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for civicgraph")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn consent_verify_prints_the_summary_and_refuses_a_tampered_receipt() {
    let project = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = project.path().join("civicgraph.toml");
    std::fs::write(&config, TRUST).unwrap();
    let key = SigningKey::load_or_create(&project.path().join("keys/receipts.pem")).unwrap();
    let trust = toml::from_str::<GatewayConfig>(TRUST).unwrap().trust;

    let granted = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let consent = Consent {
        handle: "cns_0123456789abcdef0123456789abcdef".to_string(),
        citizen: CitizenId::parse("C0000001").unwrap(),
        grantee: "dmv".to_string(),
        categories: ["dmv.license".to_string()].into(),
        purpose: "benefit-eligibility".to_string(),
        valid_from: granted,
        valid_until: granted + chrono::Duration::days(30),
        state: ConsentState::Active,
        granted_at: granted,
        changed_at: granted,
    };
    let jws = receipt::issue(&key, &trust, &consent, ReceiptAction::Granted, granted).unwrap();
    let file = project.path().join("receipt.jws");
    std::fs::write(&file, format!("{jws}\n")).unwrap();

    let config_arg = config.as_os_str();
    let ok = verify(
        elsewhere.path(),
        &["--config".as_ref(), config_arg, file.as_os_str()],
        "",
    );
    let stdout = text(&ok.stdout);
    assert!(ok.status.success(), "{stdout}{}", text(&ok.stderr));
    assert!(
        stdout.starts_with(
            "C0000001 granted the Motor Vehicle Agency access to your driver's licence for \
             checking your eligibility for benefits.\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("until 2026-12-22 10:00:00 UTC"), "{stdout}");

    // The same receipt on standard input, with and without `-`.
    for args in [
        vec!["--config".as_ref(), config_arg, "-".as_ref()],
        vec!["--config".as_ref(), config_arg],
    ] {
        let piped = verify(elsewhere.path(), &args, &jws);
        assert!(piped.status.success(), "{}", text(&piped.stderr));
        assert_eq!(text(&piped.stdout), stdout);
    }

    // Ten more days of consent, written into the payload: refused, in one line.
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts: Vec<String> = jws.split('.').map(str::to_string).collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
    claims["validUntil"] = (claims["validUntil"].as_i64().unwrap() + 10 * 86_400).into();
    parts[1] = engine.encode(serde_json::to_vec(&claims).unwrap());
    let tampered = project.path().join("tampered.jws");
    std::fs::write(&tampered, parts.join(".")).unwrap();
    let refused = verify(
        elsewhere.path(),
        &["--config".as_ref(), config_arg, tampered.as_os_str()],
        "",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(text(&refused.stdout), "");
    assert_eq!(
        text(&refused.stderr),
        "receipt refused: the signature does not match: the document was altered or not signed \
         by this key\n"
    );

    // Verifying never makes a key: a missing one is an error that names it.
    std::fs::remove_file(project.path().join("keys/receipts.pem")).unwrap();
    let no_key = verify(
        elsewhere.path(),
        &["--config".as_ref(), config_arg, file.as_os_str()],
        "",
    );
    assert_eq!(no_key.status.code(), Some(2));
    let stderr = text(&no_key.stderr);
    assert!(stderr.contains("receipts.pem does not exist"), "{stderr}");
    assert!(!project.path().join("keys/receipts.pem").exists());
}
