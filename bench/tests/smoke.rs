//! The benchmark's smoke test: S1 against an in-process tuxa for a few seconds. Packets must
//! flow both ways; speed is never asserted.

use std::time::Duration;

#[test]
fn s1_packets_flow_through_tuxa() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rep = rt
        .block_on(tuxa_bench::smoke::smoke(Duration::from_secs(3)))
        .expect("the smoke scenario runs");
    println!("{}", serde_json::to_string_pretty(&rep).unwrap());
    assert!(rep.fwd_pps > 0.0, "no RTP reached a subscriber: {rep:?}");
    assert!(rep.frames_received > 0, "no frame arrived: {rep:?}");
    assert!(rep.ttff_p50_ms.is_finite(), "no first frame: {rep:?}");
    assert!(rep.errors.is_empty(), "errors: {:?}", rep.errors);
}
