//! A caller that stops reading a stream (issue 17, item 6): it is cut once it has taken
//! nothing for the stall time (the stream idle timeout) or the request's deadline passes,
//! charged for what it was sent, recorded as `client_too_slow`, and its budget reservation
//! and in-flight place are given back, over a real socket.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_dataplane::GatewayOptions;
use tollgate_testkit::{ScratchDb, TestGateway, developer};

const RESOURCES: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - name: mock-1
      prices: {inputPerMtok: "1", outputPerMtok: "1"}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: alice}
spec: {subject: {kind: developer, name: alice}, limit: "100", period: monthly}
"#;

#[tokio::test]
async fn a_caller_that_stops_reading_a_stream_is_cut_charged_and_released() {
    let db = ScratchDb::sqlite();
    let options = GatewayOptions { stream_idle_timeout: Duration::from_secs(1), ..GatewayOptions::default() };
    let t = TestGateway::builder(db.connect().await).options(options).resources(RESOURCES).start().await;
    let key = t.issue_key("k", developer("alice")).await;
    let addr = t.serve().await;

    // A long answer (30,000 events, megabytes: far more than the socket buffers hold), and
    // a caller with a small receive buffer that reads the first bytes and then nothing.
    // NB: room reserved for all of it (a stream past its reserved output is cut for that).
    let body = json!({"model": "mock-1", "stream": true, "max_tokens": 100_000,
                      "messages": [{"role": "user", "content": "hello"}]})
    .to_string();
    let reply = "word ".repeat(6000);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nx-mock-reply: {reply}\r\nx-mock-chunks: 30000\r\n\
         x-request-id: stalled\r\nContent-Length: {}\r\n\r\n{body}",
        key.secret,
        body.len()
    );
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut sock: TcpStream = socket.connect(addr).await.unwrap();
    sock.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 64];
    let n = sock.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..n]));

    let started = Instant::now();
    let row = loop {
        let rows = t.store.recent_usage(10).await.unwrap();
        if let Some(row) = rows.into_iter().find(|r| r.request_id == "stalled") {
            break row;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the stalled stream was never cut");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row.error_class.as_deref(), Some("client_too_slow"));
    assert!(row.cost_micros > 0, "charged for what it was sent: {row:?}");
    let shared = t.gateway.shared();
    assert_eq!(shared.in_flight.in_flight(), 0, "its in-flight place is free");
    let runtime = shared.runtime.load_full();
    let budgets = &runtime.config.budgets;
    let status =
        tollgate_dataplane::budget::status(&shared.counters, budgets, 0, tollgate_dataplane::now_ms())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(status.reserved_micros, 0, "its reservation is released");
    assert_eq!(status.spent_micros, u64::try_from(row.cost_micros).unwrap());
    drop(sock);
}
