use std::collections::BTreeMap;

use raftcron_client::{CreateJob, UpdateJob};

use super::*;

fn minimal() -> CreateJob {
    CreateJob {
        name: "ping".into(),
        url: "https://example.com/ping".into(),
        method: "GET".into(),
        cron_expression: "*/5 * * * *".into(),
        ..CreateJob::default()
    }
}

fn fields(e: ValidationErrors) -> Vec<&'static str> {
    e.0.iter().map(|f| f.field).collect()
}

#[test]
fn a_minimal_job_gets_the_documented_defaults() {
    let spec = JobSpec::from_create(minimal()).unwrap();
    assert_eq!(spec.timezone, "UTC");
    assert_eq!(spec.timeout_seconds, 30);
    assert_eq!(spec.max_retries, 3);
    assert_eq!(spec.retry_delay_seconds, 60);
    assert!(spec.is_active);
    assert!(spec.notify_on_failure);
    assert_eq!(spec.notify_after_failures, 1);
    assert!(spec.headers.is_empty());
    assert_eq!(spec.body, None);
    assert_eq!(spec.starting_deadline_seconds, 300);
    assert_eq!(spec.concurrency_policy, ConcurrencyPolicy::Allow);
    assert_eq!(spec.delivery, Delivery::AtLeastOnce);
    assert_eq!(spec.follow_redirects, 0);
}

#[test]
fn each_rule_names_its_field() {
    let cases: Vec<(CreateJob, &str)> = vec![
        (CreateJob { name: "".into(), ..minimal() }, "name"),
        (CreateJob { name: "x".repeat(101), ..minimal() }, "name"),
        (CreateJob { url: "ftp://example.com".into(), ..minimal() }, "url"),
        (CreateJob { url: "not a url".into(), ..minimal() }, "url"),
        (CreateJob { url: "https://user:pw@example.com".into(), ..minimal() }, "url"),
        (CreateJob { method: "TRACE".into(), ..minimal() }, "method"),
        (CreateJob { cron_expression: "0 0 30 2 *".into(), ..minimal() }, "cron_expression"),
        (CreateJob { cron_expression: "61 * * * *".into(), ..minimal() }, "cron_expression"),
        (CreateJob { timezone: Some("Mars/Base".into()), ..minimal() }, "timezone"),
        (CreateJob { timeout_seconds: Some(0), ..minimal() }, "timeout_seconds"),
        (CreateJob { timeout_seconds: Some(121), ..minimal() }, "timeout_seconds"),
        (CreateJob { max_retries: Some(11), ..minimal() }, "max_retries"),
        (CreateJob { retry_delay_seconds: Some(9), ..minimal() }, "retry_delay_seconds"),
        (CreateJob { retry_delay_seconds: Some(3601), ..minimal() }, "retry_delay_seconds"),
        (CreateJob { notify_after_failures: Some(0), ..minimal() }, "notify_after_failures"),
        (CreateJob { notify_after_failures: Some(11), ..minimal() }, "notify_after_failures"),
        (CreateJob { body: Some("{}".into()), ..minimal() }, "body"),
        (CreateJob { starting_deadline_seconds: Some(9), ..minimal() }, "starting_deadline_seconds"),
        (CreateJob { starting_deadline_seconds: Some(86_401), ..minimal() }, "starting_deadline_seconds"),
        (CreateJob { concurrency_policy: Some("replace".into()), ..minimal() }, "concurrency_policy"),
        (CreateJob { delivery: Some("exactly_once".into()), ..minimal() }, "delivery"),
        (CreateJob { follow_redirects: Some(6), ..minimal() }, "follow_redirects"),
        (CreateJob { follow_redirects: Some(u32::MAX), ..minimal() }, "follow_redirects"),
        (CreateJob { method: "POST".into(), body: Some("x".repeat(100 * 1024 + 1)), ..minimal() }, "body"),
        (
            CreateJob { headers: Some(BTreeMap::from([("X-Big".to_string(), "v".repeat(8 * 1024))])), ..minimal() },
            "headers",
        ),
        (
            CreateJob { headers: Some(BTreeMap::from([("X-A".to_string(), "a\r\nb".to_string())])), ..minimal() },
            "headers",
        ),
        (
            CreateJob { headers: Some(BTreeMap::from([("Bad Name".to_string(), "v".to_string())])), ..minimal() },
            "headers",
        ),
        (CreateJob { headers: Some(BTreeMap::from([("Host".to_string(), "v".to_string())])), ..minimal() }, "headers"),
        (
            CreateJob {
                headers: Some(BTreeMap::from([("X-Raftcron-Job-Id".to_string(), "v".to_string())])),
                ..minimal()
            },
            "headers",
        ),
    ];
    for (req, field) in cases {
        let err = JobSpec::from_create(req.clone()).expect_err(field);
        assert_eq!(fields(err.clone()), vec![field], "{req:?}: {err}");
        assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
    }
}

