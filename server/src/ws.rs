//! One WebSocket session: frames in, parsed, to the hub; the hub's frames
//! out. The session holds no room state of its own.

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tuxa_protocol::{ErrorCode, ProtocolError, parse_client_msg};
use tuxa_signaling::{Input, SessionId};

use crate::hub_task::{HubMsg, SESSION_QUEUE, SessionCmd};

pub async fn session(
    socket: WebSocket,
    sid: SessionId,
    hub: mpsc::UnboundedSender<HubMsg>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    staff: Option<tuxa_signaling::StaffInfo>,
) {
    let (tx, mut rx) = mpsc::channel(SESSION_QUEUE);
    if hub.send(HubMsg::Register(sid, tx)).is_err() {
        return;
    }
    if let Some(staff) = staff {
        let _ = hub.send(HubMsg::Input(Input::Identified(sid, staff)));
    }
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            frame = stream.next() => {
                let frame = match frame {
                    Some(Ok(f)) => f,
                    // Broken or closed: both are a disconnect to the hub.
                    Some(Err(_)) | None => break,
                };
                let parsed = match frame {
                    Message::Text(text) => parse_client_msg(text.as_str()),
                    Message::Binary(_) => Err(ProtocolError::new(
                        ErrorCode::MessageTooLarge,
                        "binary frames are not part of the protocol; send JSON text",
                    )),
                    Message::Close(_) => break,
                    // Pings are answered by the WebSocket layer.
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if hub.send(HubMsg::Input(Input::Frame(sid, parsed))).is_err() {
                    break;
                }
            }
            cmd = rx.recv() => match cmd {
                Some(SessionCmd::Send(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(SessionCmd::Close) | None => {
                    // Let the frames queued before the close go out first.
                    while let Ok(SessionCmd::Send(text)) = rx.try_recv() {
                        let _ = sink.send(Message::Text(text.into())).await;
                    }
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            _ = shutdown.changed() => {
                while let Ok(SessionCmd::Send(text)) = rx.try_recv() {
                    let _ = sink.send(Message::Text(text.into())).await;
                }
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
        }
    }
    let _ = hub.send(HubMsg::Input(Input::Disconnected(sid)));
}
