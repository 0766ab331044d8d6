//! Resource and account commands against the admin API: `get`, `apply`, `delete`,
//! `token add`, `usage`, `whoami`, `login`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use http::Method;
use serde_json::{Value, json};
use tollgate_crds::Resource;

use crate::admin::{Output, SavedConfig, ServerArgs, config_path, field, print, table};

/// `tollgate get KIND [NAME]`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// iptokens, budgets, safetypolicies, agents, sandboxes, dataplanes (or `all`).
    kind: String,
    /// One resource's name.
    name: Option<String>,
    /// Namespace (default: all for lists, `default` for one).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Output,
}

fn kind_path(kind: &str) -> anyhow::Result<&'static str> {
    const KINDS: [(&str, &[&str]); 6] = [
        ("iptokens", &["iptoken", "ipt", "tokens"]),
        ("budgets", &["budget"]),
        ("safetypolicies", &["safetypolicy", "policies", "policy"]),
        ("agents", &["agent"]),
        ("sandboxes", &["sandbox"]),
        ("dataplanes", &["dataplane"]),
    ];
    let k = kind.to_ascii_lowercase();
    KINDS
        .iter()
        .find(|(plural, others)| *plural == k || others.contains(&k.as_str()))
        .map(|(plural, _)| *plural)
        .with_context(|| {
            format!(
                "unknown kind {kind:?}: use all, {}",
                KINDS.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
            )
        })
}

fn resource_rows(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            let detail = match r["kind"].as_str() {
                Some("IPToken") => field(r, "/document/spec/provider"),
                Some("Budget") => {
                    format!("{} {}", field(r, "/document/spec/limit"), field(r, "/document/spec/period"))
                }
                Some("Sandbox") => field(r, "/document/spec/image"),
                _ => String::new(),
            };
            vec![field(r, "/kind"), field(r, "/namespace"), field(r, "/name"), field(r, "/source"), detail]
        })
        .collect();
    table(&["KIND", "NAMESPACE", "NAME", "SOURCE", "DETAIL"], &rows)
}

/// A stored resource in the API's view shape (for cluster mode).
fn cluster_view(r: &tollgate_operator::store::StoredResource) -> Value {
    json!({"kind": r.kind, "namespace": r.namespace, "name": r.name, "source": "cluster",
           "generation": r.generation, "document": r.document})
}

fn store_kind(plural: &str) -> anyhow::Result<tollgate_operator::store::Kind> {
    tollgate_operator::store::Kind::parse(plural).with_context(|| format!("unknown kind {plural:?}"))
}

/// The failure of a cluster call, with the exit code an API answer would have had.
fn cluster_error(e: tollgate_operator::error::Error) -> anyhow::Error {
    use tollgate_operator::error::Error as E;
    let status = match &e {
        E::NotFound(_) => 404,
        E::Conflict(_) => 409,
        E::Kube(kube_client::Error::Api(s)) => s.code,
        _ => 500,
    };
    crate::admin::ApiFailure { status, code: String::new(), message: e.to_string() }.into()
}

async fn get_cluster(args: &GetArgs) -> anyhow::Result<()> {
    let store = args.server.kube_store().await?;
    use tollgate_operator::store::ResourceStore;
    let kind = if args.kind == "all" { None } else { Some(store_kind(kind_path(&args.kind)?)?) };
    if let (Some(kind), Some(name)) = (kind, &args.name) {
        let ns = args.namespace.as_deref().unwrap_or("default");
        let r = store.get(kind, ns, name).await.map_err(cluster_error)?.ok_or_else(|| {
            anyhow::Error::from(crate::admin::ApiFailure {
                status: 404,
                code: String::new(),
                message: format!("no {} {ns}/{name}", kind.as_str()),
            })
        })?;
        let v = cluster_view(&r);
        return print(args.output, &v["document"], || resource_rows(std::slice::from_ref(&v)));
    }
    let items: Vec<Value> = store
        .list(kind)
        .await
        .map_err(cluster_error)?
        .iter()
        .filter(|r| args.namespace.as_ref().is_none_or(|ns| &r.namespace == ns))
        .map(cluster_view)
        .collect();
    let docs: Vec<Value> = items.iter().map(|i| i["document"].clone()).collect();
    print(args.output, &Value::Array(docs), || resource_rows(&items))
}

