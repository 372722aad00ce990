//! Job requests from flags and files: `-f FILE` (JSON or YAML, `-` for standard input) gives
//! the base, flags override it field by field, and the API's own types decide what is valid
//! (unknown fields are refused, so a typo in a file is an error, not a silently ignored setting).

use std::io::Read;
use std::path::Path;

use raftcron_client::{CreateJob, UpdateJob};
use serde_json::{Map, Value};

use crate::args::JobSpecArgs;
use crate::exit::CliError;

/// Largest job file read (the API takes at most 256 KB).
const MAX_FILE: u64 = 1024 * 1024;

/// The body of `POST /api/v1/jobs`.
pub fn create_request(args: &JobSpecArgs, stdin: &mut dyn Read) -> Result<CreateJob, CliError> {
    let mut fields = merged(args, stdin)?;
    fields.entry("method").or_insert_with(|| Value::from("GET"));
    serde_json::from_value(Value::Object(fields)).map_err(|e| {
        CliError::usage_hint(
            format!("invalid job: {e}"),
            "give --name, --target and --cron (and optionally --method), or -f FILE with name, url and cron_expression",
        )
    })
}

/// The body of `PATCH /api/v1/jobs/{id}`.
pub fn update_request(args: &JobSpecArgs, stdin: &mut dyn Read) -> Result<UpdateJob, CliError> {
    let fields = merged(args, stdin)?;
    if fields.is_empty() {
        return Err(CliError::usage_hint("nothing to change", "give the fields to change as flags or with -f FILE"));
    }
    serde_json::from_value(Value::Object(fields)).map_err(|e| CliError::usage(format!("invalid job change: {e}")))
}

/// The file's fields with the flags laid over them.
fn merged(args: &JobSpecArgs, stdin: &mut dyn Read) -> Result<Map<String, Value>, CliError> {
    let mut fields = match &args.file {
        Some(path) => read_document(path, stdin)?,
        None => Map::new(),
    };
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            fields.insert(k.to_string(), v);
        }
    };
    set("name", args.name.clone().map(Value::from));
    set("url", args.url.clone().map(Value::from));
    set("method", args.method.as_ref().map(|m| Value::from(m.to_ascii_uppercase())));
    set("cron_expression", args.cron_expression.clone().map(Value::from));
    set("timezone", args.timezone.clone().map(Value::from));
    if !args.headers.is_empty() {
        let mut map = Map::new();
        for h in &args.headers {
            let (name, value) = parse_header(h)?;
            map.insert(name, Value::from(value));
        }
        set("headers", Some(Value::Object(map)));
    }
    set("body", args.body.clone().map(Value::from));
    if let Some(path) = &args.body_file {
        let body = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("reading the body file {}: {e}", path.display())))?;
        set("body", Some(Value::from(body)));
    }
    set("timeout_seconds", args.timeout_seconds.map(Value::from));
    set("max_retries", args.max_retries.map(Value::from));
    set("retry_delay_seconds", args.retry_delay_seconds.map(Value::from));
    set("is_active", args.active.map(Value::from));
    set("notify_on_failure", args.notify_on_failure.map(Value::from));
    set("notify_after_failures", args.notify_after_failures.map(Value::from));
    set("starting_deadline_seconds", args.starting_deadline_seconds.map(Value::from));
    set("concurrency_policy", args.concurrency_policy.clone().map(Value::from));
    set("delivery", args.delivery.clone().map(Value::from));
    set("follow_redirects", args.follow_redirects.map(Value::from));
    Ok(fields)
}

/// `Name: value` -> (name, value). The value is never echoed in an error.
pub fn parse_header(raw: &str) -> Result<(String, String), CliError> {
    match raw.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.trim().to_string())),
        _ => Err(CliError::usage("--header: expected \"Name: value\"")),
    }
}

