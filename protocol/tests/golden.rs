//! The golden fixtures parse into the Rust types and serialise back to the
//! same JSON, so the Rust types and `web-client/protocol.js` (checked by the
//! Node twin of this test) cannot drift apart silently.

use serde_json::Value;
use tuxa_protocol::{ClientMsg, ServerMsg, parse_client_msg};

fn fixtures() -> Value {
    let text = include_str!("../fixtures/messages.json");
    serde_json::from_str(text).expect("fixtures are JSON")
}

#[test]
fn client_fixtures_round_trip() {
    let f = fixtures();
    let list = f["client"].as_array().expect("client list");
    assert!(list.len() >= 7);
    let mut seen = std::collections::BTreeSet::new();
    for fixture in list {
        let text = fixture.to_string();
        let msg = parse_client_msg(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        seen.insert(msg.type_name());
        let back: Value = serde_json::to_value(&msg).expect("serialise");
        assert_eq!(&back, fixture, "round trip of {text}");
    }
    // Every client message type has a fixture.
    assert_eq!(seen.len(), ClientMsg::TYPES.len());
}

#[test]
fn server_fixtures_round_trip() {
    let f = fixtures();
    for fixture in f["server"].as_array().expect("server list") {
        let msg: ServerMsg =
            serde_json::from_value(fixture.clone()).unwrap_or_else(|e| panic!("{fixture}: {e}"));
        let back: Value = serde_json::from_str(&msg.to_json()).expect("json");
        assert_eq!(&back, fixture);
    }
}
