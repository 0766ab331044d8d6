//! The Kubernetes backend of [`ResourceStore`]: the custom resources themselves are the
//! source of truth, read and written through the API server (so the admin API and
//! `kubectl apply` / GitOps see and change the same objects). Writes are server-side applies
//! under one field manager, or creates and replaces with the object's resourceVersion for
//! optimistic concurrency.

use kube_client::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube_client::core::ApiResource;
use serde_json::Value;

use super::{KeyState, Kind, ResourceStore, StoredResource, WriteMode};
use crate::error::{Error, Result};

/// The field manager of writes made through the admin API.
pub const FIELD_MANAGER: &str = "tollgate-admin-api";

/// Resources as Kubernetes custom resources.
#[derive(Clone)]
pub struct KubeStore {
    client: kube_client::Client,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore").finish_non_exhaustive()
    }
}

/// The API resource (group, version, plural) of a kind.
pub fn api_resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::IpToken => ApiResource::erase::<tollgate_crds::IpToken>(&()),
        Kind::Budget => ApiResource::erase::<tollgate_crds::Budget>(&()),
        Kind::SafetyPolicy => ApiResource::erase::<tollgate_crds::safety::SafetyPolicy>(&()),
        Kind::Agent => ApiResource::erase::<tollgate_crds::Agent>(&()),
        Kind::Sandbox => ApiResource::erase::<tollgate_crds::Sandbox>(&()),
        Kind::DataPlane => ApiResource::erase::<tollgate_crds::DataPlane>(&()),
    }
}

fn ms(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> i64 {
    t.map_or(0, |t| t.0.as_millisecond())
}

/// The stored form of a custom resource: the document without status and server-side
/// bookkeeping.
fn stored(kind: Kind, o: DynamicObject) -> Result<StoredResource> {
    let meta = &o.metadata;
    let (namespace, name) =
        (meta.namespace.clone().unwrap_or_else(|| "default".into()), meta.name.clone().unwrap_or_default());
    let generation = meta.generation.unwrap_or(1);
    let created = ms(meta.creation_timestamp.as_ref());
    let updated = meta
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.time.as_ref())
        .map(|t| t.0.as_millisecond())
        .max()
        .unwrap_or(created);
    let mut document = serde_json::to_value(&o)?;
    if let Some(obj) = document.as_object_mut() {
        obj.remove("status");
    }
    if let Some(m) = document.get_mut("metadata").and_then(Value::as_object_mut) {
        for server_side in ["managedFields", "resourceVersion", "uid", "generation", "creationTimestamp"] {
            m.remove(server_side);
        }
    }
    Ok(StoredResource {
        kind,
        namespace,
        name,
        generation,
        document,
        created_at_ms: created,
        updated_at_ms: updated,
    })
}

fn conflict_or_missing(e: kube_client::Error, what: &str) -> Error {
    match &e {
        kube_client::Error::Api(s) if s.code == 409 => Error::Conflict(format!("{what}: {}", s.message)),
        kube_client::Error::Api(s) if s.code == 404 => Error::NotFound(format!("no {what}")),
        _ => Error::Kube(e),
    }
}

impl KubeStore {
    /// A store on `client`'s cluster.
    pub fn new(client: kube_client::Client) -> Self {
        Self { client }
    }

    fn api(&self, kind: Kind, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &api_resource(kind))
    }
}

#[async_trait::async_trait]
impl ResourceStore for KubeStore {
    async fn list(&self, kind: Option<Kind>) -> Result<Vec<StoredResource>> {
        let kinds: Vec<Kind> = kind.map_or_else(|| Kind::ALL.to_vec(), |k| vec![k]);
        let mut out = Vec::new();
        for k in kinds {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &api_resource(k));
            for o in api.list(&ListParams::default()).await? {
                out.push(stored(k, o)?);
            }
        }
        out.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
        Ok(out)
    }

    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<StoredResource>> {
        match self.api(kind, namespace).get_opt(name).await? {
            Some(o) => Ok(Some(stored(kind, o)?)),
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        document: Value,
        mode: WriteMode,
    ) -> Result<StoredResource> {
        let api = self.api(kind, namespace);
        let what = format!("{} {namespace}/{name}", kind.as_str());
        let mut object: DynamicObject = serde_json::from_value(document)?;
        object.metadata.namespace = Some(namespace.to_owned());
        let written = match mode {
            WriteMode::Create => api
                .create(&PostParams::default(), &object)
                .await
                .map_err(|e| conflict_or_missing(e, &what))?,
            WriteMode::Replace(expected) => {
                let current =
                    api.get_opt(name).await?.ok_or_else(|| Error::NotFound(format!("no {what}")))?;
                if let Some(g) = expected
                    && current.metadata.generation != Some(g)
                {
                    return Err(Error::Conflict(format!(
                        "{what} changed since generation {g} (it is at {}); read it again",
                        current.metadata.generation.unwrap_or(0)
                    )));
                }
                // NB: the resourceVersion makes the API server refuse a concurrent change.
                object.metadata.resource_version = current.metadata.resource_version;
                api.replace(name, &PostParams::default(), &object)
                    .await
                    .map_err(|e| conflict_or_missing(e, &what))?
            }
            WriteMode::Apply => api
                .patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object))
                .await
                .map_err(|e| conflict_or_missing(e, &what))?,
        };
        stored(kind, written)
    }

    async fn put_provider_key(&self, namespace: &str, secret: &str, key: &str, value: &str) -> Result<()> {
        use k8s_openapi::api::core::v1::Secret;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        // Server-side apply of just this key: other keys of the Secret stay as they are.
        let patch = Secret {
            metadata: ObjectMeta {
                name: Some(secret.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some([("app.kubernetes.io/managed-by".to_owned(), FIELD_MANAGER.to_owned())].into()),
                ..ObjectMeta::default()
            },
            string_data: Some([(key.to_owned(), value.to_owned())].into()),
            ..Secret::default()
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        api.patch(secret, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(|e| conflict_or_missing(e, &format!("Secret {namespace}/{secret}")))?;
        Ok(())
    }

    async fn provider_key(&self, namespace: &str, secret: &str, key: &str) -> Result<Option<KeyState>> {
        use k8s_openapi::api::core::v1::Secret;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let Some(s) = api.get_opt(secret).await? else { return Ok(None) };
        if !s.data.as_ref().is_some_and(|d| d.contains_key(key)) {
            return Ok(None);
        }
        // The newest write any field manager made, else the creation time.
        let written = s.metadata.managed_fields.iter().flatten().filter_map(|m| m.time.as_ref()).max();
        let at = written.or(s.metadata.creation_timestamp.as_ref());
        Ok(Some(KeyState { updated_at_ms: at.map(|t| t.0.as_millisecond()) }))
    }

    async fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<StoredResource>> {
        let Some(existing) = self.get(kind, namespace, name).await? else { return Ok(None) };
        match self.api(kind, namespace).delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(Some(existing)),
            Err(kube_client::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(Error::Kube(e)),
        }
    }
}
