//! How fast the mainframe record codec is, on the shipped benefits copybooks.
//!
//! Run with `cargo bench --bench mainframe`. It builds the records the simulated benefits
//! mainframe sends for 10 000 synthetic citizens — the online inquiry response
//! (`BNQ-RESPONSE`: a header and 1–3 program cases behind an `OCCURS … DEPENDING ON`, with
//! packed and signed zoned decimals, binary, 88-level enums, dates and a three-way
//! `REDEFINES`) and the nightly payment extract record (`BENEFIT-PAYMENT`) — then decodes each
//! set over and over for a fixed time, with the codec options read from the shipped connector
//! files.
//!
//! The baseline, measured in the same run on the same data: `serde_json` parsing the JSON the
//! decoder produces, i.e. what the same records would cost if the backend spoke JSON. A
//! second table shows encoding (request and extract records).
//!
//! Without `--bench` on the command line (`cargo test --benches`), each measurement runs for
//! 50 ms, to prove the benchmark works without taking CI's time.

#![allow(clippy::print_stdout, reason = "a benchmark's output is its figures")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use civicgraph::connectors::mainframe::RecordCodec;
use civicgraph::demo::Population;
use civicgraph::demo::benefits::{
    BenefitsCodecs, CASE_CONNECTOR, CASE_COPYBOOK, PAYMENT_CONNECTOR, PAYMENT_COPYBOOK,
    TRANSACTION, connector_codec,
};
use serde_json::{Map, Value};

const CITIZENS: usize = 10_000;

fn main() -> Result<()> {
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let budget = if smoke {
        Duration::from_millis(50)
    } else {
        Duration::from_secs(3)
    };
    let population = Population::generate(CITIZENS, 42);
    let records = population.benefits();
    let simulator = BenefitsCodecs::new().map_err(|e| anyhow!("{e}"))?;

    let responses: Vec<Vec<u8>> = records
        .holders()
        .iter()
        .map(|(_, case)| simulator.answer(records, &simulator.request(TRANSACTION, case)))
        .collect();
    let payments: Vec<Vec<u8>> = records
        .all_payments()
        .map(|p| simulator.payment_record(p))
        .collect();
    ensure!(!responses.is_empty() && !payments.is_empty(), "no records");

    let response_codec = codec(CASE_CONNECTOR, CASE_COPYBOOK, "BNQ-RESPONSE")?;
    let payment_codec = codec(PAYMENT_CONNECTOR, PAYMENT_COPYBOOK, "BENEFIT-PAYMENT")?;

    // The same data as JSON documents, for the baseline; also proves every record decodes.
    let response_json = as_json(&response_codec, &responses)?;
    let payment_json = as_json(&payment_codec, &payments)?;

    println!(
        "mainframe codec: {} inquiry responses ({} B average), {} payment records (48 B); {} s per row{}",
        responses.len(),
        responses.iter().map(Vec::len).sum::<usize>() / responses.len(),
        payments.len(),
        budget.as_secs_f64(),
        if smoke {
            " (smoke run, not a measurement)"
        } else {
            ""
        }
    );
    println!();
    println!("| records | path | records/s | MB/s | ns/record |");
    println!("|---|---|---:|---:|---:|");
    let rows = [
        (
            "inquiry response",
            "EBCDIC decode",
            run(budget, &responses, |r| response_codec.decode(r).map(drop)),
        ),
        (
            "inquiry response",
            "JSON parse (baseline)",
            run(budget, &response_json, |r| {
                serde_json::from_slice::<Value>(r).map(drop)
            }),
        ),
        (
            "payment (extract)",
            "EBCDIC decode",
            run(budget, &payments, |r| payment_codec.decode(r).map(drop)),
        ),
        (
            "payment (extract)",
            "JSON parse (baseline)",
            run(budget, &payment_json, |r| {
                serde_json::from_slice::<Value>(r).map(drop)
            }),
        ),
    ];
    for (records, path, measured) in rows {
        let measured = measured?;
        println!(
            "| {records} | {path} | {:.0} | {:.1} | {:.0} |",
            measured.per_second(),
            measured.megabytes_per_second(),
            measured.nanos_per_record()
        );
    }

    // Encoding: the request the gateway sends, and the extract records the batch job writes.
    let request_values: Vec<Map<String, Value>> = records
        .holders()
        .iter()
        .map(|(_, case)| {
            let mut values = Map::new();
            values.insert("BNQ-TRAN-CODE".into(), Value::from(TRANSACTION));
            values.insert("BNQ-CASE-NUMBER".into(), Value::from(case.as_str()));
            values
        })
        .collect();
    let request_codec = codec(CASE_CONNECTOR, CASE_COPYBOOK, "BNQ-REQUEST")?;
    let encoded = run_values(budget, &request_values, |v| {
        request_codec.encode(v).map(|bytes| bytes.len())
    })?;
    println!();
    println!("| encode | records/s | MB/s | ns/record |");
    println!("|---|---:|---:|---:|");
    println!(
        "| inquiry request (40 B) | {:.0} | {:.1} | {:.0} |",
        encoded.per_second(),
        encoded.megabytes_per_second(),
        encoded.nanos_per_record()
    );
    Ok(())
}

/// The codec the shipped connector file decodes `record` with.
fn codec(connector: &str, copybook: &str, record: &str) -> Result<RecordCodec> {
    connector_codec(connector, copybook, record).map_err(|e| anyhow!("{record}: {e}"))
}

fn as_json(codec: &RecordCodec, records: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let decoded = codec
                .decode(record)
                .map_err(|e| anyhow!("record {i} does not decode: {e}"))?;
            Ok(serde_json::to_vec(&Value::Object(decoded))?)
        })
        .collect()
}

/// Records processed, bytes and time taken.
struct Measured {
    records: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    fn nanos_per_record(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.records as f64
    }
}

/// Runs `work` over `inputs`, round after round, until `budget` has passed.
fn run<E: std::fmt::Display>(
    budget: Duration,
    inputs: &[Vec<u8>],
    work: impl Fn(&[u8]) -> Result<(), E>,
) -> Result<Measured> {
    let (mut records, mut bytes) = (0_u64, 0_u64);
    let started = Instant::now();
    while started.elapsed() < budget {
        for input in inputs {
            work(black_box(input)).map_err(|e| anyhow!("{e}"))?;
        }
        records += inputs.len() as u64;
        bytes += inputs.iter().map(|i| i.len() as u64).sum::<u64>();
    }
    Ok(Measured {
        records,
        bytes,
        elapsed: started.elapsed(),
    })
}

fn run_values<E: std::fmt::Display>(
    budget: Duration,
    inputs: &[Map<String, Value>],
    work: impl Fn(&Map<String, Value>) -> Result<usize, E>,
) -> Result<Measured> {
    let (mut records, mut bytes) = (0_u64, 0_u64);
    let started = Instant::now();
    while started.elapsed() < budget {
        for input in inputs {
            bytes += work(black_box(input)).map_err(|e| anyhow!("{e}"))? as u64;
        }
        records += inputs.len() as u64;
    }
    Ok(Measured {
        records,
        bytes,
        elapsed: started.elapsed(),
    })
}
