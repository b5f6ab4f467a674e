//! What anonymous clients can make the signaling side do (issue 11): one
//! address cannot fill an on-call queue (five places at most, one per phone
//! number and queue), staff see and clear suspicious tickets, a chat flood
//! is cut to the session's budget, and only the server's own pages (or
//! clients without an `Origin`) may open a WebSocket.
//!
//! Every client of a test server comes from loopback; the clients of "other
//! addresses" here bind 127.0.0.2, 127.0.0.3, … (all of 127/8 is loopback).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tuxa_protocol::{ClientMsg, ConsultationKind, ErrorCode, QueueState, Role, ServerMsg};
use tuxa_tests::{REPLY_TIMEOUT, SignalClient, TestServer};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket to the server from `local` (a loopback address), with an
/// `Origin` header if given.
async fn connect_from(
    server: SocketAddr,
    local: IpAddr,
    origin: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("wss://{server}/ws").into_client_request()?;
    if let Some(o) = origin {
        request
            .headers_mut()
            .insert("origin", o.parse().expect("a header value"));
    }
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local, 0))?;
    let stream = socket.connect(server).await?;
    let connector = Connector::Rustls(tuxa_tests::tls::insecure_client_config(&[]));
    let (ws, _) =
        tokio_tungstenite::client_async_tls_with_config(request, stream, None, Some(connector))
            .await?;
    Ok(ws)
}

async fn send(ws: &mut Ws, msg: &ClientMsg) -> anyhow::Result<()> {
    ws.send(Message::text(serde_json::to_string(msg)?)).await?;
    Ok(())
}

/// The next protocol message (`None`: the socket closed).
async fn recv(ws: &mut Ws) -> anyhow::Result<Option<ServerMsg>> {
    loop {
        match tokio::time::timeout(REPLY_TIMEOUT, ws.next())
            .await
            .context("waiting for a message")?
        {
            Some(Ok(Message::Text(t))) => return Ok(Some(serde_json::from_str(t.as_str())?)),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(None),
            Some(Ok(_)) => continue,
        }
    }
}

fn consent() -> ClientMsg {
    ClientMsg::Consent {
        text_version: "2026-11".into(),
        remote_examination: true,
        third_parties: false,
        recording: false,
    }
}

fn queue_join(queue: u64, phone: &str) -> ClientMsg {
    ClientMsg::QueueJoin {
        queue,
        name: "Bệnh nhân".into(),
        phone: phone.into(),
        reason: "sốt".into(),
    }
}

/// hello, consent, queue_join on a fresh session from `local`; the answer:
/// `Ok(ticket)` or `Err(the reason of queue_refused)`.
async fn queue_from(
    server: &TestServer,
    local: IpAddr,
    queue: u64,
    phone: &str,
) -> anyhow::Result<(Ws, Result<String, String>)> {
    let mut ws = connect_from(server.http_addr, local, None).await?;
    send(
        &mut ws,
        &ClientMsg::Hello {
            versions: vec![1],
            client: Some("queue-flood".into()),
        },
    )
    .await?;
    send(&mut ws, &consent()).await?;
    send(&mut ws, &queue_join(queue, phone)).await?;
    loop {
        match recv(&mut ws).await? {
            Some(ServerMsg::QueueStatus { ticket, state, .. }) => {
                anyhow::ensure!(state == QueueState::Queued, "{state:?}");
                return Ok((ws, Ok(ticket)));
            }
            Some(ServerMsg::Error {
                code: ErrorCode::QueueRefused,
                message,
                ..
            }) => {
                let reason = message.split(':').next().unwrap_or("").to_owned();
                return Ok((ws, Err(reason)));
            }
            Some(ServerMsg::Error { code, message, .. }) => bail!("{code}: {message}"),
            Some(_) => continue,
            None => bail!("closed before an answer to queue_join"),
        }
    }
}

async fn created(api: &tuxa_tests::ApiClient, path: &str, body: Value) -> anyhow::Result<Value> {
    let (status, v) = api.admin("POST", path, Some(&body)).await?;
    anyhow::ensure!(status == 201, "{path}: {status} {v}");
    Ok(v)
}