/// Runs `get`.
pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    if args.server.kube_mode() {
        return get_cluster(&args).await;
    }
    let base = if args.kind == "all" {
        "/api/v1/resources".to_owned()
    } else {
        format!("/api/v1/resources/{}", kind_path(&args.kind)?)
    };
    if let Some(name) = &args.name {
        let ns = args.namespace.as_deref().unwrap_or("default");
        let v = args.server.call(Method::GET, &format!("{base}/{ns}/{name}"), None).await?;
        return print(args.output, &v["document"], || resource_rows(std::slice::from_ref(&v)));
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{base}?limit=500");
        if let Some(ns) = &args.namespace {
            path.push_str(&format!("&namespace={ns}"));
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", c.replace('/', "%2F")));
        }
        let v = args.server.call(Method::GET, &path, None).await?;
        items.extend(v["items"].as_array().cloned().unwrap_or_default());
        cursor = v["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let docs: Vec<Value> = items.iter().map(|i| i["document"].clone()).collect();
    print(args.output, &Value::Array(docs), || resource_rows(&items))
}

/// `tollgate apply -f PATH`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Resource files or directories (YAML or JSON, multi-document).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

fn ids(resources: &[Resource]) -> Vec<(String, &'static str, String, String)> {
    resources
        .iter()
        .map(|r| {
            let (kind, ns, name) = tollgate_operator::config::resource_id(r);
            (r.kind().to_owned(), kind.plural(), ns, name)
        })
        .collect()
}

fn document(r: &Resource) -> anyhow::Result<Value> {
    Ok(match r {
        Resource::IpToken(x) => serde_json::to_value(x)?,
        Resource::Budget(x) => serde_json::to_value(x)?,
        Resource::SafetyPolicy(x) => serde_json::to_value(x)?,
        Resource::Agent(x) => serde_json::to_value(x)?,
        Resource::Sandbox(x) => serde_json::to_value(x)?,
        Resource::DataPlane(x) => serde_json::to_value(x)?,
    })
}

/// Runs `apply`: every document is checked locally first, then sent in file order; the
/// first refusal stops with its reason.
pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let resources = crate::resources::load(&args.files)?;
    if resources.is_empty() {
        bail!("no Tollgate resources (apiVersion tollgate.dev/v1alpha1) in {:?}", args.files);
    }
    if args.server.kube_mode() {
        use tollgate_operator::store::{ResourceStore, WriteMode};
        let store = args.server.kube_store().await?;
        for (r, (kind, plural, ns, name)) in resources.iter().zip(ids(&resources)) {
            store
                .put(store_kind(plural)?, &ns, &name, document(r)?, WriteMode::Apply)
                .await
                .map_err(cluster_error)?;
            println!("{}/{ns}/{name} applied", kind.to_ascii_lowercase());
        }
        return Ok(());
    }
    for (r, (kind, plural, ns, name)) in resources.iter().zip(ids(&resources)) {
        let path = format!("/api/v1/resources/{plural}/{ns}/{name}");
        let before = args.server.call(Method::GET, &path, None).await.ok();
        let body = document(r)?;
        let after = args.server.call(Method::PUT, &path, Some(body)).await?;
        let verb = match before {
            None => "created",
            // NB: the status is what the server makes of it, not what was written.
            Some(b) if without_status(&b["document"]) == without_status(&after["document"]) => "unchanged",
            Some(_) => "configured",
        };
        println!("{}/{ns}/{name} {verb}", kind.to_ascii_lowercase());
    }
    Ok(())
}

