//! Sign-in limits through a whole server (docs/security.md, "Sign-in
//! limits"): the accept loop tells the sign-in route each client's address,
//! so that one address trying many names is throttled while a doctor at
//! another address signs in as usual.
//!
//! Two loopback addresses stand for two clients: 127.0.0.2 (the guesser)
//! and 127.0.0.1 (the doctor).

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tuxa_tests::{Auth, TestServer};

const PASSWORD: &str = "Mật khẩu thử 2025";

/// One `POST` from a client bound to `from`: (status, body).
async fn post_from(
    from: IpAddr,
    server: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, String)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(server).await.context("connect")?;
    let tls =
        tokio_rustls::TlsConnector::from(tuxa_tests::tls::insecure_client_config(&[b"http/1.1"]));
    let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
    let mut s = tls.connect(name, tcp).await.context("TLS")?;
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    // A TLS peer closing without close_notify is an error here; what was
    // read is what counts.
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {text:?}"))?;
    Ok((status, text))
}

#[tokio::test]
async fn an_address_guessing_names_is_throttled_while_the_doctor_signs_in() {
    let _serial = tuxa_tests::serial().await;
    let server = TestServer::start().await.unwrap();
    let api = server.api();
    let (s, f) = api
        .request(
            "POST",
            "/api/v1/facilities",
            Some(&json!({"name": "Bệnh viện Đa khoa tỉnh", "tier": "province"})),
            Auth::Bearer(api.admin_key()),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{f}");
    let (s, r) = api
        .request(
            "POST",
            "/api/v1/staff",
            Some(
                &json!({"username": "dp.lan", "name": "Trịnh Văn Lâm", "role": "coordinator",
                         "facility_id": f["id"], "password": PASSWORD}),
            ),
            Auth::Bearer(api.admin_key()),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{r}");
    let secret = r["totp"]["secret"].as_str().unwrap().to_owned();

    let guesser: IpAddr = [127, 0, 0, 2].into();
    let mut statuses = Vec::new();
    for i in 0..40 {
        let (status, text) = post_from(
            guesser,
            server.http_addr,
            "/api/v1/auth/login",
            &json!({"username": format!("bs.user{i}"), "password": "Mật khẩu sai 2025", "totp": "000000"}),
        )
        .await
        .unwrap();
        if status == 429 {
            assert!(text.contains("too_many_attempts"), "{text}");
        } else {
            assert_eq!(status, 401, "{text}");
        }
        statuses.push(status);
    }
    assert!(
        statuses.iter().skip(25).all(|s| *s == 429),
        "the guessing address is throttled: {statuses:?}"
    );
    // The guesser is refused even with the right credentials…
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = |at: u64| {
        json!({"username": "dp.lan", "password": PASSWORD,
               "totp": tuxa_server::totp_code(&secret, at).unwrap()})
    };
    let (status, _) = post_from(guesser, server.http_addr, "/api/v1/auth/login", &good(now))
        .await
        .unwrap();
    assert_eq!(status, 429);
    // …while another address signs in as the staff member at once.
    let (status, text) = post_from(
        [127, 0, 0, 1].into(),
        server.http_addr,
        "/api/v1/auth/login",
        &good(now + 30),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{text}");
    server.shutdown().await.unwrap();
}
