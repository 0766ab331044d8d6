//! Loading resources from YAML: the same multi-document files `kubectl apply` takes.
//!
//! Documents of other API groups (Namespaces, ConfigMaps, ...) are skipped so a GitOps
//! folder can be pointed at as it is; a Tollgate document that does not parse is an error
//! naming the source, the document's index and the field path.
//!
//! NB: libyaml (under serde_yaml 0.9) spends time quadratic in the nesting of flow
//! collections (`[[[[...`: 200 KB took 27 s of CPU) and serde_yaml has no depth option, so
//! [`parse_documents`] first measures the nesting on the raw text ([`check_nesting`]) and
//! refuses a source that is too big or too deep before the YAML parser ever sees it.

use serde::Deserialize;

use crate::{API_VERSION, Agent, Budget, DataPlane, GROUP, IpToken, Sandbox};

/// One Tollgate resource, of any kind.
#[derive(Debug, Clone)]
pub enum Resource {
    /// An `IPToken`.
    IpToken(IpToken),
    /// A `Budget`.
    Budget(Budget),
    /// A `SafetyPolicy`.
    SafetyPolicy(crate::safety::SafetyPolicy),
    /// An `Agent` (run by the operator; standalone mode has no workloads).
    Agent(Agent),
    /// A `Sandbox` (run by the operator).
    Sandbox(Sandbox),
    /// A `DataPlane` (run by the operator; standalone mode is its own data plane).
    DataPlane(DataPlane),
}

/// The kinds [`parse_documents`] knows, as written in `kind:`.
pub const KINDS: [&str; 6] = ["IPToken", "Budget", "SafetyPolicy", "Agent", "Sandbox", "DataPlane"];

impl Resource {
    /// The `kind` as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::IpToken(_) => "IPToken",
            Self::Budget(_) => "Budget",
            Self::SafetyPolicy(_) => "SafetyPolicy",
            Self::Agent(_) => "Agent",
            Self::Sandbox(_) => "Sandbox",
            Self::DataPlane(_) => "DataPlane",
        }
    }

    /// `kind/name` for messages.
    pub fn display_name(&self) -> String {
        let name = match self {
            Self::IpToken(r) => r.metadata.name.as_deref(),
            Self::Budget(r) => r.metadata.name.as_deref(),
            Self::SafetyPolicy(r) => r.metadata.name.as_deref(),
            Self::Agent(r) => r.metadata.name.as_deref(),
            Self::Sandbox(r) => r.metadata.name.as_deref(),
            Self::DataPlane(r) => r.metadata.name.as_deref(),
        };
        format!("{}/{}", self.kind(), name.unwrap_or(""))
    }
}

/// Largest source [`parse_documents`] reads. Far above any real resource file; bounds the
/// parser's work on a hostile one.
pub const MAX_SOURCE_BYTES: usize = 8 << 20;

/// Deepest nesting a document may have: block levels (indentation, `- ` entries) plus flow
/// collections (`[`, `{`). Real resources nest fewer than 15 levels.
pub const MAX_DEPTH: usize = 64;

/// Most `[` and `{` left open at any point, counted with no regard to quotes or comments.
/// NB: a backstop for text that fools [`check_nesting`]'s notion of where a quoted scalar
/// starts: whatever libyaml makes of it, its flow depth (what costs time) stays below this.
const MAX_OPEN_BRACKETS: usize = 256;

/// Why a document could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// Not YAML, not a resource, or a field that does not fit.
    Invalid,
    /// The source is larger than [`MAX_SOURCE_BYTES`].
    TooLarge,
    /// A document nests deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// A document that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: document {index}: {path}: {message}")]
pub struct LoadError {
    /// What kind of failure (callers map it to an answer: an API says 413 for too large).
    pub kind: LoadErrorKind,
    /// The file (or other source) the document came from.
    pub source_name: String,
    /// Zero-based index of the document in its source.
    pub index: usize,
    /// Field path inside the document (`spec.models[0].name`), or `.` for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What parsing one source produced: the resources and the documents skipped as foreign.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Tollgate resources, in document order.
    pub resources: Vec<Resource>,
    /// `(index, apiVersion/kind)` of documents that are not Tollgate's.
    pub skipped: Vec<(usize, String)>,
}