/// A resource document without its `status`.
fn without_status(document: &Value) -> Value {
    let mut d = document.clone();
    if let Some(obj) = d.as_object_mut() {
        obj.remove("status");
    }
    d
}

/// `tollgate delete KIND NAME` or `-f PATH`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The kind (with NAME).
    kind: Option<String>,
    /// The name.
    name: Option<String>,
    /// Namespace (default `default`).
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Delete what these files define instead.
    #[arg(short = 'f', long = "filename", conflicts_with_all = ["kind", "name"])]
    files: Vec<PathBuf>,
}

/// Runs `delete`.
pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let targets: Vec<(String, String, String)> = if args.files.is_empty() {
        let (Some(kind), Some(name)) = (&args.kind, &args.name) else {
            bail!("say what to delete: `tollgate delete KIND NAME` or `tollgate delete -f FILE`");
        };
        vec![(kind_path(kind)?.to_owned(), args.namespace.clone(), name.clone())]
    } else {
        let resources = crate::resources::load(&args.files)?;
        ids(&resources).into_iter().rev().map(|(_, plural, ns, name)| (plural.to_owned(), ns, name)).collect()
    };
    let cluster = if args.server.kube_mode() { Some(args.server.kube_store().await?) } else { None };
    for (plural, ns, name) in targets {
        match &cluster {
            Some(store) => {
                use tollgate_operator::store::ResourceStore;
                if store.delete(store_kind(&plural)?, &ns, &name).await.map_err(cluster_error)?.is_none() {
                    return Err(crate::admin::ApiFailure {
                        status: 404,
                        code: String::new(),
                        message: format!("no {plural} {ns}/{name}"),
                    }
                    .into());
                }
            }
            None => {
                args.server
                    .call(Method::DELETE, &format!("/api/v1/resources/{plural}/{ns}/{name}"), None)
                    .await?;
            }
        }
        println!("{plural}/{ns}/{name} deleted");
    }
    Ok(())
}

/// `tollgate token add NAME --provider P --from-env VAR`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create (or replace) an IPToken and store its provider key, read from an environment
    /// variable so it never appears in shell history or process lists.
    Add {
        #[command(flatten)]
        server: ServerArgs,
        /// The IPToken's name.
        name: String,
        /// openai, anthropic, azure-openai, openai-compatible or mock.
        #[arg(long)]
        provider: String,
        /// The environment variable holding the provider key.
        #[arg(long)]
        from_env: Option<String>,
        /// Models it serves (repeat or comma-separate).
        #[arg(long = "model", value_delimiter = ',')]
        models: Vec<String>,
        /// The provider's base URL (required for azure-openai and openai-compatible).
        #[arg(long)]
        base_url: Option<String>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
}

/// Runs `token`.
pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let TokenCommand::Add { server, name, provider, from_env, models, base_url, namespace } = args.command;
    let key = match &from_env {
        Some(var) => Some(
            std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .with_context(|| format!("the environment variable {var} is not set (or empty)"))?,
        ),
        None if provider == "mock" => None,
        None => bail!("a {provider} token needs its key: --from-env VARIABLE"),
    };
    if models.is_empty() {
        bail!("name the models it serves: --model gpt-4o-mini (repeat for more)");
    }
    let mut spec = json!({
        "provider": provider,
        "models": models.iter().map(|m| json!({"name": m})).collect::<Vec<_>>(),
    });
    if let Some(u) = base_url {
        spec["baseUrl"] = json!(u);
    }
    if key.is_some() {
        spec["secretRef"] = json!({"name": name, "key": "api-key"});
    }
    let doc = json!({"apiVersion": tollgate_crds::API_VERSION, "kind": "IPToken",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec});
    let path = format!("/api/v1/resources/iptokens/{namespace}/{name}");
    server.call(Method::PUT, &path, Some(doc)).await?;
    if let Some(k) = key {
        // The token names its secret; the key is stored under it (write-only).
        server.call(Method::PUT, &format!("{path}/key"), Some(json!({"value": k}))).await?;
    }
    println!("iptoken/{namespace}/{name} ready (models: {})", models.join(", "));
    Ok(())
}

