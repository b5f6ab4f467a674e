//! The webrtc-rs (0.21, on the sans-IO `rtc` core) test peer.
//!
//! A browser-like peer connection: tracks added with `add_track` (sendrecv transceivers), full
//! ICE on one UDP socket on 127.0.0.1, candidates gathered before the offer is sent (the
//! protocol has no trickle). Frames go out through `TrackLocalStaticSample` (webrtc-rs
//! packetizes them); received RTP is reassembled into frames here and checked. Keyframe
//! requests (PLI/FIR) reach the application through a small interceptor that marks them for
//! delivery, as webrtc-rs's `rtcp-processing` example does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media::Sample;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::{mpsc, watch};
use tuxa_protocol::{ClientMsg, ErrorCode, MediaKind, ServerMsg};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::events::PeerEvent;
use crate::frames::Vp8Reassembler;
use crate::peer::{FrameSource, Negotiation, PeerCmd, Shared, send_ping};
use crate::signal::{SignalClient, WsEvent};

const OPUS_PT: u8 = 111;
const VP8_PT: u8 = 96;

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            fb("goog-remb", ""),
            fb("ccm", "fir"),
            fb("nack", ""),
            fb("nack", "pli"),
        ],
    }
}

/// A random-enough SSRC without a rand dependency.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() as u32
}

/// Hands PLI and FIR to the application (everything else stops in the interceptor chain).
struct KeyframeRequestTap {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| {
                    let any = p.as_any();
                    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                })
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

struct Handler {
    shared: Arc<Shared>,
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.shared.events.note(format!("connection state {state}"));
        self.state.send_replace(state);
        self.shared
            .media_up
            .send_replace(state == RTCPeerConnectionState::Connected);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        tokio::spawn(receive_track(self.shared.clone(), track));
    }
}