/// Parses every YAML document in `text`. Any bad Tollgate document fails the whole source.
/// Refuses a source over [`MAX_SOURCE_BYTES`] or nesting deeper than [`MAX_DEPTH`] before
/// parsing anything; may take a while on a large source, so async callers run it on a
/// blocking thread.
pub fn parse_documents(source_name: &str, text: &str) -> Result<Parsed, LoadError> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(LoadError {
            kind: LoadErrorKind::TooLarge,
            source_name: source_name.to_owned(),
            index: 0,
            path: ".".to_owned(),
            message: format!("{} bytes is more than the limit of {MAX_SOURCE_BYTES} bytes", text.len()),
        });
    }
    check_nesting(text).map_err(|deep| LoadError {
        kind: LoadErrorKind::TooDeep,
        source_name: source_name.to_owned(),
        index: deep.document,
        path: ".".to_owned(),
        message: deep.to_string(),
    })?;
    let mut parsed = Parsed::default();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let err = |path: String, message: String| LoadError {
            kind: LoadErrorKind::Invalid,
            source_name: source_name.to_owned(),
            index,
            path,
            message,
        };
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|e| err(".".to_owned(), format!("invalid YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let field = |name: &str| value.get(name).and_then(serde_yaml::Value::as_str).unwrap_or("");
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        if api_version.is_empty() || kind.is_empty() {
            return Err(err(".".to_owned(), "a resource needs `apiVersion` and `kind`".to_owned()));
        }
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        if group != GROUP {
            parsed.skipped.push((index, format!("{api_version}/{kind}")));
            continue;
        }
        if api_version != API_VERSION {
            return Err(err(
                "apiVersion".to_owned(),
                format!("unsupported version {api_version:?}; this Tollgate serves {API_VERSION}"),
            ));
        }
        let resource = match kind {
            "IPToken" => Resource::IpToken(typed(value, &err)?),
            "Budget" => Resource::Budget(typed(value, &err)?),
            "SafetyPolicy" => Resource::SafetyPolicy(typed(value, &err)?),
            "Agent" => Resource::Agent(typed(value, &err)?),
            "Sandbox" => Resource::Sandbox(typed(value, &err)?),
            "DataPlane" => Resource::DataPlane(typed(value, &err)?),
            other => {
                return Err(err(
                    "kind".to_owned(),
                    format!("unknown kind {other:?}; known kinds: {}", KINDS.join(", ")),
                ));
            }
        };
        parsed.resources.push(resource);
    }
    Ok(parsed)
}

/// Where a document goes deeper than the limits allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nesting deeper than {limit} levels at line {line} column {column}")]
pub struct TooDeep {
    /// Zero-based index of the document in its source.
    pub document: usize,
    /// One-based line.
    pub line: usize,
    /// One-based column (bytes).
    pub column: usize,
    /// The limit passed.
    pub limit: usize,
}

/// Measures how deep the YAML (or JSON) in `text` nests, without parsing it: one pass over
/// the bytes, linear in their number. Block nesting is the stack of indentations (plus
/// compact `- - ` entries on a line); flow nesting counts `[` and `{` outside quoted
/// scalars and comments; block scalars (`|`, `>`) are skipped. It errs towards counting
/// more than libyaml would, never less (with [`MAX_OPEN_BRACKETS`] as the backstop).
pub fn check_nesting(text: &str) -> Result<(), TooDeep> {
    let mut document = 0;
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut open = 0usize;
    let mut quote: Option<u8> = None;
    // Indentation of the line that opened a block scalar: its content is every following
    // line indented deeper (or blank).
    let mut block_scalar: Option<usize> = None;
    // Block depth of the last line that had block structure (lines inside a flow
    // collection or a quoted scalar continue it).
    let mut block = 0;
    let mut started = false;
    for (n, line) in text.split('\n').enumerate() {
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        let rest = line[indent..].trim_end();
        if let Some(parent) = block_scalar {
            if rest.is_empty() || indent > parent {
                // Text, not structure; only the raw bracket count looks at it.
                for &b in bytes {
                    open = count_open(open, b);
                }
                if open > MAX_OPEN_BRACKETS {
                    return Err(TooDeep { document, line: n + 1, column: 1, limit: MAX_DEPTH });
                }
                continue;
            }
            block_scalar = None;
        }
        if quote.is_none() && flow == 0 && !rest.is_empty() && !rest.starts_with('#') {
            if indent == 0 && (rest == "---" || rest.starts_with("--- ") || rest == "...") {
                // `---` starts a document (the next one, once one has started; libyaml counts
                // an empty one between two markers); `...` ends one.
                document += usize::from(started);
                started = rest.starts_with("---");
                indents.clear();
                block = 0;
            } else {
                started = true;
                while indents.last().is_some_and(|&top| top > indent) {
                    indents.pop();
                }
                if indents.last() != Some(&indent) {
                    indents.push(indent);
                }
                // `- - - x` opens one block sequence per `- ` on a single line.
                let compact = rest
                    .as_bytes()
                    .chunks(2)
                    .take_while(|c| matches!(c, [b'-' | b'?', b' ']) || matches!(c, [b'-' | b'?']))
                    .count();
                block = indents.len() + compact;
            }
        }
        let too_deep =
            |column: usize| TooDeep { document, line: n + 1, column: column + 1, limit: MAX_DEPTH };
        if block > MAX_DEPTH {
            return Err(too_deep(indent));
        }
        let mut prev = b' ';
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            open = count_open(open, b);
            if open > MAX_OPEN_BRACKETS {
                return Err(too_deep(i));
            }
            match quote {
                Some(b'\'') if b == b'\'' => {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        // `''` is an escaped quote inside a single-quoted scalar.
                        i += 1;
                        open = count_open(open, b'\'');
                    } else {
                        quote = None;
                    }
                }
                Some(b'"') if b == b'\\' => {
                    if let Some(&next) = bytes.get(i + 1) {
                        open = count_open(open, next);
                    }
                    i += 1;
                }
                Some(b'"') if b == b'"' => quote = None,
                Some(_) => {}
                None => match b {
                    b'#' if prev.is_ascii_whitespace() => break,
                    b'\'' | b'"'
                        if prev.is_ascii_whitespace()
                            || matches!(prev, b'[' | b'{' | b',')
                            || (prev == b':' && flow > 0) =>
                    {
                        quote = Some(b);
                    }
                    b'[' | b'{' => {
                        flow += 1;
                        if block + flow > MAX_DEPTH {
                            return Err(too_deep(i));
                        }
                    }
                    b']' | b'}' => flow = flow.saturating_sub(1),
                    b'|' | b'>' if flow == 0 && prev.is_ascii_whitespace() => {
                        let header = line[i + 1..].split(" #").next().unwrap_or("").trim_end();
                        if header.bytes().all(|h| h.is_ascii_digit() || h == b'+' || h == b'-') {
                            block_scalar = Some(indent);
                            break;
                        }
                    }
                    _ => {}
                },
            }
            prev = b;
            i += 1;
        }
    }
    Ok(())
}

