//! Loading resource files and directories, the way `kubectl apply -f` takes them.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tollgate_crds::{DataPlaneConfig, Resource, compile, parse_documents};

/// `tollgate validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Resource files or directories (YAML or JSON, multi-document).
    #[arg(long = "resources", short = 'f', required = true)]
    pub resources: Vec<PathBuf>,
}

/// Files under `path` that may hold resources, sorted (a file is taken as it is).
fn resource_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every resource under `paths`; the first bad document fails the whole load.
pub fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<Resource>> {
    let mut resources = Vec::new();
    for path in paths {
        if !path.exists() {
            bail!("{}: no such file or directory", path.display());
        }
        for file in resource_files(path)? {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let parsed = parse_documents(&file.display().to_string(), &text)?;
            for (index, what) in parsed.skipped {
                tracing::debug!(file = %file.display(), index, what, "skipped a document that is not Tollgate's");
            }
            resources.extend(parsed.resources);
        }
    }
    Ok(resources)
}

/// Loads and compiles; every compile error is listed.
pub fn load_config(paths: &[PathBuf]) -> anyhow::Result<DataPlaneConfig> {
    let resources = load(paths)?;
    compile(&resources).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("{} invalid resource field(s):\n{}", errors.len(), list.join("\n"))
    })
}

/// `tollgate validate`.
pub fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    let resources = load(&args.resources)?;
    let config = load_config(&args.resources)?;
    println!(
        "ok: {} resource(s), {} IP token(s), {} model(s); configuration {}",
        resources.len(),
        config.ip_tokens.len(),
        config.models.len(),
        &config.hash[..12.min(config.hash.len())]
    );
    Ok(())
}
