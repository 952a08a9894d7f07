//! The scratch database of a Restore: a Secret with a generated password, a Pod running the server and a
//! Service in front of it, all owned by the Restore (so deleting the Restore deletes them too). This
//! module creates them and waits for the server; `objects` builds them and `readiness` judges the Pod.

mod objects;
mod readiness;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::runtime::events::EventType;
use kube::{Api, Resource};

pub use self::objects::{
    generate_password, pod, scratch_connection, scratch_status, secret, service, COMPONENT, PASSWORD_KEY,
};
pub use self::readiness::{scratch_readiness, waited_for_server, ScratchReadiness};
use super::connection::Connection;
use super::{job_name, Run, SCRATCH_READY_TIMEOUT};
use crate::api::restore::RestorePhase;
use crate::controller::children::create_ignoring_existing;
use crate::controller::events::publish;
use crate::controller::ReconcileError;

/// Where the scratch server is: ready for the restore, still starting, or failed.
pub(super) enum Provisioned {
    Ready(Connection),
    Wait(Duration),
    Failed(String),
}

pub(super) async fn provision_scratch(
    run: &mut Run<'_>,
    spec: &crate::api::common::ScratchDatabase,
) -> Result<Provisioned, ReconcileError> {
    let scratch = match run.status.scratch.clone() {
        Some(existing) => existing,
        None => scratch_status(&run.name(), &run.namespace, spec),
    };
    let connection = scratch_connection(spec.engine, &scratch);
    let owner = run
        .restore
        .controller_owner_ref(&())
        .expect("a Restore read from the API has a name and uid");
    let labels = run.labels(COMPONENT);
    let pods: Api<Pod> = run.api();
    let pod = pods.get_opt(&scratch.pod).await?;
    if pod.is_none() && run.status.scratch.is_none() {
        // Intent first, then the objects (each created only if missing).
        run.status.scratch = Some(scratch.clone());
        run.status.target = Some(connection.describe());
        run.progress(
            RestorePhase::Provisioning,
            "Provisioning",
            format!("starting the scratch {}", connection.describe()),
        )
        .await?;
    }
    if pod.is_none() {
        let secrets: Api<Secret> = run.api();
        if secrets.get_opt(&scratch.secret).await?.is_none() {
            let password = match generate_password() {
                Ok(password) => password,
                Err(error) => {
                    return Ok(Provisioned::Failed(format!(
                        "cannot generate the scratch password: {error}"
                    )))
                }
            };
            create_ignoring_existing(
                &secrets,
                &secret(&scratch, &run.namespace, &labels, &owner, &password),
            )
            .await?;
        }
        let services: Api<Service> = run.api();
        if let Err(error) =
            create_ignoring_existing(&services, &service(&scratch, &run.namespace, &labels, &owner)).await
        {
            return Ok(Provisioned::Failed(format!(
                "cannot create the scratch Service {}: {error}",
                scratch.service
            )));
        }
        if let Err(error) = create_ignoring_existing(
            &pods,
            &objects::pod(spec, &scratch, &run.namespace, &labels, &owner),
        )
        .await
        {
            return Ok(Provisioned::Failed(format!(
                "cannot create the scratch Pod {}: {error}",
                scratch.pod
            )));
        }
        let note = format!(
            "started the scratch {} (Pod {})",
            connection.describe(),
            scratch.pod
        );
        publish(run.ctx, run.restore, EventType::Normal, "Provisioning", note).await;
        return Ok(Provisioned::Wait(Duration::from_secs(2)));
    }
    // Once the restore Job exists the server was ready; what happens to it later is the Job's to report.
    let jobs_api: Api<Job> = run.api();
    if jobs_api.get_opt(&job_name(&run.name())).await?.is_some() {
        return Ok(Provisioned::Ready(connection));
    }
    let timeout = spec
        .ready_timeout
        .as_ref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(SCRATCH_READY_TIMEOUT);
    let waited = waited_for_server(pod.as_ref(), run.status.start_time.as_ref(), &run.now);
    match scratch_readiness(pod.as_ref(), waited, timeout) {
        ScratchReadiness::Ready => Ok(Provisioned::Ready(connection)),
        ScratchReadiness::Failed(message) => Ok(Provisioned::Failed(message)),
        ScratchReadiness::Starting(why) => {
            let message = format!(
                "waiting for the scratch {} to accept connections: {why}",
                connection.describe()
            );
            run.progress(RestorePhase::Provisioning, "Provisioning", message)
                .await?;
            // The Pod watch wakes us on readiness; this is for the timeout.
            Ok(Provisioned::Wait(
                timeout.saturating_sub(waited).min(Duration::from_secs(15)) + Duration::from_millis(200),
            ))
        }
    }
}
