//! The failover rules against scripted local HTTP servers on 127.0.0.1: which failures move on
//! to the next node, which end the call, and how answers decode.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::types::{ListQuery, UpdateJob};

/// What a scripted server does with each request.
#[derive(Clone)]
enum Script {
    /// Answer with this status and body.
    Answer(u16, &'static str),
    /// Read the request, then close the connection without answering.
    Drop,
}

/// A server answering every request with `script`; returns its base URL and the request lines
/// it saw.
async fn server(script: Script) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for _ in 0..100 {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let head = read_request(&mut sock).await;
            log.lock().unwrap().push(head.lines().next().unwrap_or_default().to_string());
            match &script {
                Script::Answer(status, body) => {
                    let ct = if body.starts_with('{') { "application/json" } else { "text/plain" };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                }
                Script::Drop => {}
            }
            let _ = sock.shutdown().await;
        }
    });
    (url, seen)
}

/// Reads one request (head and a `content-length` body); returns the head.
async fn read_request(sock: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        let Ok(n) = sock.read(&mut chunk).await else { break };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0usize);
            if buf.len() >= end + 4 + len {
                return text[..end].to_string();
            }
        }
    }
    String::from_utf8_lossy(&buf).to_string()
}

/// A loopback URL nothing listens on.
async fn closed_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

fn client(urls: Vec<String>) -> Client {
    Client::builder(urls, "rcn_test").timeout(Duration::from_secs(5)).build().unwrap()
}

const JOB_LIST: &str = r#"{"jobs":[],"page":1,"page_size":50,"total_count":0}"#;
const NO_LEADER: &str = r#"{"error":"NO_LEADER","message":"the cluster has no leader right now; retry shortly"}"#;