/// A JSON or YAML mapping from `path` (`-`: `stdin`).
fn read_document(path: &Path, stdin: &mut dyn Read) -> Result<Map<String, Value>, CliError> {
    let shown = if path == Path::new("-") { "standard input".to_string() } else { path.display().to_string() };
    let mut text = String::new();
    let read = if path == Path::new("-") {
        stdin.take(MAX_FILE + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_FILE + 1).read_to_string(&mut text))
    };
    read.map_err(|e| CliError::usage(format!("reading {shown}: {e}")))?;
    if text.len() as u64 > MAX_FILE {
        return Err(CliError::usage(format!("{shown} is larger than {MAX_FILE} bytes")));
    }
    parse_document(&text).map_err(|e| CliError::usage(format!("{shown}: {e}")))
}

/// JSON when it looks like JSON, YAML otherwise; either way a mapping.
pub fn parse_document(text: &str) -> Result<Map<String, Value>, String> {
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?
    } else {
        serde_norway::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?
    };
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("expected a mapping of job fields (name, url, method, cron_expression, ...)".into()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command, JobsCommand};

    fn spec(argv: &[&str]) -> JobSpecArgs {
        let mut full = vec!["raftcronctl", "jobs"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Jobs(JobsCommand::Create(s)) => s,
            Command::Jobs(JobsCommand::Update { spec, .. }) => spec,
            other => panic!("not a job spec: {other:?}"),
        }
    }

    #[test]
    fn flags_make_a_create_request_with_get_by_default() {
        let s =
            spec(&["create", "--name", "n", "--target", "https://e.com", "--cron", "*/5 * * * *", "-H", "X-A: b: c"]);
        let req = create_request(&s, &mut std::io::empty()).unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.cron_expression, "*/5 * * * *");
        assert_eq!(req.headers.unwrap()["X-A"], "b: c");
    }

    #[test]
    fn a_yaml_file_from_stdin_is_the_base_and_flags_win() {
        let yaml =
            "name: from-file\nurl: https://e.com/a\nmethod: post\ncron_expression: '0 * * * *'\nmax_retries: 2\n";
        let s = spec(&["create", "-f", "-", "--name", "from-flag", "--method", "put"]);
        let req = create_request(&s, &mut yaml.as_bytes()).unwrap();
        assert_eq!(req.name, "from-flag");
        assert_eq!(req.method, "PUT");
        assert_eq!(req.max_retries, Some(2));
    }

    #[test]
    fn json_files_parse_and_unknown_fields_are_refused() {
        let m = parse_document(r#"{"name": "a", "url": "https://e.com"}"#).unwrap();
        assert_eq!(m["name"], "a");
        let s = spec(&["create", "-f", "-"]);
        let bad = r#"{"name": "a", "url": "https://e.com", "cron_expression": "* * * * *", "retries": 3}"#;
        let e = create_request(&s, &mut bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("retries"), "{e}");
        assert!(parse_document("- a\n- b\n").is_err());
    }

    #[test]
    fn a_create_without_required_fields_is_a_usage_error_with_a_hint() {
        let e = create_request(&spec(&["create", "--name", "n"]), &mut std::io::empty()).unwrap_err();
        assert_eq!(e.exit(), crate::exit::Exit::Usage);
        assert!(e.hint().unwrap_or_default().contains("--cron"));
    }

    #[test]
    fn updates_carry_only_the_given_fields() {
        let id = uuid::Uuid::new_v4().to_string();
        let req =
            update_request(&spec(&["update", &id, "--active", "false", "--body", ""]), &mut std::io::empty()).unwrap();
        assert_eq!(req, UpdateJob { is_active: Some(false), body: Some(String::new()), ..UpdateJob::default() });
        assert!(update_request(&spec(&["update", &id]), &mut std::io::empty()).is_err());
    }

    #[test]
    fn header_values_never_appear_in_errors() {
        let e = parse_header("no-colon-secret").unwrap_err();
        assert!(!e.to_string().contains("secret"));
        assert_eq!(parse_header("A:b").unwrap(), ("A".into(), "b".into()));
    }
}