async fn receive_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let kind = track.kind().await;
    let stream_id = track.stream_id().await;
    let track_id = track.track_id().await;
    shared
        .events
        .note(format!("track {track_id} ({kind}) of stream {stream_id}"));
    let kind = match kind {
        RtpCodecKind::Audio => MediaKind::Audio,
        RtpCodecKind::Video => MediaKind::Video,
        _ => return,
    };
    let mut vp8 = Vp8Reassembler::default();
    let mut recent = VecDeque::new();
    while let Some(ev) = track.poll().await {
        match ev {
            TrackRemoteEvent::OnRtpPacket(pkt) => {
                if pkt.payload.is_empty() {
                    continue; // padding
                }
                match kind {
                    MediaKind::Audio => {
                        shared.rx.record(kind, Some(&stream_id), &pkt.payload);
                    }
                    MediaKind::Video => {
                        let h = &pkt.header;
                        // A retransmission of a frame already complete would start it again.
                        if recent.contains(&h.timestamp) {
                            continue;
                        }
                        for frame in
                            vp8.push(h.sequence_number, h.timestamp, h.marker, &pkt.payload)
                        {
                            recent.push_back(h.timestamp);
                            if recent.len() > 64 {
                                recent.pop_front();
                            }
                            shared.rx.record(kind, Some(&stream_id), &frame);
                        }
                    }
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    if vp8.incomplete > 0 || vp8.bad_packets > 0 {
        shared.rx.record_error(format!(
            "track {track_id}: {} incomplete frames, {} bad VP8 packets",
            vp8.incomplete, vp8.bad_packets
        ));
    }
    shared.events.note(format!("track {track_id} ended"));
}

/// Waits for `ch` to be true (ICE gathering complete); gives up quietly after 5 s.
async fn wait_gathered(ch: &mut watch::Receiver<bool>) {
    let _ = tokio::time::timeout(Duration::from_secs(5), ch.wait_for(|g| *g)).await;
}

async fn make_offer(
    pc: &dyn PeerConnection,
    gathered: &mut watch::Receiver<bool>,
) -> anyhow::Result<String> {
    let offer = pc.create_offer(None).await.context("create_offer")?;
    pc.set_local_description(offer)
        .await
        .context("set_local_description(offer)")?;
    wait_gathered(gathered).await;
    let desc = pc
        .local_description()
        .await
        .context("no local description after setting one")?;
    Ok(desc.sdp)
}

async fn make_answer(
    pc: &dyn PeerConnection,
    gathered: &mut watch::Receiver<bool>,
    offer: String,
) -> anyhow::Result<String> {
    let offer = RTCSessionDescription::offer(offer).context("parsing the server's offer")?;
    pc.set_remote_description(offer)
        .await
        .context("set_remote_description(server offer)")?;
    let answer = pc.create_answer(None).await.context("create_answer")?;
    pc.set_local_description(answer)
        .await
        .context("set_local_description(answer)")?;
    wait_gathered(gathered).await;
    let desc = pc
        .local_description()
        .await
        .context("no local description after setting one")?;
    Ok(desc.sdp)
}

async fn rollback(pc: &dyn PeerConnection) -> anyhow::Result<()> {
    pc.set_local_description(RTCSessionDescription::rollback(None)?)
        .await
        .context("rolling back our offer")
}

type Outgoing = (Arc<TrackLocalStaticSample>, Arc<dyn RtpSender>, u32);

async fn add_track(
    pc: &dyn PeerConnection,
    shared: &Shared,
    kind: RtpCodecKind,
) -> anyhow::Result<Outgoing> {
    let (codec, name) = match kind {
        RtpCodecKind::Video => (vp8_codec(), "video"),
        _ => (opus_codec(), "audio"),
    };
    let ssrc = random_u32();
    let track = Arc::new(TrackLocalStaticSample::new(
        Instant::now(),
        MediaStreamTrack::new(
            shared.id.to_string(),
            format!("{}-{name}", shared.id),
            format!("tuxa-tests {name}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        ),
    )?);
    let sender = pc
        .add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .with_context(|| format!("add_track({name})"))?;
    Ok((track, sender, ssrc))
}

/// The payload type negotiated for `mime` on this sender, once negotiation is done.
async fn negotiated_pt(sender: &Arc<dyn RtpSender>, mime: &str) -> Option<u8> {
    let params = sender.get_parameters().await.ok()?;
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
}

/// Sends frames once the connection is up, at the configured rates.
async fn media_loop(
    shared: Arc<Shared>,
    audio: Option<Outgoing>,
    video: Option<Outgoing>,
    mut state: watch::Receiver<RTCPeerConnectionState>,
) {
    if state
        .wait_for(|s| *s == RTCPeerConnectionState::Connected)
        .await
        .is_err()
    {
        return;
    }
    let mut src = FrameSource::new(shared.clone());
    let opts = shared.opts.clone();
    let mut a_tick = tokio::time::interval(opts.audio_frame_interval);
    let mut v_tick = tokio::time::interval(opts.video_frame_interval);
    a_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    v_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut a_pt, mut v_pt) = (None, None);
    let mut last_err = None::<String>;
    while !shared.stopping.load(Ordering::Relaxed) {
        let kind = tokio::select! {
            _ = a_tick.tick(), if audio.is_some() => MediaKind::Audio,
            _ = v_tick.tick(), if video.is_some() => MediaKind::Video,
        };
        let (out, pt_slot, mime, period) = match kind {
            MediaKind::Audio => (&audio, &mut a_pt, MIME_TYPE_OPUS, opts.audio_frame_interval),
            MediaKind::Video => (&video, &mut v_pt, MIME_TYPE_VP8, opts.video_frame_interval),
        };
        let Some((track, sender, ssrc)) = out else {
            continue;
        };
        if pt_slot.is_none() {
            *pt_slot = negotiated_pt(sender, mime).await;
        }
        let Some(pt) = *pt_slot else {
            continue;
        };
        let (data, key) = match kind {
            MediaKind::Audio => (src.audio(), false),
            MediaKind::Video => src.video(),
        };
        let sample = Sample {
            data: data.into(),
            duration: period,
            ..Sample::new(Instant::now())
        };
        match track.write_sample(*ssrc, pt, &sample, &[]).await {
            Ok(()) => src.sent(kind, key),
            Err(e) => {
                if key {
                    src.unsent_keyframe();
                }
                let e = e.to_string();
                if last_err.as_deref() != Some(e.as_str()) {
                    shared
                        .events
                        .note(format!("writing a {kind:?} frame failed: {e}"));
                    last_err = Some(e);
                }
            }
        }
    }
}

/// Watches the video track for PLI/FIR from the server.
async fn keyframe_requests(shared: Arc<Shared>, track: Arc<TrackLocalStaticSample>) {
    while let Some(ev) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = ev else {
            continue;
        };
        for p in &packets {
            let any = p.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                shared.keyframe_requested();
            }
        }
    }
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    ws: SignalClient,
    cmds: mpsc::UnboundedReceiver<PeerCmd>,
) -> anyhow::Result<()> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    media_engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: vp8_codec(),
            payload_type: VP8_PT,
        },
        RtpCodecKind::Video,
    )?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)?;
    let registry = registry.with(
        Slot::from(14_000),
        KeyframeRequestTap {
            read: VecDeque::new(),
            write: VecDeque::new(),
        },
    );

    let (gathered_tx, gathered) = watch::channel(false);
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let handler = Arc::new(Handler {
        shared: shared.clone(),
        gathered: gathered_tx,
        state: state_tx,
    });
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![format!("{}:0", shared.opts.local_ip)])
            .build()
            .await
            .context("building the webrtc-rs peer connection")?,
    );

    let audio = if shared.opts.send_audio {
        Some(add_track(&*pc, &shared, RtpCodecKind::Audio).await?)
    } else {
        None
    };
    let video = if shared.opts.send_video {
        Some(add_track(&*pc, &shared, RtpCodecKind::Video).await?)
    } else {
        None
    };
    if let Some((track, _, _)) = &video {
        tokio::spawn(keyframe_requests(shared.clone(), track.clone()));
    }
    let media = tokio::spawn(media_loop(shared.clone(), audio, video, state));

    let result = signaling_loop(&shared, &*pc, ws, cmds, gathered).await;
    shared.stopping.store(true, Ordering::Relaxed);
    media.abort();
    let _ = pc.close().await;
    result
}

