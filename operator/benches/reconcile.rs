#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark")]
//! Reconcile cost of the configuration: 1,000 Budgets + 100 SafetyPolicies + 20 IPTokens
//! compiled into one `DataPlaneConfig` and rendered into its ConfigMap and provider-key
//! Secret — everything the DataPlane controller computes per reconcile — against a
//! baseline of 10 Budgets + 1 SafetyPolicy + 2 IPTokens in the same run. Also reports the
//! process's peak RSS (VmHWM) after the large case.
//!
//! `cargo bench -p tollgate-operator --bench reconcile`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::json;
use tollgate_crds::safety::SafetyPolicy;
use tollgate_crds::{Budget, DataPlane, IpToken};
use tollgate_operator::controllers::Owner;
use tollgate_operator::controllers::configuration::{ClusterResources, compile_cluster};
use tollgate_operator::controllers::gateway_config::{SecretData, config_map, provider_keys_secret};

fn meta(name: &str, ns: &str) -> serde_json::Value {
    json!({"name": name, "namespace": ns, "uid": format!("uid-{name}"), "generation": 1})
}

/// `budgets` Budgets (a tenth are team budgets, the rest developers under them), `policies`
/// SafetyPolicies with detectors, two custom regexes and tool rules, `tokens` IPTokens with
/// five models each (half with a Secret).
fn cluster(budgets: usize, policies: usize, tokens: usize) -> (ClusterResources, SecretData) {
    let teams = (budgets / 10).max(1);
    let mut r = ClusterResources::default();
    let mut secrets = SecretData::new();
    for t in 0..tokens {
        let models: Vec<_> = (0..5)
            .map(|m| json!({"name": format!("model-{}", (t + m) % 25), "prices": {"inputPerMtok": "0.15", "outputPerMtok": "0.60"}}))
            .collect();
        let mut spec = json!({"provider": "openai-compatible", "baseUrl": format!("http://vllm-{t}:8000/v1"), "models": models});
        if t % 2 == 0 {
            let name = format!("key-{t}");
            spec["secretRef"] = json!({"name": name, "key": "apiKey"});
            secrets.insert(
                ("ns".into(), name),
                BTreeMap::from([("apiKey".to_owned(), format!("sk-{t:032}").into_bytes())]),
            );
        }
        let token: IpToken =
            serde_json::from_value(json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "IPToken",
            "metadata": meta(&format!("token-{t}"), "ns"), "spec": spec}))
            .unwrap();
        r.ip_tokens.push(token);
    }
    for b in 0..budgets {
        let spec = if b < teams {
            json!({"subject": {"kind": "team", "name": format!("team-{b}")}, "limit": "1000", "period": "monthly",
                "alertThresholds": [50, 80, 100]})
        } else {
            json!({"subject": {"kind": "developer", "name": format!("dev-{b}")}, "limit": "25.50", "period": "daily",
                "parent": format!("budget-{}", b % teams), "allowedModels": ["model-1", "model-2"]})
        };
        let budget: Budget =
            serde_json::from_value(json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Budget",
            "metadata": meta(&format!("budget-{b}"), "ns"), "spec": spec}))
            .unwrap();
        r.budgets.push(budget);
    }
    for p in 0..policies {
        let policy: SafetyPolicy = serde_json::from_value(json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "SafetyPolicy",
            "metadata": meta(&format!("policy-{p}"), "ns"), "spec": {
                "selector": {"subjects": [{"kind": "team", "name": format!("team-{}", p % teams)}]},
                "input": {"detectors": [{"id": "pii.*", "action": "redact"}, {"id": "secrets.*", "action": "block"}],
                    "injection": {"action": "block"},
                    "custom": {"regex": [{"id": "ticket", "pattern": format!(r"TCK-\d{{{}}}", 6 + p % 4), "action": "log"},
                        {"id": "project", "pattern": format!("(?i)project-{p}-[a-z]+"), "action": "redact"}]}},
                "output": {"detectors": [{"id": "pii.*", "action": "redact"}]},
                "tools": {"deny": ["shell*", "exec*"],
                    "arguments": [{"id": "no-internal", "tool": "http_*", "pointer": "/url", "pattern": r"(?i)\.internal\b", "action": "block"}]}}}))
        .unwrap();
        r.safety_policies.push(policy);
    }
    (r, secrets)
}

fn owner() -> Owner {
    let dp: DataPlane =
        serde_json::from_value(json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "DataPlane",
        "metadata": meta("gateway", "tollgate-system"), "spec": {}}))
        .unwrap();
    Owner::of(&dp).unwrap()
}

/// What one DataPlane reconcile computes: compile, ConfigMap, provider-key Secret.
fn reconcile(r: &ClusterResources, secrets: &SecretData, owner: &Owner) -> usize {
    let compiled = compile_cluster(r, secrets);
    let config = compiled.config.expect("the benchmark's resources compile");
    let map = config_map(owner, &config, &compiled.keys).unwrap();
    let keys = provider_keys_secret(owner, &compiled.keys).unwrap();
    map.data.map_or(0, |d| d.values().map(String::len).sum()) + keys.data.map_or(0, |d| d.len())
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time(r: &ClusterResources, s: &SecretData, owner: &Owner, n: usize) -> Duration {
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                black_box(reconcile(r, s, owner));
                t.elapsed()
            })
            .collect(),
    )
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let owner = owner();
    let (small, small_secrets) = cluster(10, 1, 2);
    let rss_before = proc_status_kib("VmRSS:");
    let (large, large_secrets) = cluster(1000, 100, 20);
    let bytes = reconcile(&large, &large_secrets, &owner);
    let baseline = time(&small, &small_secrets, &owner, 101);
    let large_time = time(&large, &large_secrets, &owner, 21);
    println!(
        "reconcile: baseline (10 budgets, 1 policy, 2 tokens) {baseline:?}; 1,000 budgets + 100 policies + 20 tokens \
         {large_time:?} ({:.0}x baseline; target < 1 s); ConfigMap + Secret {} KiB",
        large_time.as_secs_f64() / baseline.as_secs_f64(),
        bytes / 1024
    );
    println!(
        "memory: VmRSS {} MiB before the large resources, VmRSS {} MiB after, VmHWM (peak) {} MiB (target < 100 MB)",
        rss_before / 1024,
        proc_status_kib("VmRSS:") / 1024,
        proc_status_kib("VmHWM:") / 1024
    );

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("reconcile/baseline_10_budgets_1_policy_2_tokens", |b| {
        b.iter(|| reconcile(&small, &small_secrets, &owner))
    });
    c.bench_function("reconcile/1000_budgets_100_policies_20_tokens", |b| {
        b.iter(|| reconcile(&large, &large_secrets, &owner))
    });
    c.final_summary();
}