#[test]
fn all_problems_are_reported_together() {
    let req = CreateJob { name: "".into(), url: "ftp://x".into(), max_retries: Some(99), ..minimal() };
    assert_eq!(fields(JobSpec::from_create(req).unwrap_err()), vec!["name", "url", "max_retries"]);
}

#[test]
fn updates_are_checked_against_the_current_job() {
    let spec = JobSpec::from_create(CreateJob { method: "POST".into(), body: Some("{}".into()), ..minimal() }).unwrap();
    // Switching to GET while a body is set must clear the body too.
    let err = spec.validate_update(UpdateJob { method: Some("GET".into()), ..UpdateJob::default() }).unwrap_err();
    assert_eq!(fields(err), vec!["body"]);
    let patch = spec
        .validate_update(UpdateJob { method: Some("GET".into()), body: Some(String::new()), ..UpdateJob::default() })
        .unwrap();
    let mut updated = spec.clone();
    updated.apply(patch);
    assert_eq!(updated.method, HttpMethod::Get);
    assert_eq!(updated.body, None);
    // A zone change is validated with the current expression.
    let err =
        spec.validate_update(UpdateJob { timezone: Some("Nowhere/City".into()), ..UpdateJob::default() }).unwrap_err();
    assert_eq!(fields(err), vec!["timezone"]);
}

#[test]
fn header_values_are_masked() {
    let spec = JobSpec::from_create(CreateJob {
        headers: Some(BTreeMap::from([("X-Token".to_string(), "secret".to_string())])),
        ..minimal()
    })
    .unwrap();
    assert_eq!(spec.masked_headers().get("X-Token").map(String::as_str), Some(raftcron_client::MASKED_VALUE));
}

#[test]
fn follow_redirects_is_0_to_5_on_create_and_update() {
    for n in 0..=5 {
        let spec = JobSpec::from_create(CreateJob { follow_redirects: Some(n), ..minimal() }).unwrap();
        assert_eq!(spec.follow_redirects, n);
    }
    let err = JobSpec::from_create(CreateJob { follow_redirects: Some(6), ..minimal() }).unwrap_err();
    assert_eq!(err.to_string(), "follow_redirects: must be between 0 and 5, got 6");

    let spec = JobSpec::from_create(minimal()).unwrap();
    let patch = spec.validate_update(UpdateJob { follow_redirects: Some(3), ..UpdateJob::default() }).unwrap();
    assert_eq!(patch.follow_redirects, Some(3));
    let mut updated = spec.clone();
    updated.apply(patch);
    assert_eq!(updated.follow_redirects, 3);
    // An update that leaves it out keeps it; 0 turns redirects off again.
    let patch = updated.validate_update(UpdateJob { max_retries: Some(1), ..UpdateJob::default() }).unwrap();
    assert_eq!(patch.follow_redirects, None);
    updated.apply(patch);
    assert_eq!(updated.follow_redirects, 3);
    updated.apply(updated.validate_update(UpdateJob { follow_redirects: Some(0), ..UpdateJob::default() }).unwrap());
    assert_eq!(updated.follow_redirects, 0);

    let err = spec.validate_update(UpdateJob { follow_redirects: Some(6), ..UpdateJob::default() }).unwrap_err();
    assert_eq!(fields(err), vec!["follow_redirects"]);
}