enum Step {
    Ws(WsEvent),
    Cmd(Option<PeerCmd>),
    Ping,
}

async fn signaling_loop(
    shared: &Arc<Shared>,
    pc: &dyn PeerConnection,
    mut ws: SignalClient,
    mut cmds: mpsc::UnboundedReceiver<PeerCmd>,
    mut gathered: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let events = &shared.events;
    let mut neg = Negotiation {
        want_offer: true,
        ..Default::default()
    };
    let mut ping = tokio::time::interval(shared.opts.ping_interval);
    ping.tick().await;
    loop {
        if neg.want_offer && !neg.offer_pending {
            let sdp = make_offer(pc, &mut gathered).await?;
            if !sdp.contains("a=candidate") {
                events.note("our offer has no candidates");
            }
            ws.send(&ClientMsg::Offer { sdp }).await?;
            neg.want_offer = false;
            neg.offer_pending = true;
            neg.offers_sent += 1;
            events.note("offered");
        }
        let step = tokio::select! {
            ev = ws.next_event() => Step::Ws(ev),
            cmd = cmds.recv() => Step::Cmd(cmd),
            _ = ping.tick() => Step::Ping,
        };
        match step {
            Step::Ws(WsEvent::Msg(msg)) => {
                events.msg(msg.clone());
                match msg {
                    ServerMsg::Offer { sdp } => {
                        if neg.offer_pending {
                            rollback(pc).await?;
                            neg.offer_pending = false;
                            neg.expected_glares += 1;
                            neg.want_offer = true;
                            events.note("rolled back our offer for the server's");
                        }
                        let answer = make_answer(pc, &mut gathered, sdp).await?;
                        ws.send(&ClientMsg::Answer { sdp: answer }).await?;
                        neg.answers_sent += 1;
                        events.note(format!("answered ({})", neg.answers_sent));
                    }
                    ServerMsg::Answer { sdp } => {
                        if neg.offer_pending {
                            let answer = RTCSessionDescription::answer(sdp)
                                .context("parsing the server's answer")?;
                            pc.set_remote_description(answer)
                                .await
                                .context("set_remote_description(server answer)")?;
                            neg.offer_pending = false;
                            events.note("answer applied");
                        } else {
                            events.note("an answer to no offer of ours");
                        }
                    }
                    ServerMsg::Error {
                        code: ErrorCode::NegotiationGlare,
                        ..
                    } => {
                        if neg.expected_glares > 0 {
                            neg.expected_glares -= 1;
                        } else if neg.offer_pending {
                            rollback(pc).await?;
                            neg.offer_pending = false;
                            neg.want_offer = true;
                        }
                    }
                    ServerMsg::Error {
                        code: ErrorCode::SdpInvalid,
                        ..
                    } if neg.offer_pending => {
                        rollback(pc).await?;
                        neg.offer_pending = false;
                        events.note("the server rejected our offer");
                    }
                    _ => {}
                }
            }
            Step::Ws(WsEvent::Closed(c)) => {
                events.push(PeerEvent::Closed(c));
                return Ok(());
            }
            Step::Ws(WsEvent::Unparsable(u)) => events.note(format!("UNPARSABLE: {u}")),
            Step::Cmd(Some(PeerCmd::Send(m))) => {
                if let Err(e) = ws.send(&m).await {
                    events.note(format!("sending {}: {e:#}", m.type_name()));
                }
            }
            Step::Cmd(Some(PeerCmd::IceRestart)) => {
                events.note("ICE restart is not implemented for webrtc-rs peers");
            }
            Step::Cmd(Some(PeerCmd::Close)) | Step::Cmd(None) => {
                ws.close().await;
                return Ok(());
            }
            Step::Ping => {
                if let Err(e) = send_ping(&mut ws).await {
                    events.note(format!("sending ping: {e:#}"));
                }
            }
        }
    }
}
