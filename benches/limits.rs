//! What the request limits cost a request: the token scan of the text and the limit walk of
//! the parsed document, on the README's first query (a citizen joined with every agency,
//! through two fragments) and on a page of 100 citizens; parsing is shown beside them, since
//! the limits run on every request that the document cache does not answer (the scan) or
//! every request (the walk).
//!
//! Run with `cargo bench --bench limits`. Without `--bench` on the command line
//! (`cargo test --benches`), each measurement runs for 50 ms, to prove the benchmark works.

#![allow(clippy::print_stdout, reason = "a benchmark's output is its figures")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use async_graphql::Variables;
use async_graphql::parser::parse_query;
use async_graphql::parser::types::OperationType;
use civicgraph::config::LimitsConfig;
use civicgraph::graph::limits::{RequestLimits, Shapes, check};
use civicgraph::graph::{LexLimits, scan};

const FIRST_QUERY: &str = r#"query Me {
  me {
    id
    name
    birthDate
    address { street city postalCode }
    taxAccount { ...Tax }
    driverLicense { number class status expiresOn }
    vehicles { plate make model year }
    unemploymentClaims { status filedOn weeklyBenefit }
    ...Benefits
  }
}
fragment Tax on TaxAccount { balance filingStatus assessments { year assessed paid } }
fragment Benefits on Citizen {
  benefitCases { program caseStatus monthlyAmount balanceDue payMethod card { last4 } }
  benefitPayments { issuedOn amount status }
}"#;

const PAGE_QUERY: &str = r#"query Page($ids: [ID!]!) {
  citizens(ids: $ids) {
    id name
    taxAccount { balance filingStatus }
    driverLicense { number status }
    unemploymentClaims { status weeklyBenefit }
    benefitCases { program monthlyAmount }
  }
}"#;

fn shapes() -> Shapes {
    let citizen = [
        ("id", "ID", false, false),
        ("name", "String", false, false),
        ("birthDate", "Date", false, false),
        ("address", "Address", false, false),
        ("taxAccount", "TaxAccount", false, true),
        ("driverLicense", "DriverLicense", false, true),
        ("vehicles", "Vehicle", true, true),
        ("unemploymentClaims", "Claim", true, true),
        ("benefitCases", "BenefitCase", true, true),
        ("benefitPayments", "BenefitPayment", true, true),
    ];
    let mut shapes = Shapes::default()
        .root(OperationType::Query, "Query")
        .field("Query", "me", "Citizen", false, false)
        .field("Query", "citizens", "Citizen", true, true)
        .field("TaxAccount", "assessments", "Assessment", true, false)
        .field("BenefitCase", "card", "Card", false, false);
    for (name, ty, list, backend) in citizen {
        shapes = shapes.field("Citizen", name, ty, list, backend);
    }
    shapes
}

fn measure(label: &str, budget: Duration, mut run: impl FnMut()) {
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            run();
        }
        rounds += 100;
    }
    let nanos = start.elapsed().as_nanos() / u128::from(rounds);
    println!("{label:<40} {nanos:>8} ns");
}

fn main() {
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let budget = if smoke {
        Duration::from_millis(50)
    } else {
        Duration::from_secs(2)
    };
    let limits = RequestLimits {
        limits: LimitsConfig::default(),
        max_depth: 32,
        introspection: true,
    };
    let shapes = shapes();
    let ids: Vec<String> = (0..100).map(|i| format!("C{i:07}")).collect();
    let page_variables = Variables::from_json(serde_json::json!({ "ids": ids }));
    for (name, query, variables) in [
        ("first query", FIRST_QUERY, Variables::default()),
        ("page of 100", PAGE_QUERY, page_variables),
    ] {
        let document = parse_query(query).expect("the bench query parses");
        let estimate = check(&document, None, &variables, &shapes, &limits)
            .expect("the bench query is within the limits");
        println!("{name}: {estimate:?}");
        measure(&format!("{name}: token scan"), budget, || {
            black_box(scan(black_box(query), LexLimits::default()).ok());
        });
        measure(&format!("{name}: limit walk"), budget, || {
            black_box(check(black_box(&document), None, &variables, &shapes, &limits).ok());
        });
        measure(&format!("{name}: parse (for scale)"), budget, || {
            black_box(parse_query(black_box(query)).ok());
        });
    }
}