/// The raw count of open brackets after `b`.
fn count_open(open: usize, b: u8) -> usize {
    match b {
        b'[' | b'{' => open + 1,
        b']' | b'}' => open.saturating_sub(1),
        _ => open,
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    value: serde_yaml::Value,
    err: &dyn Fn(String, String) -> LoadError,
) -> Result<T, LoadError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        err(path, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: ai}
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: openai-main, namespace: ai}
spec:
  provider: openai
  secretRef: {name: openai, key: api-key}
  models:
    - name: gpt-4o-mini
---
"#;

    #[test]
    fn loads_tollgate_documents_and_skips_foreign_ones() {
        let parsed = parse_documents("a.yaml", GOOD).unwrap();
        assert_eq!(parsed.resources.len(), 1);
        assert_eq!(parsed.skipped, vec![(0, "v1/Namespace".to_owned())]);
        let Resource::IpToken(t) = &parsed.resources[0] else { panic!("not an IPToken") };
        assert_eq!(t.spec.weight, 1);
        assert_eq!(t.spec.models[0].name, "gpt-4o-mini");
    }

    #[test]
    fn names_the_field_path() {
        let bad = GOOD.replace("- name: gpt-4o-mini", "- name: gpt\n      upstream: x");
        let e = parse_documents("a.yaml", &bad).unwrap_err();
        assert_eq!(e.index, 1);
        assert_eq!(e.path, "spec.models[0].upstream");
        assert!(e.message.contains("unknown field `upstream`"), "{e}");
        let bad = GOOD.replace("- name: gpt-4o-mini", "- name: [1]");
        let e = parse_documents("a.yaml", &bad).unwrap_err();
        assert_eq!(e.path, "spec.models[0].name");
        let bad = GOOD.replace("provider: openai", "provider: opneai");
        let e = parse_documents("a.yaml", &bad).unwrap_err();
        assert_eq!(e.path, "spec.provider");
        assert!(e.to_string().starts_with("a.yaml: document 1: spec.provider:"), "{e}");
    }

    #[test]
    fn loads_workload_kinds_with_defaults() {
        let yaml = r#"
apiVersion: tollgate.dev/v1alpha1
kind: Agent
metadata: {name: support-bot, namespace: ai}
spec: {image: "example.com/bot:1"}
---
apiVersion: tollgate.dev/v1alpha1
kind: Sandbox
metadata: {name: run-1, namespace: ai}
spec: {image: "python:3.12-slim", command: [python, -c, "print(1)"]}
---
apiVersion: tollgate.dev/v1alpha1
kind: DataPlane
metadata: {name: gateway, namespace: tollgate-system}
spec: {}
"#;
        let parsed = parse_documents("w.yaml", yaml).unwrap();
        let names: Vec<String> = parsed.resources.iter().map(Resource::display_name).collect();
        assert_eq!(names, ["Agent/support-bot", "Sandbox/run-1", "DataPlane/gateway"]);
        let Resource::Agent(a) = &parsed.resources[0] else { panic!("not an Agent") };
        assert_eq!((a.spec.replicas.min, a.spec.replicas.max), (1, 1));
        assert_eq!(a.spec.data_plane_ref.gateway_url(), "http://gateway.tollgate-system.svc:8080");
        let Resource::Sandbox(s) = &parsed.resources[1] else { panic!("not a Sandbox") };
        assert_eq!(s.spec.runtime_class_name, "gvisor");
        assert_eq!(s.spec.timeout_seconds, 300);
        let Resource::DataPlane(d) = &parsed.resources[2] else { panic!("not a DataPlane") };
        assert_eq!(d.spec.cache.type_, crate::dataplane::CacheType::Memory);
        // Workloads compile to nothing in standalone mode, alongside the routing kinds.
        let mut all = parse_documents("a.yaml", GOOD).unwrap().resources;
        all.extend(parsed.resources);
        let config = crate::compile(&all).unwrap();
        assert_eq!(config.ip_tokens.len(), 1);
        // A typo in a workload is caught with its path, like any other kind.
        let e = parse_documents("w.yaml", &yaml.replace("spec: {}", "spec: {cache: {type: memcached}}"))
            .unwrap_err();
        assert_eq!((e.index, e.path.as_str()), (2, "spec.cache.type"));
    }

    #[test]
    fn too_deep_documents_are_refused_fast_before_parsing() {
        // Each of these took libyaml seconds to minutes of CPU (quadratic in the nesting).
        let attacks = [
            "[".repeat(200_000),
            format!("a: {}", "[".repeat(200_000)),
            "{a: ".repeat(50_000),
            format!("{GOOD}---\nkind: x\nspec: {}", "[a, ".repeat(50_000)),
            // A quote the scanner cannot tell from a plain scalar's apostrophe hides nothing.
            format!("a: rock 'n roll\nb: {}", "[".repeat(100_000)),
            format!("a: \"x\\\"\nb: {}", "{".repeat(100_000)),
        ];
        for text in &attacks {
            let started = std::time::Instant::now();
            let e = parse_documents("big.yaml", text).unwrap_err();
            assert_eq!(e.kind, LoadErrorKind::TooDeep, "{e}");
            assert!(e.message.contains("nesting deeper than 64 levels at line"), "{e}");
            assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
        }
        // The error names the document and the place.
        let e = parse_documents("x", &attacks[3]).unwrap_err();
        assert_eq!((e.index, e.path.as_str()), (3, "."), "the index serde_yaml gives it");
        assert!(e.message.ends_with("at line 17 column 259"), "{e}");
        // Block nesting counts too.
        let mut deep = String::new();
        for i in 0..70 {
            deep.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert_eq!(parse_documents("x", &deep).unwrap_err().kind, LoadErrorKind::TooDeep);
        assert_eq!(
            parse_documents("x", &format!("{}b", "- ".repeat(80))).unwrap_err().kind,
            LoadErrorKind::TooDeep
        );
    }

    #[test]
    fn brackets_in_text_do_not_count_as_nesting() {
        let open = "[".repeat(100);
        for text in [
            format!("a: '{open}'\nb: \"{open}\"\n"),
            format!("a: 'it''s {open}'\n# {open}\n"),
            format!("a: |\n  {open}\n    {open}\nb: 1\n"),
            format!("a: >-\n  {open}\nb: [1, [2, {{c: d}}]]\n"),
            // JSON, pretty-printed: indentation inside brackets is not block nesting.
            serde_json::to_string_pretty(&serde_json::json!({"a": {"b": {"c": [[[[1]]]]}}})).unwrap(),
        ] {
            check_nesting(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        }
        assert!(parse_documents("a.yaml", GOOD).is_ok());
    }

    #[test]
    fn too_large_sources_are_refused() {
        let e = parse_documents("x", &" ".repeat(MAX_SOURCE_BYTES + 1)).unwrap_err();
        assert_eq!(e.kind, LoadErrorKind::TooLarge);
        assert!(e.message.contains("more than the limit"), "{e}");
    }

    #[test]
    fn rejects_unknown_kinds_and_versions() {
        let e = parse_documents("x", "apiVersion: tollgate.dev/v1alpha1\nkind: Nope\n").unwrap_err();
        assert_eq!(e.path, "kind");
        assert!(
            e.message.contains("known kinds: IPToken, Budget, SafetyPolicy, Agent, Sandbox, DataPlane"),
            "{e}"
        );
        let e = parse_documents("x", "apiVersion: tollgate.dev/v9\nkind: IPToken\n").unwrap_err();
        assert_eq!(e.path, "apiVersion");
        let e = parse_documents("x", "kind: IPToken\n").unwrap_err();
        assert_eq!(e.path, ".");
        let e = parse_documents("x", "a: [\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{e}");
    }
}