fn lo(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_fill_a_queue_and_staff_clear_what_it_left() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();
    let f = created(
        &api,
        "/api/v1/facilities",
        json!({"name": "BVĐK tỉnh", "tier": "province"}),
    )
    .await?;
    let q = created(
        &api,
        "/api/v1/queues",
        json!({"facility_id": f["id"], "specialty": "Nội khoa"}),
    )
    .await?;
    let queue = q["id"].as_u64().expect("queue id");

    // A script on one address: consent and queue again and again (it stays
    // connected, so its places are not merely away).
    let mut held = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..20 {
        let (ws, answer) = queue_from(&server, lo(1), queue, "").await?;
        match answer {
            Ok(_) => accepted += 1,
            Err(reason) => {
                assert_eq!(reason, "too_many_tickets");
                refused += 1;
            }
        }
        held.push(ws);
    }
    assert_eq!((accepted, refused), (5, 15));

    // A real patient elsewhere is not turned away (the old code said
    // queue_full once the script had filled the line).
    let (_real, answer) = queue_from(&server, lo(2), queue, "0912 345 678").await?;
    assert!(answer.is_ok(), "{answer:?}");
    // Their phone number queues once, however it is written.
    let (_twice, answer) = queue_from(&server, lo(3), queue, "+84 912-345-678").await?;
    assert_eq!(answer, Err("too_many_tickets".to_owned()));

    // Staff see the script's tickets flagged, and the phone masked.
    let (status, list) = api
        .admin("GET", &format!("/api/v1/queues/{queue}/tickets"), None)
        .await?;
    assert_eq!(status, 200, "{list}");
    let tickets = list["tickets"].as_array().expect("tickets").clone();
    assert_eq!(tickets.len(), 6, "{list}");
    let flagged: Vec<&Value> = tickets
        .iter()
        .filter(|t| {
            t["flags"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("many_from_address")))
        })
        .collect();
    assert_eq!(flagged.len(), 5, "{list}");
    assert!(flagged.iter().all(|t| t["same_address"] == 5));
    let real = tickets
        .iter()
        .find(|t| t["same_address"] == 1)
        .expect("the real patient");
    assert_eq!(real["phone"], "•••••••678");
    assert_eq!(real["flags"], json!([]));

    // Nobody but staff may look or clear.
    let r = api
        .request_raw(
            "GET",
            &format!("/api/v1/queues/{queue}/tickets"),
            None,
            tuxa_tests::Auth::None,
        )
        .await?;
    assert_eq!(r.status, 401);

    // Clearing one: its patient page is told, the list shrinks, the audit
    // log has it (by handle), and the address may queue once more.
    let handle = flagged[0]["handle"].as_str().expect("handle").to_owned();
    let path = format!("/api/v1/queues/{queue}/tickets/{handle}");
    let (status, v) = api.admin("DELETE", &path, None).await?;
    assert_eq!(status, 200, "{v}");
    let mut told = 0;
    for ws in &mut held {
        // Only the accepted ones hold a ticket; read what each was sent.
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), recv(ws))
            .await
            .unwrap_or(Ok(None))
        {
            if let ServerMsg::QueueRemoved { reason, .. } = m {
                assert_eq!(reason, "cleared");
                told += 1;
            }
        }
    }
    assert_eq!(told, 1);
    let (_, list) = api
        .admin("GET", &format!("/api/v1/queues/{queue}/tickets"), None)
        .await?;
    assert_eq!(list["tickets"].as_array().map(Vec::len), Some(5));
    let (status, v) = api.admin("DELETE", &path, None).await?;
    assert_eq!(status, 404, "{v}");
    let (status, v) = api
        .admin(
            "DELETE",
            &format!("/api/v1/queues/{queue}/tickets/nothex"),
            None,
        )
        .await?;
    assert_eq!(status, 400, "{v}");
    let (_again, answer) = queue_from(&server, lo(1), queue, "").await?;
    assert!(answer.is_ok(), "{answer:?}");

    let c = rusqlite::Connection::open(server.data_dir.join("tuxa.sqlite3"))?;
    let details: Vec<String> = c
        .prepare("SELECT detail FROM audit WHERE action = 'queue_ticket_cleared'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert_eq!(details.len(), 1, "{details:?}");
    let d: Value = serde_json::from_str(&details[0])?;
    assert_eq!(d["ticket"], handle);
    assert_eq!(d["flags"], json!(["many_from_address"]));
    drop(held);
    server.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_flood_is_cut_to_the_budget_and_the_sender_told() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Conference, "Hội chẩn")
        .await?;
    let mut calm = server.signal().await?;
    calm.hello().await?;
    calm.join(&room, &api.mint_link(&room, Role::Doctor, "BS. An").await?)
        .await?;
    let mut flood = server.signal().await?;
    flood.hello().await?;
    flood
        .join(
            &room,
            &api.mint_link(&room, Role::Doctor, "BS. Bình").await?,
        )
        .await?;

    // Ordinary use: a burst of eight lines goes through, all of it.
    for i in 0..8 {
        calm.send(&ClientMsg::Chat {
            text: format!("dòng {i}"),
        })
        .await?;
    }
    calm.recv_until(REPLY_TIMEOUT, "the eighth line", |m| match m {
        ServerMsg::Chat { text, .. } if text == "dòng 7" => Some(()),
        _ => None,
    })
    .await?;
    assert!(
        !calm
            .skipped
            .iter()
            .any(|m| matches!(m, ServerMsg::Error { .. })),
        "{:?}",
        calm.skipped
    );

    // 500 lines in a burst: the sender is told `rate_limited` and, as it
    // keeps going, cut off.
    for i in 0..500 {
        if flood
            .send(&ClientMsg::Chat {
                text: format!("spam {i}"),
            })
            .await
            .is_err()
        {
            break;
        }
    }
    let mut limited = 0;
    loop {
        match flood.recv_event(REPLY_TIMEOUT).await? {
            tuxa_tests::WsEvent::Msg(ServerMsg::Error {
                code: ErrorCode::RateLimited,
                in_reply_to,
                ..
            }) => {
                if in_reply_to.as_deref() == Some("chat") {
                    limited += 1;
                }
            }
            tuxa_tests::WsEvent::Msg(_) => {}
            tuxa_tests::WsEvent::Closed(_) => break,
            tuxa_tests::WsEvent::Unparsable(u) => bail!("unparsable {u}"),
        }
    }
    assert!(limited > 0, "the sender was told its chat was refused");

    // The record keeps the calm doctor's eight lines and at most the
    // flood's budget (10 at once, one per 2 s after).
    let mut spam = usize::MAX;
    for _ in 0..20 {
        let (status, rec) = api
            .admin(
                "GET",
                &format!("/api/v1/consultations/{room}/record.json"),
                None,
            )
            .await?;
        assert_eq!(status, 200, "{rec}");
        let chat = rec["chat"].as_array().cloned().unwrap_or_default();
        let calm_lines = chat
            .iter()
            .filter(|c| c["text"].as_str().is_some_and(|t| t.starts_with("dòng")))
            .count();
        spam = chat.len() - calm_lines;
        if calm_lines == 8 && spam > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!((1..=12).contains(&spam), "{spam} flood lines kept");
    // The calm doctor is still in the call.
    calm.ping(1).await?;
    assert!(!calm.is_closed());
    server.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_our_own_pages_may_open_a_websocket() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let addr = server.http_addr;
    for bad in [
        "https://evil.example.com",
        "null",
        &format!("http://{addr}"),
    ] {
        match connect_from(addr, lo(1), Some(bad)).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403, "{bad}"),
            Err(e) => bail!("{bad}: {e}"),
            Ok(_) => bail!("{bad}: a WebSocket was opened from another site's page"),
        }
    }
    // The server's own page (by the address it was reached at).
    let mut ws = connect_from(addr, lo(1), Some(&format!("https://{addr}"))).await?;
    send(
        &mut ws,
        &ClientMsg::Hello {
            versions: vec![1],
            client: None,
        },
    )
    .await?;
    assert!(matches!(
        recv(&mut ws).await?,
        Some(ServerMsg::Welcome { .. })
    ));
    // No Origin: a client that is not a browser.
    let mut plain = SignalClient::connect(addr).await?;
    plain.hello().await?;
    server.shutdown().await
}
