//! How a subscriber's bandwidth is shared among the video it receives.
//!
//! Pure arithmetic, no state: the SFU gathers each video track's layers
//! (lowest first, with their measured bitrates) and the subscriber's budget
//! (str0m's send-side estimate less audio and headroom), and gets back the
//! layer each track should receive, or none. Audio is never in the sum: it
//! is reserved before the budget is computed, so video cannot starve it.
//!
//! How the numbers fit together (the constants below, and the SFU's timers
//! in `lib.rs` that call this):
//! - every 0.5 s (at once on a sharp fall) each subscriber's video budget is
//!   the estimate × [`HEADROOM`], cut further for smoothed loss above 5 %
//!   ([`video_budget`]), less its audio — reserved first for every microphone
//!   that sends ([`AUDIO_RESERVE_BPS`] until measured), RED counted at half on
//!   a link under 500 kbit/s where it is stripped;
//! - [`allocate`] gives every video track its lowest layer (counted at most
//!   [`MIN_VIDEO_BPS`]; screen shares first, then in the order subscribed),
//!   then raises tracks one layer at a time while the budget lasts. Moving up
//!   costs [`UP_MARGIN`] (an upper layer at least its nominal rate), resuming
//!   stopped video [`RESUME_MARGIN`], holding the current layer
//!   [`HOLD_DISCOUNT`]: an estimate at a layer's edge does not flap, and every
//!   move costs a keyframe;
//! - a move down stops the higher layer at once (a short freeze) rather than
//!   queue it ahead of the audio; videos that do not fit stop at once while
//!   another still flows; the last one is held on its lowest layer for 2 s
//!   without room (never in a subscriber's first 10 s, while the estimate
//!   settles), unless the budget has been under half the lowest layer for 1 s;
//! - when no video fits the subscriber gets `audio_only {reason:
//!   weak_network}`, and video resumes by itself when the estimate grows back:
//!   str0m probes when the desired rate (the next step up) rises, the SFU asks
//!   again every 4 s while video flows and restarts an estimator with no new
//!   estimate for 8 s; layers nobody receives for 3 s are paused at the
//!   publisher, the lowest always runs, and a layer the publisher stops by
//!   itself (0.7 s silent while another arrives) is not chosen.

/// The share of the estimate given to media: the estimate is a guess that
/// overshoots before it backs off, and retransmissions need room.
pub(crate) const HEADROOM: f64 = 0.9;

/// Moving up to a layer costs this much more than holding it: without the
/// gap, an estimate hovering at a layer's rate would switch it every round,
/// and every switch costs a keyframe.
pub(crate) const UP_MARGIN: f64 = 1.25;

/// What the lowest layer of a track is counted at, at most: a 180p layer's
/// steady rate (its measured rate is inflated by keyframes, just when a
/// link is in trouble and keyframes are asked for). A track sent in one
/// encoding (no simulcast) has only a "lowest" layer, perhaps of a megabit;
/// it is stopped only when not even this fits, the point where any video
/// would crowd out the voice.
pub(crate) const MIN_VIDEO_BPS: u64 = 100_000;

/// Video that was stopped comes back with a smaller margin than a move up
/// between layers: a 300 kbit/s 3G link must carry the lowest layer, and
/// str0m's estimate on such a link hovers well under the link rate.
pub(crate) const RESUME_MARGIN: f64 = 1.1;

/// What holding a track's current layer is counted at, as a share of its
/// rate (see `allocate`).
pub(crate) const HOLD_DISCOUNT: f64 = 0.9;

/// What is set aside for one audio track when its rate is not measured yet:
/// Opus at its default voice rate with RTP/UDP/IP headers at 50 packets/s.
pub(crate) const AUDIO_RESERVE_BPS: u64 = 40_000;

/// One video track a subscriber receives, as the allocator sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Demand {
    /// Bits per second of each layer, lowest first; `None` for a layer that
    /// cannot be chosen (the publisher stopped sending it on its own).
    pub layers: Vec<Option<u64>>,
    /// The layer the track receives now (or is switching to).
    pub current: Option<usize>,
    /// Served first when the budget is short (a screen share over cameras:
    /// in a case conference the shared image is what is discussed).
    pub priority: u8,
}

/// The budget for video, in bits per second, from the estimate, the audio
/// the subscriber receives and its loss (a fraction, 0–1). Loss beyond what
/// Opus FEC and NACK absorb means the link carries less than estimated.
pub(crate) fn video_budget(estimate_bps: u64, audio_bps: u64, loss: f32) -> u64 {
    let loss = f64::from(loss.clamp(0.0, 1.0));
    let loss_factor = (1.0 - (loss - 0.05).max(0.0) * 2.0).clamp(0.5, 1.0);
    let media = estimate_bps as f64 * HEADROOM * loss_factor;
    (media.round() as u64).saturating_sub(audio_bps)
}

