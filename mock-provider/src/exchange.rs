//! The steps every generating endpoint shares: read the control headers and body, wait the
//! latency, and decide on a fault.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::control::Control;
use crate::delivery::{self, Cut};
use crate::flavor::Flavor;
use crate::server::KillSwitch;
use crate::{Fault, RequestTag, Shared};

/// Request bodies past this are refused; generous, as images arrive inline as base64.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One request on its way to a response.
pub(crate) struct Exchange {
    pub(crate) flavor: Flavor,
    pub(crate) control: Control,
    pub(crate) kill: Option<KillSwitch>,
    pub(crate) tag: RequestTag,
    body: Bytes,
}

impl Exchange {
    /// Reads the control headers and the whole body; a bad control header is a 400.
    pub(crate) async fn receive(flavor: Flavor, req: Request) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let control = Control::from_headers(&parts.headers).map_err(|m| flavor.bad_request(&m))?;
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|e| flavor.bad_request(&format!("could not read the request body: {e}")))?;
        Ok(Self {
            flavor,
            control,
            kill: parts.extensions.get::<KillSwitch>().cloned(),
            tag: parts.extensions.get::<RequestTag>().copied().unwrap_or_default(),
            body,
        })
    }

    /// The body as JSON; malformed JSON is a 400 in the endpoint's error shape.
    #[expect(
        clippy::result_large_err,
        reason = "an early response is the axum idiom; it is built once, on the error path"
    )]
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T, Response> {
        serde_json::from_slice(&self.body).map_err(|e| {
            self.flavor.bad_request(&format!("could not parse the JSON body of your request: {e}"))
        })
    }

    /// Waits the latency, then applies the fault decided for this request. A fault that
    /// replaces the response comes back as `Err`; one that cuts the body short comes back
    /// as `Ok(Some(cut))` for the caller to apply to its body.
    pub(crate) async fn prepare(&self, shared: &Shared) -> Result<Option<Cut>, Response> {
        let latency = self.control.latency(shared);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let fault = self.control.fault(shared);
        if let Some(fault) = &fault {
            tracing::debug!(%fault, "injecting fault");
        }
        match fault {
            None => Ok(None),
            Some(Fault::Status(code)) => Err(self.flavor.status_fault(code)),
            Some(Fault::RateLimited { retry_after_secs }) => Err(self.flavor.rate_limited(retry_after_secs)),
            Some(Fault::ResetBeforeBody) => Err(delivery::reset_before(self.kill.as_ref()).await),
            Some(cutting) => Ok(Cut::of(Some(&cutting))),
        }
    }
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
