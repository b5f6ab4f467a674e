//! The WebSocket frame decoder: any text gives a message or a decoder error,
//! and what decodes re-encodes to a frame that decodes to the same message
//! (as `protocol/tests/prop_decode.rs`, for longer runs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tuxa_protocol::{ErrorCode, parse_client_msg};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_client_msg(&text) {
        Err(e) => assert!(
            matches!(
                e.code,
                ErrorCode::BadJson
                    | ErrorCode::UnknownMessage
                    | ErrorCode::InvalidMessage
                    | ErrorCode::MessageTooLarge
            ),
            "{e}"
        ),
        Ok(msg) => {
            let again = serde_json::to_string(&msg).expect("a client message serialises");
            assert_eq!(parse_client_msg(&again).as_ref(), Ok(&msg), "{again}");
        }
    }
});