/// The layer (index into `layers`) for each demand, or `None` where video
/// must stop. Every track first gets its lowest usable layer, by priority,
/// while the budget lasts; then tracks are raised one layer at a time, by
/// priority, while the extra cost fits. Layers above the current one cost
/// [`UP_MARGIN`] more.
pub(crate) fn allocate(budget: u64, demands: &[Demand]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(demands[*i].priority));
    let cost = |d: &Demand, layer: usize| -> Option<u64> {
        let mut rate = d.layers.get(layer).copied().flatten()?;
        let lowest = d.layers[..layer].iter().all(Option::is_none);
        if lowest {
            rate = rate.min(MIN_VIDEO_BPS);
        }
        let margin = match d.current {
            // Holding the layer it has costs a little less than its rate:
            // an estimate that dips for a moment (a keyframe, a probe) does
            // not move it down and back up, each move costing a keyframe.
            Some(c) if layer == c => HOLD_DISCOUNT,
            Some(c) if layer < c => 1.0,
            None if lowest => RESUME_MARGIN,
            _ => UP_MARGIN,
        };
        Some((rate as f64 * margin) as u64)
    };
    let mut chosen: Vec<Option<usize>> = vec![None; demands.len()];
    let mut left = budget;
    for &i in &order {
        let d = &demands[i];
        let Some(lowest) = (0..d.layers.len()).find(|l| d.layers[*l].is_some()) else {
            continue;
        };
        if let Some(c) = cost(d, lowest)
            && c <= left
        {
            left -= c;
            chosen[i] = Some(lowest);
        }
    }
    loop {
        let mut raised = false;
        for &i in &order {
            let d = &demands[i];
            let Some(at) = chosen[i] else { continue };
            let spent = cost(d, at).unwrap_or(0);
            let Some(next) = (at + 1..d.layers.len()).find(|l| d.layers[*l].is_some()) else {
                continue;
            };
            let Some(c) = cost(d, next) else { continue };
            if c <= left + spent {
                left = left + spent - c;
                chosen[i] = Some(next);
                raised = true;
            }
        }
        if !raised {
            return chosen;
        }
    }
}

