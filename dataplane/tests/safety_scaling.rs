//! The safety scan is linear in its input, whatever the input is made of (issue 17, item 1).
//!
//! For every detector family an adversarial text (nothing but near-matches, separators or
//! anchors) is checked at 128 KiB and at 2 MiB — 16 times the input — with every detector, the
//! injection scorer and a custom pattern on. A linear scan takes about 16 times as long; a
//! quadratic one about 256 times. The test fails above 40 times (room for a noisy machine and
//! cache effects), and prints the table (`-- --nocapture`) with the time per MiB.
//!
//! NB: ratios within one process, not absolute times: this machine is shared and noisy.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_crds::safety::{SafetyPolicy, compile_safety};
use tollgate_dataplane::safety::{PolicySet, SafetyEngine, Subject, SubjectKind, Wire};

const POLICY: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: everything, namespace: ai}
spec:
  input:
    detectors:
      - {id: "pii.*", action: redact}
      - {id: "secrets.*", action: log}
    injection: {threshold: 100000, action: log}
    custom:
      regex:
        - {id: acme, pattern: 'ACME-[0-9]{6}', action: redact}
      terms:
        - {id: words, terms: [project falcon, internal only], action: log}
"#;

fn policies() -> Arc<PolicySet> {
    let p: SafetyPolicy = serde_yaml::from_str(POLICY).unwrap();
    let engine = SafetyEngine::new(&compile_safety(&[p]).unwrap()).unwrap();
    engine.policies_for(&Subject {
        kind: SubjectKind::Developer,
        name: "alice".into(),
        team: None,
        namespace: None,
    })
}

/// Inputs built to make a scanner work hard: each is `unit` repeated.
const ADVERSARIAL: &[(&str, &str)] = &[
    ("emails", "a.b@c.de "),
    ("at signs", "@"),
    ("address-like, no domain", "a.b.c@"),
    ("dots", "."),
    ("long local parts", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."),
    ("digits", "1"),
    ("digit groups", "1 "),
    ("dotted digits", "1."),
    ("phone-like", "+1 (415) 555-0100 "),
    ("card-like", "4111 1111 1111 1111 "),
    ("iban-like", "DE89 3704 "),
    ("colons", ":"),
    ("ipv6-like", "a:b:"),
    ("assignments", "password="),
    ("key-value chains", "token: "),
    ("nested brackets", "[{("),
    ("pem headers without footers", "-----BEGIN PRIVATE KEY-----\n"),
    ("jwt-like", "eyJhbGciOi."),
    ("secret prefixes", "sk-ant-api03-"),
    ("aws prefixes", "AKIA"),
    ("bearer", "Bearer "),
    ("injection words", "ignore previous "),
    ("custom pattern near-miss", "ACME-12345 "),
    ("term prefixes", "project "),
    ("non-ascii addresses", "jürgen@bücher.de "),
    ("cjk", "请发到"),
];

fn body(unit: &str, bytes: usize) -> Value {
    let text = unit.repeat(bytes / unit.len() + 1);
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    json!({"model": "m", "messages": [{"role": "user", "content": &text[..end]}]})
}

/// The best of a few runs (the least disturbed by other work on the machine).
fn time(set: &PolicySet, body: &Value, runs: usize) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            let v = set.check_request(body, Wire::OpenAi);
            std::hint::black_box(v);
            t.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn every_detector_scans_in_linear_time() {
    let set = policies();
    const SMALL: usize = 128 << 10;
    const LARGE: usize = 2 << 20;
    let mut failures = Vec::new();
    println!("{:<30} {:>12} {:>12} {:>7} {:>10}", "input", "128 KiB", "2 MiB", "ratio", "ms/MiB");
    for (name, unit) in ADVERSARIAL {
        let (small, large) = (body(unit, SMALL), body(unit, LARGE));
        let t_small = time(&set, &small, 5);
        let t_large = time(&set, &large, 2);
        // Below a millisecond the small run is mostly fixed cost: compare with a floor.
        let ratio = t_large.as_secs_f64() / t_small.as_secs_f64().max(0.000_5);
        println!(
            "{name:<30} {:>10.2}ms {:>10.2}ms {ratio:>7.1} {:>10.2}",
            t_small.as_secs_f64() * 1e3,
            t_large.as_secs_f64() * 1e3,
            t_large.as_secs_f64() * 1e3 / 2.0,
        );
        if ratio > 40.0 {
            failures.push(format!("{name}: 16x the input took {ratio:.0}x the time"));
        }
    }
    assert!(failures.is_empty(), "superlinear scans: {failures:#?}");
}
