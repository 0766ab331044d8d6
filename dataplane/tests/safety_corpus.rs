#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Detection quality on the labelled corpus in `safety-corpus/`: precision and recall per
//! detector. Fails when recall on PII or secret positives drops below 99% for any detector,
//! or when more than 1% of the lines that hold no PII or secret trigger a PII or secret
//! detector. Prompt-injection recall and false-positive rate are printed (and held to a
//! looser floor, so a regression still shows).
//!
//! Run with `cargo test -p tollgate-dataplane --test safety_corpus -- --nocapture` to see
//! the table.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use tollgate_crds::safety::{Detector, SafetyPolicy, compile_safety};
use tollgate_dataplane::safety::{Category, SafetyEngine, Stage};

#[derive(Deserialize)]
struct Line {
    text: String,
    expect: Vec<String>,
}

const FILES: [&str; 4] = ["pii.jsonl", "secrets.jsonl", "negatives.jsonl", "injection.jsonl"];

fn load() -> Vec<(String, Line)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/safety-corpus");
    let mut lines = Vec::new();
    for f in FILES {
        let text = std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let line: Line = serde_json::from_str(l).unwrap_or_else(|e| panic!("{f}:{}: {e}", i + 1));
            for id in &line.expect {
                assert!(
                    id == "injection" || Detector::from_id(id).is_some(),
                    "{f}:{}: unknown id {id}",
                    i + 1
                );
            }
            lines.push((format!("{f}:{}", i + 1), line));
        }
    }
    lines
}

fn engine() -> SafetyEngine {
    let yaml = r#"
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: corpus}
spec:
  input:
    detectors:
      - {id: "*", action: log}
    injection: {action: log}
"#;
    let p: SafetyPolicy = serde_yaml::from_str(yaml).unwrap();
    SafetyEngine::new(&compile_safety(&[p]).unwrap()).unwrap()
}

#[derive(Default)]
struct Counts {
    tp: usize,
    fn_: usize,
    fp: usize,
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 { 100.0 } else { 100.0 * n as f64 / d as f64 }
}

#[test]
fn detection_quality_on_the_corpus() {
    let lines = load();
    assert!(lines.len() >= 500, "the corpus has {} lines", lines.len());
    let engine = engine();
    let set = engine.policy("default/corpus").unwrap();
    let mut per: BTreeMap<String, Counts> = BTreeMap::new();
    let (mut neg_lines, mut neg_fp) = (0, 0);
    let (mut inj_pos, mut inj_tp, mut inj_neg, mut inj_fp) = (0, 0, 0, 0);
    let mut misses = Vec::new();
    for (at, line) in &lines {
        let v = set.check_text(&line.text, Stage::Input);
        let mut found = BTreeSet::new();
        for f in &v.findings {
            match f.category {
                Category::Pii | Category::Secret => {
                    found.insert(f.rule.to_string());
                }
                Category::Injection => {
                    found.insert("injection".to_owned());
                }
                other => panic!("{at}: unexpected finding category {other:?}"),
            }
        }
        let expect: BTreeSet<String> = line.expect.iter().cloned().collect();
        for d in Detector::ALL.map(Detector::as_str) {
            let c = per.entry(d.to_owned()).or_default();
            match (expect.contains(d), found.contains(d)) {
                (true, true) => c.tp += 1,
                (true, false) => {
                    c.fn_ += 1;
                    misses.push(format!("{at}: missed {d}"));
                }
                (false, true) => {
                    c.fp += 1;
                    misses.push(format!("{at}: false {d}"));
                }
                _ => {}
            }
        }
        let expects_data = expect.iter().any(|e| e != "injection");
        if !expects_data {
            neg_lines += 1;
            if found.iter().any(|f| f != "injection") {
                neg_fp += 1;
            }
        }
        let (want, got) = (expect.contains("injection"), found.contains("injection"));
        if want {
            inj_pos += 1;
            inj_tp += usize::from(got);
            if !got {
                misses.push(format!("{at}: missed injection"));
            }
        } else {
            inj_neg += 1;
            inj_fp += usize::from(got);
            if got {
                misses.push(format!("{at}: false injection"));
            }
        }
    }
    println!("\n{:<28} {:>5} {:>4} {:>4} {:>9} {:>9}", "detector", "pos", "fn", "fp", "recall%", "precis%");
    let mut failures = Vec::new();
    for (d, c) in &per {
        let recall = pct(c.tp, c.tp + c.fn_);
        let precision = pct(c.tp, c.tp + c.fp);
        println!("{d:<28} {:>5} {:>4} {:>4} {recall:>9.1} {precision:>9.1}", c.tp + c.fn_, c.fn_, c.fp);
        if c.tp + c.fn_ == 0 {
            failures.push(format!("{d}: no positives in the corpus"));
        } else if recall < 99.0 {
            failures.push(format!("{d}: recall {recall:.1}% < 99%"));
        }
    }
    let fp_rate = pct(neg_fp, neg_lines);
    println!("PII/secret false positives on {neg_lines} lines without any: {neg_fp} ({fp_rate:.2}%)");
    let inj_recall = pct(inj_tp, inj_pos);
    let inj_fp_rate = pct(inj_fp, inj_neg);
    println!(
        "prompt injection: recall {inj_recall:.1}% ({inj_tp}/{inj_pos}), false positives {inj_fp_rate:.2}% ({inj_fp}/{inj_neg})"
    );
    for m in &misses {
        println!("  {m}");
    }
    if fp_rate > 1.0 {
        failures.push(format!("false-positive rate {fp_rate:.2}% > 1%"));
    }
    if inj_recall < 85.0 || inj_fp_rate > 3.0 {
        failures.push(format!("prompt injection regressed: recall {inj_recall:.1}%, FP {inj_fp_rate:.2}%"));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