/// The (minimum, desired) rates for str0m's estimator, in bits/s, from
/// what was chosen: the minimum is what is sent plus, when it is within
/// reach, the step to the next layer (padding fills the gap, so the
/// estimate can grow into it); the desired rate is the next step up, not
/// every track at its top: probing far above a thin link fills its queue
/// and costs the audio. Each step taken raises it, and probes again.
pub(crate) fn probe_targets(
    audio_bps: u64,
    demands: &[Demand],
    chosen: &[Option<usize>],
) -> (u64, u64) {
    let rate = |d: &Demand, l: usize| d.layers.get(l).copied().flatten().unwrap_or(0);
    let spent: u64 = demands
        .iter()
        .zip(chosen)
        .map(|(d, c)| c.map_or(0, |c| rate(d, c)))
        .sum();
    let top: u64 = demands
        .iter()
        .map(|d| d.layers.iter().flatten().copied().max().unwrap_or(0))
        .sum();
    let step = demands
        .iter()
        .zip(chosen)
        .filter_map(|(d, c)| {
            let from = c.map_or(0, |c| c + 1);
            let next = (from..d.layers.len()).find_map(|l| d.layers[l])?;
            Some(next.saturating_sub(c.map_or(0, |c| rate(d, c))))
        })
        .min();
    let gross = |bps: u64| (bps as f64 / HEADROOM) as u64;
    let now = audio_bps + spent;
    // A step more than half again what is sent is not padded toward (on a
    // thin link padding would only fill it); probing finds it instead. With
    // no step to grow into, nothing is padded: the estimator holds what the
    // media alone carries (it may run up to 1.5× the acknowledged rate), and
    // padding there costs a full send per packet on every subscriber for
    // nothing (S3 measured 14 % more datagrams than media).
    let min = match step {
        Some(s) if s <= now / 2 + 1 => gross(now + s),
        _ => now,
    };
    let desired = match step {
        Some(s) => gross(now + s).min(gross(audio_bps + top)),
        None => gross(now),
    };
    (min, desired.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(current: Option<usize>) -> Demand {
        Demand {
            layers: vec![Some(150_000), Some(500_000), Some(1_500_000)],
            current,
            priority: 0,
        }
    }

    #[test]
    fn a_wide_link_gets_the_top_layer_and_a_narrow_one_the_lowest() {
        assert_eq!(allocate(5_000_000, &[cam(Some(2))]), vec![Some(2)]);
        assert_eq!(allocate(250_000, &[cam(Some(2))]), vec![Some(0)]);
        // The lowest layer counts at most MIN_VIDEO_BPS.
        assert_eq!(allocate(105_000, &[cam(Some(0))]), vec![Some(0)]);
        // Too little for even the lowest layer: video stops.
        assert_eq!(allocate(85_000, &[cam(Some(0))]), vec![None]);
    }

    #[test]
    fn moving_up_needs_more_than_holding() {
        // Holding costs 10 % less: a dip to 95 % of the rate keeps the layer.
        assert_eq!(
            allocate(95_000 + 500_000 * 9 / 10, &[cam(Some(1))]),
            vec![Some(1)]
        );
        assert_eq!(allocate(440_000, &[cam(Some(1))]), vec![Some(0)]);
        // 600 kbit/s holds the middle layer but does not reach it from below.
        assert_eq!(allocate(600_000, &[cam(Some(1))]), vec![Some(1)]);
        assert_eq!(allocate(600_000, &[cam(Some(0))]), vec![Some(0)]);
        assert_eq!(allocate(640_000, &[cam(Some(0))]), vec![Some(1)]);
        // Resuming after audio-only needs a smaller margin.
        assert_eq!(allocate(105_000, &[cam(None)]), vec![None]);
        assert_eq!(allocate(111_000, &[cam(None)]), vec![Some(0)]);
    }

    #[test]
    fn a_screen_share_is_served_before_cameras() {
        let mut screen = cam(Some(0));
        screen.priority = 1;
        let got = allocate(800_000, &[cam(Some(0)), screen]);
        assert_eq!(got, vec![Some(0), Some(1)]);
        let got = allocate(
            150_000,
            &[cam(Some(0)), cam(Some(0)), {
                let mut s = cam(Some(0));
                s.priority = 1;
                s
            }],
        );
        assert_eq!(got, vec![None, None, Some(0)]);
    }

    #[test]
    fn a_single_encoding_is_stopped_only_when_no_video_fits() {
        let one = |current| Demand {
            layers: vec![Some(1_200_000)],
            current,
            priority: 0,
        };
        assert_eq!(allocate(400_000, &[one(Some(0))]), vec![Some(0)]);
        assert_eq!(allocate(85_000, &[one(Some(0))]), vec![None]);
        assert_eq!(allocate(105_000, &[one(None)]), vec![None]);
        assert_eq!(allocate(111_000, &[one(None)]), vec![Some(0)]);
    }

    #[test]
    fn layers_the_publisher_stopped_are_never_chosen() {
        let d = Demand {
            layers: vec![Some(150_000), Some(500_000), None],
            current: Some(2),
            priority: 0,
        };
        assert_eq!(allocate(10_000_000, &[d]), vec![Some(1)]);
        let none = Demand {
            layers: vec![None],
            current: None,
            priority: 0,
        };
        assert_eq!(allocate(10_000_000, &[none]), vec![None]);
    }

    #[test]
    fn probing_reaches_for_the_next_layer_only_when_it_is_near() {
        let d = [cam(Some(0))];
        let (min, desired) = probe_targets(48_000, &d, &[Some(0)]);
        // Next step (350k) is more than half of what is sent (198k): no
        // padding (the minimum is what is sent); the desired rate is that step.
        assert_eq!(min, 198_000);
        assert_eq!(desired, (548_000f64 / HEADROOM) as u64);
        let (_, desired) = probe_targets(48_000, &d, &[Some(2)]);
        assert_eq!(desired, (1_548_000f64 / HEADROOM) as u64);
        let (min, _) = probe_targets(48_000, &d, &[Some(1)]);
        // From 548k, the step to 1.5M is too far to pad toward.
        assert_eq!(min, 548_000);
        let two = [cam(Some(1)), cam(Some(1))];
        let (min, _) = probe_targets(48_000, &two, &[Some(1), Some(1)]);
        assert_eq!(min, 1_048_000);
        // Audio only: the lowest layer is far above the audio; probing (not
        // padding) looks for room to resume.
        let (min, _) = probe_targets(48_000, &d, &[None]);
        assert_eq!(min, 48_000);
    }

    #[test]
    fn budget_reserves_audio_and_shrinks_with_heavy_loss() {
        assert_eq!(video_budget(1_000_000, 48_000, 0.0), 900_000 - 48_000);
        // Up to 5 % loss is what FEC and NACK are for.
        assert_eq!(video_budget(1_000_000, 0, 0.05), 900_000);
        assert_eq!(video_budget(1_000_000, 0, 0.15), 720_000);
        assert_eq!(video_budget(1_000_000, 0, 0.9), 450_000);
        assert_eq!(video_budget(40_000, 48_000, 0.0), 0);
    }
}