#[tokio::test]
async fn a_refused_connection_and_a_503_move_on_to_the_next_node() {
    let (busy, busy_seen) = server(Script::Answer(503, NO_LEADER)).await;
    let (ok, ok_seen) = server(Script::Answer(200, JOB_LIST)).await;
    let c = client(vec![closed_url().await, busy, ok]);
    let list = c.list_jobs(&ListQuery::default()).await.unwrap();
    assert_eq!(list.total_count, 0);
    assert_eq!(busy_seen.lock().unwrap().len(), 1);
    // The node that answered is asked first next time.
    c.list_jobs(&ListQuery::default()).await.unwrap();
    assert_eq!(busy_seen.lock().unwrap().len(), 1);
    assert_eq!(ok_seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn every_node_down_is_unreachable_and_every_503_is_unavailable() {
    let c = client(vec![closed_url().await, closed_url().await]);
    assert!(matches!(c.cluster().await, Err(ClientError::Unreachable(_))));
    let (busy, _) = server(Script::Answer(503, NO_LEADER)).await;
    let c = client(vec![closed_url().await, busy]);
    match c.cluster().await {
        Err(ClientError::Unavailable(m)) => assert!(m.contains("NO_LEADER"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_write_whose_answer_is_lost_is_unknown_and_not_retried() {
    let (lost, lost_seen) = server(Script::Drop).await;
    let (ok, ok_seen) = server(Script::Answer(200, "{}")).await;
    let c = client(vec![lost, ok]);
    let id = uuid::Uuid::new_v4();
    let r = c.update_job(id, &UpdateJob { is_active: Some(false), ..UpdateJob::default() }).await;
    assert!(matches!(r, Err(ClientError::Unknown(_))), "{r:?}");
    assert_eq!(lost_seen.lock().unwrap().len(), 1);
    assert!(ok_seen.lock().unwrap().is_empty(), "a write with a lost answer was sent again");
}

#[tokio::test]
async fn a_read_whose_answer_is_lost_moves_on() {
    let (lost, _) = server(Script::Drop).await;
    let (ok, _) = server(Script::Answer(200, JOB_LIST)).await;
    let c = client(vec![lost, ok]);
    assert!(c.list_jobs(&ListQuery::default()).await.is_ok());
}

#[tokio::test]
async fn outcome_unknown_from_the_node_is_unknown() {
    let body = r#"{"error":"OUTCOME_UNKNOWN","message":"the write was sent but its outcome is unknown"}"#;
    let (u, _) = server(Script::Answer(504, body)).await;
    let r = client(vec![u]).delete_job(uuid::Uuid::new_v4()).await;
    assert!(matches!(r, Err(ClientError::Unknown(_))), "{r:?}");
}

#[tokio::test]
async fn errors_keep_their_code_and_204_decodes() {
    let body = r#"{"error":"NOT_FOUND","message":"key \"x\" not found"}"#;
    let (nf, seen) = server(Script::Answer(404, body)).await;
    let e = client(vec![nf]).get_key("a b/c").await.unwrap_err();
    assert_eq!(e.code(), Some(crate::ErrorCode::NotFound));
    assert_eq!(e.status(), Some(404));
    assert_eq!(seen.lock().unwrap()[0], "GET /api/v1/keys/a%20b%2Fc HTTP/1.1");
    let (gone, _) = server(Script::Answer(204, "")).await;
    assert!(client(vec![gone]).revoke_key("k1").await.unwrap().unconfirmed_nodes.is_empty());
    let (html, _) = server(Script::Answer(502, "bad gateway")).await;
    let e = client(vec![html]).cluster().await.unwrap_err();
    assert!(matches!(e, ClientError::Status { status: 502, .. }), "{e:?}");
}

#[tokio::test]
async fn list_queries_reach_the_node() {
    let (ok, seen) = server(Script::Answer(200, JOB_LIST)).await;
    let c = client(vec![ok]);
    let q = ListQuery { page: Some(2), page_size: Some(10), consistency: Some(crate::Consistency::Stale) };
    c.list_jobs(&q).await.unwrap();
    assert_eq!(seen.lock().unwrap()[0], "GET /api/v1/jobs?page=2&page_size=10&consistency=stale HTTP/1.1");
}

#[tokio::test]
async fn a_snapshot_is_saved_whole_or_not_at_all() {
    let dir = std::env::temp_dir().join(format!("raftcron-client-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, _) = server(Script::Answer(200, "SNAPSHOT-BYTES")).await;
    let path = dir.join("snap.bin");
    let n = client(vec![ok]).save_snapshot(&path).await.unwrap();
    assert_eq!(n, 14);
    assert_eq!(std::fs::read(&path).unwrap(), b"SNAPSHOT-BYTES");
    let denied = r#"{"error":"ACCESS_DENIED","message":"cluster:admin is needed"}"#;
    let (no, _) = server(Script::Answer(403, denied)).await;
    let other = dir.join("other.bin");
    let e = client(vec![no]).save_snapshot(&other).await.unwrap_err();
    assert_eq!(e.code(), Some(crate::ErrorCode::AccessDenied));
    assert!(!Path::new(&other).exists() && !dir.join("other.bin.partial").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_urls_and_empty_keys_are_configuration_errors() {
    for urls in [vec![], vec!["127.0.0.1:7001".to_string()], vec!["ftp://x".to_string()]] {
        assert!(matches!(Client::new(urls, "k"), Err(ClientError::Config(_))));
    }
    assert!(matches!(Client::new(vec!["http://127.0.0.1:1".into()], " "), Err(ClientError::Config(_))));
    let c = Client::new(vec!["http://127.0.0.1:1/".into()], "secret-key").unwrap();
    assert_eq!(c.urls(), ["http://127.0.0.1:1"]);
    assert!(!format!("{c:?}").contains("secret-key"));
}

#[test]
fn the_unconfirmed_nodes_header_parses_to_node_ids() {
    let mut h = reqwest::header::HeaderMap::new();
    assert!(crate::unconfirmed_nodes(&h).is_empty());
    h.insert(crate::UNCONFIRMED_NODES, reqwest::header::HeaderValue::from_static("2, 3"));
    assert_eq!(crate::unconfirmed_nodes(&h), vec![2, 3]);
}
