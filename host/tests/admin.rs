//! The admin API's access rules over real HTTP: every read and change
//! endpoint, with no token, the read token, the change token and a wrong
//! one, under each way weir can be configured; a request naming a foreign
//! host (DNS rebinding); a bind beyond this machine with open reads; and the
//! API over TLS, from a client and from `weir plugin`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use reqwest::StatusCode;
use weir::admin::{Access, Admin, AdminTls};
use weir::connect::Secret;
use weir::engine::{RunConfig, RunError};

const READ: &str = "read-token-of-the-test";
const CHANGE: &str = "change-token-of-the-test";

/// The API with `access`, on a free loopback port; its base URL.
async fn serve(read: bool, change: bool) -> String {
    serve_over(read, change, None).await
}

/// [`serve`], over TLS with `tls`.
async fn serve_over(
    read: bool,
    change: bool,
    tls: Option<Arc<weir::admin::tls::ServerConfig>>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let access = Access::new(
        addr,
        change.then(|| Secret::new(CHANGE)),
        read.then(|| Secret::new(READ)),
        &[],
    );
    let admin = Arc::new(Admin::new(access, weir::telemetry::metrics::install()));
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(weir::admin::serve(
        listener,
        admin,
        tls,
        std::future::pending(),
    ));
    format!("{scheme}://{addr}")
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

/// A CA, and a certificate it signed for localhost and 127.0.0.1 with its
/// key, written as PEM files into a fresh folder: (folder, CA file, TLS files).
fn certificates(name: &str) -> (std::path::PathBuf, std::path::PathBuf, AdminTls) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("weir-admin-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let server =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    let tls = AdminTls {
        cert: dir.join("admin.crt"),
        key: dir.join("admin.key"),
    };
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(&tls.cert, server_cert.pem()).unwrap();
    std::fs::write(&tls.key, server_key.serialize_pem()).unwrap();
    (dir.clone(), dir.join("ca.crt"), tls)
}

#[tokio::test]
async fn the_api_over_tls_answers_clients_that_trust_its_ca_only() {
    let (_dir, ca, tls) = certificates("serve");
    let base = serve_over(true, true, Some(tls.server_config().unwrap())).await;
    let trusted = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let status = trusted
        .get(format!("{base}/status"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    // The access rules hold over TLS too.
    let status = trusted
        .get(format!("{base}/status"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let untrusting = reqwest::Client::new()
        .get(format!("{base}/status"))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "a client without the CA is refused: {untrusting:?}"
    );
    let plain = base.replacen("https://", "http://", 1);
    let plain = reqwest::Client::new()
        .get(format!("{plain}/status"))
        .bearer_auth(READ)
        .send()
        .await;
    assert!(
        plain.is_err() || plain.as_ref().is_ok_and(|r| !r.status().is_success()),
        "plain HTTP gets nothing: {plain:?}"
    );

    // `weir plugin list` over TLS, trusting the CA given.
    let weir = env!("CARGO_BIN_EXE_weir");
    let list = |ca: Option<std::path::PathBuf>| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new(weir);
            command.args(["plugin", "--admin", &base, "--token", CHANGE, "list"]);
            if let Some(ca) = ca {
                command.arg("--admin-ca").arg(ca);
            }
            command.output().unwrap()
        })
    };
    let listed = list(Some(ca)).await.unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
    let refused = list(None).await.unwrap();
    assert!(
        !refused.status.success(),
        "without the CA the certificate is not trusted"
    );
}

#[test]
fn unusable_tls_files_are_named() {
    let (dir, _ca, tls) = certificates("files");
    let missing = AdminTls {
        cert: dir.join("nowhere.crt"),
        ..tls.clone()
    };
    let error = missing.server_config().unwrap_err().to_string();
    assert!(
        error.contains("certificate") && error.contains("nowhere.crt"),
        "{error}"
    );
    // Another certificate's key does not go with this one.
    let (_other_dir, _other_ca, other) = certificates("other");
    let mismatched = AdminTls {
        key: other.key.clone(),
        ..tls.clone()
    };
    let error = mismatched.server_config().unwrap_err().to_string();
    assert!(error.contains("does not go with"), "{error}");
    let not_pem = AdminTls {
        cert: tls.key.clone(),
        ..tls
    };
    let error = not_pem.server_config().unwrap_err().to_string();
    assert!(error.contains("no PEM certificate"), "{error}");
}