/// `tollgate usage`.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only my own usage.
    #[arg(long)]
    me: bool,
    /// Group by principal, team, model, provider, day or hour.
    #[arg(long)]
    by: Option<String>,
    /// Start (a date, RFC 3339 or epoch ms; default 30 days ago).
    #[arg(long)]
    from: Option<String>,
    /// End (default now).
    #[arg(long)]
    to: Option<String>,
    /// Only this principal (`kind/name`, or a developer's name).
    #[arg(long)]
    principal: Option<String>,
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Output,
}

fn usd(micros: &Value) -> String {
    let m = micros.as_i64().unwrap_or(0);
    format!("${}.{:06}", m / 1_000_000, (m % 1_000_000).abs())
}

/// Runs `usage`.
pub async fn usage(args: UsageArgs) -> anyhow::Result<()> {
    let mut q = Vec::new();
    for (k, v) in [
        ("by", &args.by),
        ("from", &args.from),
        ("to", &args.to),
        ("principal", &args.principal),
        ("model", &args.model),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", v.replace('/', "%2F").replace(':', "%3A").replace('+', "%2B")));
        }
    }
    if args.me {
        q.push("me=true".into());
    }
    let v = args.server.call(Method::GET, &format!("/api/v1/usage?{}", q.join("&")), None).await?;
    print(args.output, &v, || {
        let mut rows: Vec<Vec<String>> = v["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                vec![
                    field(g, "/key"),
                    field(g, "/requests"),
                    field(g, "/errors"),
                    field(g, "/inputTokens"),
                    field(g, "/outputTokens"),
                    usd(&g["costMicros"]),
                ]
            })
            .collect();
        let t = &v["total"];
        rows.push(vec![
            "TOTAL".into(),
            field(t, "/requests"),
            field(t, "/errors"),
            field(t, "/inputTokens"),
            field(t, "/outputTokens"),
            usd(&t["costMicros"]),
        ]);
        let by = args.by.as_deref().unwrap_or("").to_ascii_uppercase();
        table(
            &[if by.is_empty() { "GROUP" } else { &by }, "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "COST"],
            &rows,
        )
    })
}

/// `tollgate whoami`.
#[derive(Debug, clap::Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Output,
}

/// Runs `whoami`.
pub async fn whoami(args: WhoamiArgs) -> anyhow::Result<()> {
    let v = args.server.call(Method::GET, "/api/v1/me", None).await?;
    print(args.output, &v, || {
        let budgets: Vec<String> =
            v["budgets"].as_array().into_iter().flatten().map(|b| field(b, "/name")).collect();
        table(
            &["PRINCIPAL", "ROLE", "TEAMS", "BUDGETS", "PREFERRED MODEL"],
            &[vec![
                format!("{}/{}", field(&v, "/principal/kind"), field(&v, "/principal/name")),
                field(&v, "/role"),
                v["teams"]
                    .as_array()
                    .map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
                budgets.join(","),
                field(&v, "/preferences/model"),
            ]],
        )
    })
}

/// `tollgate login`: saves the server and key for the other commands.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `login`: checks the key works, then writes the config file (mode 0600).
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let me = args.server.call(Method::GET, "/api/v1/whoami", None).await?;
    let path = config_path().context("no home directory: set TOLLGATE_CONFIG to a file path")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let saved = SavedConfig { server: Some(args.server.server()), api_key: args.server.api_key.clone() };
    std::fs::write(&path, serde_yaml::to_string(&saved)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    println!(
        "logged in to {} as {}/{} (saved in {})",
        args.server.server(),
        field(&me, "/principal/kind"),
        field(&me, "/principal/name"),
        path.display()
    );
    Ok(())
}
