//! Leader election on a `coordination.k8s.io/v1` Lease, so only one operator replica runs
//! the controllers while every replica serves the admin API.
//!
//! The protocol is client-go's: the holder renews `renewTime` every [`LeaseSettings::renew_every`];
//! a Lease not renewed for `leaseDurationSeconds` may be taken over; every write carries
//! the `resourceVersion` it read, so two candidates racing for one Lease cannot both win
//! (the loser gets 409 Conflict). [`hold`] only returns when leadership is lost or cannot
//! be confirmed within the lease duration — the caller then exits, because a replica that
//! is no longer sure it leads must stop writing before another one starts.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube_client::Api;
use kube_client::api::PostParams;

use crate::error::{Error, Result};

/// Where the lease lives and how it is kept.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// The Lease's namespace (the operator's own).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews it.
    pub renew_every: Duration,
    /// How often a candidate retries.
    pub retry_every: Duration,
}

impl LeaseSettings {
    /// client-go's defaults: 15 s lease, renewed every 5 s, candidates retry every 2 s.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// What a candidate may do with a Lease it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// It is ours: renew it.
    Renew,
    /// Someone else holds it and renews it.
    Wait {
        /// Who.
        holder: String,
    },
}

/// Decides from a Lease's spec at `now`.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else { return Decision::Acquire };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let expired = match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
        Some(MicroTime(renewed)) => renewed.checked_add(duration).map_or(true, |until| until < now),
        None => true,
    };
    if expired { Decision::Acquire } else { Decision::Wait { holder: holder.to_owned() } }
}

fn lease_seconds(s: &LeaseSettings) -> i32 {
    i32::try_from(s.duration.as_secs()).unwrap_or(i32::MAX)
}

/// One attempt to become or stay leader. `Ok(false)`: someone else leads (or won a race).
pub async fn try_lead(api: &Api<Lease>, s: &LeaseSettings) -> Result<bool> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(s.name.clone()),
                namespace: Some(s.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(s.identity.clone()),
                lease_duration_seconds: Some(lease_seconds(s)),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube_client::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        };
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    match decide(lease.spec.as_ref(), &s.identity, now) {
        Decision::Wait { .. } => return Ok(false),
        Decision::Renew => spec.renew_time = Some(MicroTime(now)),
        Decision::Acquire => {
            spec.holder_identity = Some(s.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.renew_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
    }
    spec.lease_duration_seconds = Some(lease_seconds(s));
    lease.spec = Some(spec);
    // NB: `replace` sends the resourceVersion read above: a concurrent writer makes it 409.
    match api.replace(&s.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube_client::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Waits until this replica leads.
pub async fn acquire(api: &Api<Lease>, s: &LeaseSettings) {
    let mut last_holder = String::new();
    loop {
        match try_lead(api, s).await {
            Ok(true) => {
                tracing::info!(lease = %s.name, identity = %s.identity, "leading");
                return;
            }
            Ok(false) => {
                let holder = api
                    .get_opt(&s.name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|l| l.spec.and_then(|sp| sp.holder_identity))
                    .unwrap_or_default();
                if holder != last_holder {
                    tracing::info!(lease = %s.name, %holder, "another replica leads; standing by");
                    last_holder = holder;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the leader lease; retrying"),
        }
        tokio::time::sleep(s.retry_every).await;
    }
}

/// Keeps the lease renewed. Returns only when leadership is lost: another holder took it,
/// or no renewal succeeded for a whole lease duration.
pub async fn hold(api: &Api<Lease>, s: &LeaseSettings) -> Error {
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(s.renew_every).await;
        match try_lead(api, s).await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => return Error::Lease(format!("lease {} was taken by another replica", s.name)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the leader lease");
                if renewed.elapsed() >= s.duration {
                    return Error::Lease(format!("lease {} not renewed for {:?}: {e}", s.name, s.duration));
                }
            }
        }
    }
}

/// Gives the lease up (at shutdown), so another replica takes over at once rather than
/// after the lease expires.
pub async fn release(api: &Api<Lease>, s: &LeaseSettings) -> Result<()> {
    let Some(mut lease) = api.get_opt(&s.name).await? else { return Ok(()) };
    let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
    if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    api.replace(&s.name, &PostParams::default(), &lease).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_s: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_s).unwrap())),
            ..LeaseSpec::default()
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn decides_like_client_go() {
        assert_eq!(decide(None, "a", at(100)), Decision::Acquire);
        assert_eq!(decide(Some(&spec("a", 90)), "a", at(100)), Decision::Renew);
        assert_eq!(decide(Some(&spec("b", 90)), "a", at(100)), Decision::Wait { holder: "b".into() });
        assert_eq!(decide(Some(&spec("b", 80)), "a", at(100)), Decision::Acquire, "expired 5 s ago");
        assert_eq!(decide(Some(&spec("", 99)), "a", at(100)), Decision::Acquire, "released");
    }
}
