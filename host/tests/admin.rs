//! The admin API's access rules over real HTTP: every read and change
//! endpoint, with no token, the read token, the change token and a wrong
//! one, under each way weir can be configured; a request naming a foreign
//! host (DNS rebinding); and a bind beyond this machine with open reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use reqwest::StatusCode;
use weir::admin::{Access, Admin};
use weir::connect::Secret;
use weir::engine::{RunConfig, RunError};

const READ: &str = "read-token-of-the-test";
const CHANGE: &str = "change-token-of-the-test";

/// The API with `access`, on a free loopback port; its base URL.
async fn serve(read: bool, change: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let access = Access::new(
        addr,
        change.then(|| Secret::new(CHANGE)),
        read.then(|| Secret::new(READ)),
        &[],
    );
    let admin = Arc::new(Admin::new(access, weir::telemetry::metrics::install()));
    tokio::spawn(weir::admin::serve(listener, admin, std::future::pending()));
    format!("http://{addr}")
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Given {
    Nothing,
    Read,
    Change,
    Wrong,
}

/// What each call must answer, written out case by case.
fn expected(read_token: bool, change_token: bool, given: Given, changes: bool) -> StatusCode {
    let reads_pass = !read_token
        || matches!(given, Given::Read | Given::Change)
        // The change token reads only where it exists.
        && (given != Given::Change || change_token);
    if !reads_pass {
        return StatusCode::UNAUTHORIZED;
    }
    if !changes {
        return StatusCode::OK;
    }
    if change_token && given == Given::Change {
        // Let in: the pipeline named does not run here.
        StatusCode::NOT_FOUND
    } else {
        StatusCode::UNAUTHORIZED
    }
}

#[tokio::test]
async fn every_endpoint_with_and_without_tokens() {
    let client = reqwest::Client::new();
    let reads = [
        "/",
        "/status",
        "/metrics",
        "/pipelines",
        "/pipelines/nope/history",
    ];
    let mut checked = 0;
    for (read_token, change_token) in [(false, false), (false, true), (true, false), (true, true)] {
        let base = serve(read_token, change_token).await;
        for given in [Given::Nothing, Given::Read, Given::Change, Given::Wrong] {
            let authorize = |request: reqwest::RequestBuilder| match given {
                Given::Nothing => request,
                Given::Read => request.bearer_auth(READ),
                Given::Change => request.bearer_auth(CHANGE),
                Given::Wrong => request.bearer_auth("not-a-token"),
            };
            for path in reads {
                let status = authorize(client.get(format!("{base}{path}")))
                    .send()
                    .await
                    .unwrap()
                    .status();
                let mut want = expected(read_token, change_token, given, false);
                if path.ends_with("/history") && want == StatusCode::OK {
                    want = StatusCode::NOT_FOUND;
                }
                assert_eq!(
                    status, want,
                    "GET {path}, read token {read_token}, change token {change_token}, {given:?}"
                );
                checked += 1;
            }
            let changes = [
                client.put(format!("{base}/pipelines/nope/stages/s/plugin")),
                client.post(format!("{base}/pipelines/nope/stages/s/rollback")),
            ];
            for request in changes {
                let response = authorize(request).body("x").send().await.unwrap();
                let status = response.status();
                let want = expected(read_token, change_token, given, true);
                assert_eq!(
                    status, want,
                    "a change, read token {read_token}, change token {change_token}, {given:?}"
                );
                if status == StatusCode::UNAUTHORIZED {
                    // A browser asks for the token.
                    assert!(response.headers().contains_key("www-authenticate"));
                }
                checked += 1;
            }
        }
    }
    println!("{checked} calls answered as expected");
}

#[tokio::test]
async fn a_request_naming_another_host_is_refused() {
    let base = serve(false, false).await;
    let client = reqwest::Client::new();
    for host in [
        "attacker.example",
        "attacker.example:7878",
        "127.0.0.1.nip.io",
    ] {
        let status = client
            .get(format!("{base}/status"))
            .header("Host", host)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "Host: {host}");
    }
    let port = base.rsplit(':').next().unwrap();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let status = client
            .get(format!("{base}/status"))
            .header("Host", &host)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK, "Host: {host}");
    }
}

#[test]
fn an_address_beyond_this_machine_needs_a_read_token_or_open_reads_said_on_purpose() {
    let stop = Arc::new(AtomicBool::new(true));
    let mut config = RunConfig::local();
    config.admin.addr = SocketAddr::from(([0, 0, 0, 0], 0));
    config.admin.token = Some(Secret::new(CHANGE));
    let refused = weir::engine::run(Vec::new(), &config, &stop);
    match refused {
        Err(RunError::AdminExposed { addr }) => assert_eq!(addr, config.admin.addr),
        other => panic!("expected a refusal, got {other:?}"),
    }
    config.admin.read_token = Some(Secret::new(READ));
    assert!(config.admin.check_exposure().is_ok());
    config.admin.read_token = None;
    config.admin.open_reads = true;
    assert!(config.admin.check_exposure().is_ok());
    config.admin.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin.open_reads = false;
    assert!(config.admin.check_exposure().is_ok());
}
