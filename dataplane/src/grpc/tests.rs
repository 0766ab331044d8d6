//! The pure decisions of the runtime service; the service itself is tested over a real
//! socket in `tests/grpc.rs`.

use tollgate_crds::safety::{SafetyPolicy, compile_safety};

use super::*;
use crate::safety::{SafetyEngine, SubjectKind};

fn policies(spec: &str) -> Arc<PolicySet> {
    let doc = format!(
        "apiVersion: tollgate.dev/v1alpha1\nkind: SafetyPolicy\nmetadata: {{name: tools, namespace: ai}}\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
    );
    let policy: SafetyPolicy = serde_yaml::from_str(&doc).unwrap();
    let engine = SafetyEngine::new(&compile_safety(&[policy]).unwrap()).unwrap();
    engine.policies_for(&Subject {
        kind: SubjectKind::Agent,
        name: "bot".into(),
        team: None,
        namespace: None,
    })
}

const SPEC: &str = r#"tools:
  deny: ["shell*"]
  arguments:
    - {id: no-internal, tool: "http_*", pointer: /url, pattern: 'internal\.example\.com', action: block}
output:
  detectors:
    - {id: pii.email, action: redact}"#;

#[test]
fn denied_names_and_argument_rules_deny_with_policy_and_rule() {
    let p = policies(SPEC);
    let (v, findings) = tool_verdict(&p, "Shell_exec", "{}");
    let ToolVerdict::Deny { policy, rule, reason } = v else { panic!("expected deny, got {v:?}") };
    assert_eq!((policy.as_str(), rule.as_str()), ("ai/tools", "tools.deny"));
    assert!(reason.starts_with("tool call blocked by safety policy ai/tools"), "{reason}");
    assert_eq!(findings.len(), 1);

    let (v, _) = tool_verdict(&p, "http_get", r#"{"url": "https://internal.example.com/x"}"#);
    assert!(matches!(&v, ToolVerdict::Deny { rule, .. } if rule == "tools.arguments.no-internal"), "{v:?}");
    let (v, _) = tool_verdict(&p, "http_get", r#"{"url": "https://example.com/x"}"#);
    assert_eq!(v, ToolVerdict::Allow);
}

#[test]
fn sensitive_arguments_come_back_redacted_and_never_the_value() {
    let p = policies(SPEC);
    let (v, findings) = tool_verdict(&p, "send_mail", r#"{"to": "bob@example.com", "body": "hi"}"#);
    let ToolVerdict::AllowRedacted(args) = v else { panic!("expected a redaction, got {v:?}") };
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args, json!({"to": "[REDACTED:EMAIL]", "body": "hi"}));
    assert_eq!(findings[0].rule, "pii.email");
    assert!(!format!("{findings:?}").contains("bob@"));
}

#[test]
fn no_policy_allows_everything() {
    let p = SafetyEngine::empty().unwrap().policies_for(&Subject {
        kind: SubjectKind::Agent,
        name: "bot".into(),
        team: None,
        namespace: None,
    });
    assert_eq!(tool_verdict(&p, "shell", "{}").0, ToolVerdict::Allow);
}

#[test]
fn text_verdicts_map_to_decisions() {
    let p = policies(
        "input:\n  detectors:\n    - {id: pii.email, action: redact}\n    - {id: \"secrets.*\", action: block}",
    );
    let (d, _, _, _, text) = text_verdict(&p.check_text("mail bob@example.com", Stage::Input));
    assert_eq!((d, text.as_str()), (pb::Decision::AllowRedacted, "mail [REDACTED:EMAIL]"));
    let (d, policy, rule, reason, _) =
        text_verdict(&p.check_text("key AKIAIOSFODNN7EXAMPLE here", Stage::Input));
    assert_eq!((d, policy.as_str()), (pb::Decision::Deny, "ai/tools"));
    assert!(rule.starts_with("secrets."), "{rule}");
    assert!(!reason.contains("AKIA"));
    assert_eq!(text_verdict(&p.check_text("hello", Stage::Input)).0, pb::Decision::Allow);
}

#[test]
fn http_errors_map_to_grpc_codes() {
    assert_eq!(status_of(&ApiError::unauthenticated("invalid_api_key", "no")).code(), Code::Unauthenticated);
    assert_eq!(status_of(&ApiError::rate_limited("x", "y", None)).code(), Code::ResourceExhausted);
    assert_eq!(status_of(&ApiError::unavailable("x", "y")).code(), Code::Unavailable);
    let s = invalid("arguments_json", "is not valid JSON");
    assert_eq!(s.code(), Code::InvalidArgument);
    let details = s.get_error_details();
    let v = &details.bad_request().unwrap().field_violations[0];
    assert_eq!(v.field, "arguments_json");
}
