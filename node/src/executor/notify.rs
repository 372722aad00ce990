//! Failure and recovery notices to the cluster's webhooks (`--notify-webhook`).
//!
//! A notice is posted as JSON to every configured URL, retried a few times with backoff, from a
//! task of its own: delivery never blocks firing. Webhook URLs are the operator's, so they are not
//! subject to the jobs' SSRF guard. Notices carry no header values or bodies of jobs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::clock::ms_to_utc;
use crate::metrics::{Metrics, NotifyOutcome};
use crate::state::firing::{Alert, AlertKind};

const ATTEMPTS: u32 = 4;

/// Posts alerts to the configured webhooks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
    webhooks: Arc<Vec<String>>,
    metrics: Metrics,
}

impl Notifier {
    pub fn new(webhooks: Vec<String>, metrics: Metrics) -> Result<Notifier, reqwest::Error> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("raftcron/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Notifier { client, webhooks: Arc::new(webhooks), metrics })
    }

    /// The JSON body of a notice.
    pub fn payload(alert: &Alert, now_ms: i64) -> serde_json::Value {
        let (event, details) = match &alert.kind {
            AlertKind::Failing { consecutive, error, http_status } => (
                "job.failing",
                json!({"consecutive_failures": consecutive, "error": error, "http_status": http_status}),
            ),
            AlertKind::Recovered { after_failures } => ("job.recovered", json!({"after_failures": after_failures})),
        };
        json!({
            "event": event,
            "tenant": alert.tenant.0,
            "job": {"id": alert.job.to_string(), "name": alert.job_name},
            "run": {"id": alert.fire_id.to_string()},
            "details": details,
            "sent_at": ms_to_utc(now_ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }

    /// Sends each alert to every webhook in the background.
    pub fn notify(&self, alerts: Vec<Alert>, now_ms: i64) {
        if self.webhooks.is_empty() {
            return;
        }
        for alert in alerts {
            let body = Notifier::payload(&alert, now_ms);
            for url in self.webhooks.iter() {
                let (client, url, body, metrics) =
                    (self.client.clone(), url.clone(), body.clone(), self.metrics.clone());
                tokio::spawn(async move {
                    for attempt in 1..=ATTEMPTS {
                        match client.post(&url).json(&body).send().await {
                            Ok(r) if r.status().is_success() => return metrics.notify.alert(NotifyOutcome::Delivered),
                            Ok(r) => {
                                tracing::warn!(status = r.status().as_u16(), attempt, "notification webhook refused")
                            }
                            Err(e) => tracing::warn!(error = %e, attempt, "notification webhook unreachable"),
                        }
                        tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                    }
                    tracing::error!("notification dropped after {ATTEMPTS} attempts");
                    metrics.notify.alert(NotifyOutcome::Dropped);
                });
            }
        }
    }
}
