//! Over real sockets: `serve()` (HTTP/1.1 and h2c, real TCP resets) and the binary.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tollgate_mock_provider::{MockConfig, serve};

use crate::support::{chat_body, messages_body};

async fn spawn_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, MockConfig::default()));
    addr
}

#[derive(Debug, PartialEq)]
enum End {
    /// The server closed the connection cleanly (FIN).
    Eof,
    Error(io::ErrorKind),
    /// Nothing arrived for the idle timeout.
    Idle,
}

/// Sends a raw HTTP/1.1 request and reads until the connection ends or goes idle.
async fn exchange(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> (String, End) {
    exchange_until(addr, path, headers, body, Duration::from_secs(5), |_| false).await
}

/// Like `exchange`, but after `ready(bytes so far)` holds, gives up after `idle` of silence.
async fn exchange_until(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
    idle: Duration,
    ready: impl Fn(&str) -> bool,
) -> (String, End) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).await.unwrap();

    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received);
        let wait = if ready(&text) { idle } else { Duration::from_secs(5) };
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) => return (text.into_owned(), End::Idle),
            Ok(Ok(0)) => return (text.into_owned(), End::Eof),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(err)) => return (text.into_owned(), End::Error(err.kind())),
        }
    }
}

fn streaming(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

#[tokio::test]
async fn plain_request_over_http1_closes_cleanly() {
    let addr = spawn_server().await;
    let (text, end) = exchange(addr, "/v1/chat/completions", &[], &chat_body("hi")).await;
    assert_eq!(end, End::Eof, "an ordinary close is a FIN, not a reset");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\"content\":\"Mock reply to: hi\""));
}

#[tokio::test]
async fn reset_before_resets_the_connection_with_no_response() {
    let addr = spawn_server().await;
    let headers = [("x-mock-fault", "reset-before")];
    let (text, end) = exchange(addr, "/v1/chat/completions", &headers, &chat_body("hi")).await;
    assert_eq!(end, End::Error(io::ErrorKind::ConnectionReset));
    assert_eq!(text, "");
}

#[tokio::test]
async fn reset_mid_sends_headers_and_part_of_the_body_then_resets() {
    let addr = spawn_server().await;
    let headers = [("x-mock-fault", "reset-mid")];
    let (text, end) = exchange(addr, "/v1/chat/completions", &headers, &chat_body("hi")).await;
    assert_eq!(end, End::Error(io::ErrorKind::ConnectionReset));
    let (head, body) = text.split_once("\r\n\r\n").expect("headers arrived");
    assert!(head.starts_with("HTTP/1.1 200 OK"));
    let declared: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
    assert!(!body.is_empty() && body.len() < declared, "{} of {declared}", body.len());

    let (text, end) =
        exchange(addr, "/v1/messages", &headers, &streaming(messages_body("one two three"))).await;
    assert_eq!(end, End::Error(io::ErrorKind::ConnectionReset));
    assert!(text.contains("event: message_start"));
    assert!(text.contains("text_delta"));
    assert!(!text.contains("message_stop"));
}

#[tokio::test]
async fn stall_sends_the_first_chunk_then_nothing_on_an_open_connection() {
    let addr = spawn_server().await;
    let headers = [("x-mock-fault", "stall")];
    let first_content = |t: &str| t.contains("\"content\":\"Mock \"");
    let (text, end) = exchange_until(
        addr,
        "/v1/chat/completions",
        &headers,
        &streaming(chat_body("a b c")),
        Duration::from_millis(300),
        first_content,
    )
    .await;
    assert_eq!(end, End::Idle);
    assert!(first_content(&text));
    assert!(!text.contains("[DONE]"));

    let (text, end) = exchange_until(
        addr,
        "/v1/chat/completions",
        &headers,
        &chat_body("hi"),
        Duration::from_millis(300),
        |_| true,
    )
    .await;
    assert_eq!((text.as_str(), end), ("", End::Idle));
}

fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

fn h1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> http::Request<Full<Bytes>> {
    let mut req =
        http::Request::post(format!("http://{addr}{path}")).header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

#[tokio::test]
async fn h2c_and_keep_alive_streams_work() {
    let addr = spawn_server().await;
    for client in [h1_client(), h2_client()] {
        for _ in 0..2 {
            let req = request(addr, "/v1/chat/completions", &[], &streaming(chat_body("hi there")));
            let resp = client.request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8(body.to_vec()).unwrap();
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        }
    }
}

#[tokio::test]
async fn status_and_rate_limit_faults_over_the_wire() {
    let addr = spawn_server().await;
    let client = h1_client();
    let resp = client
        .request(request(addr, "/v1/chat/completions", &[("x-mock-fault", "status:503")], &chat_body("hi")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let resp = client
        .request(request(addr, "/v1/messages", &[("x-mock-fault", "429:3")], &messages_body("hi")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    let body: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn resets_over_h2c_are_errors_for_the_client() {
    let addr = spawn_server().await;
    let client = h2_client();
    let before = client
        .request(request(addr, "/v1/chat/completions", &[("x-mock-fault", "reset-before")], &chat_body("hi")))
        .await;
    assert!(before.is_err(), "no response");

    let resp = client
        .request(request(
            addr,
            "/v1/chat/completions",
            &[("x-mock-fault", "reset-mid")],
            &streaming(chat_body("a b c")),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.into_body().collect().await.is_err());
}

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate-mock-provider"))
        .args(["--listen", "127.0.0.1:0", "--fault-rate", "1", "--fault", "status:503"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::time::timeout(Duration::from_secs(10), BufReader::new(stdout).lines().next_line())
        .await
        .expect("address within 10s")
        .unwrap()
        .unwrap();
    let addr: SocketAddr = line.strip_prefix("listening on ").unwrap().parse().unwrap();
    assert_ne!(addr.port(), 0);

    let client = h1_client();
    let resp = client.request(request(addr, "/v1/chat/completions", &[], &chat_body("hi"))).await.unwrap();
    assert_eq!(resp.status(), 503, "--fault-rate 1 --fault status:503");
    let resp = client
        .request(request(addr, "/v1/chat/completions", &[("x-mock-fault", "none")], &chat_body("hi")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    child.kill().await.unwrap();
}
