//! BENCHMARKS.md tables from the JSON lines the runs wrote: median and min–max over runs, and
//! every figure also as a fraction of the floor measured in the same run.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

fn stats(v: &mut Vec<f64>) -> Option<(f64, f64, f64)> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let med = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some((med, v[0], v[v.len() - 1]))
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{:.0}", x)
    } else if x.abs() >= 10.0 {
        format!("{:.1}", x)
    } else {
        format!("{:.2}", x)
    }
}

fn cell(v: &mut Vec<f64>) -> String {
    match stats(v) {
        None => "—".into(),
        Some((m, lo, hi)) if v.len() == 1 || lo == hi => fmt_num(m),
        Some((m, lo, hi)) => format!("{} ({}–{})", fmt_num(m), fmt_num(lo), fmt_num(hi)),
    }
}

type Key = (String, String);

pub fn markdown(jsonl: &str) -> anyhow::Result<String> {
    let rows: Vec<Value> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut by: BTreeMap<Key, Vec<&Value>> = BTreeMap::new();
    let mut failed = Vec::new();
    for r in &rows {
        let k = (
            r["scenario"].as_str().unwrap_or("?").to_owned(),
            r["target"].as_str().unwrap_or("?").to_owned(),
        );
        if let Some(f) = r.get("failed") {
            failed.push(format!(
                "{} {} run {}: {}",
                k.1,
                k.0,
                r["run"],
                f.as_str().unwrap_or("")
            ));
            continue;
        }
        by.entry(k).or_default().push(r);
    }
    // Floor's packets per CPU second, per (scenario, run).
    let floor_of = |scenario: &str, run: &Value| -> Option<f64> {
        rows.iter()
            .find(|r| r["scenario"] == scenario && r["target"] == "floor" && &r["run"] == run)
            .and_then(|r| r["pkts_per_cpu_s"].as_f64())
            .filter(|x| *x > 0.0)
    };
    let janus_of = |scenario: &str, run: &Value| -> Option<f64> {
        rows.iter()
            .find(|r| r["scenario"] == scenario && r["target"] == "janus" && &r["run"] == run)
            .and_then(|r| r["pkts_per_cpu_s"].as_f64())
            .filter(|x| *x > 0.0)
    };
    let col =
        |rs: &[&Value], f: &str| -> Vec<f64> { rs.iter().filter_map(|r| r[f].as_f64()).collect() };
    let mut s = String::new();
    writeln!(s, "### Steady scenarios (S1 1:1, S2 6-party, S3 1 → N)\n")?;
    writeln!(
        s,
        "| scenario | system | runs | participants | forwarded pkt/s | resent / probe / padding pkt/s | SFU CPU % | pkt per SFU CPU-s | × floor | µs CPU / pkt | added latency (socket arrival) p50 / p99 / max ms | frame complete at receiver p50 / p99 / max ms | fan-out skew p99 ms | loss % | first frame p50 / p95 ms | connected (ICE + DTLS) p50 / p95 ms | SFU RSS / participant KiB | generator CPU % |"
    )?;
    writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for ((sc, t), rs) in &by {
        if sc == "s6" || sc == "s4" {
            continue;
        }
        let mut frac: Vec<f64> = rs
            .iter()
            .filter_map(|r| Some(r["pkts_per_cpu_s"].as_f64()? / floor_of(sc, &r["run"])?))
            .collect();
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} / {} / {} | {} | {} | {} / {} | {} / {} | {} | {} |",
            sc.to_uppercase(),
            t,
            rs.len(),
            rs[0]["participants"],
            cell(&mut col(rs, "fwd_pps")),
            cell(&mut col(rs, "rtx_pps")),
            cell(&mut col(rs, "sfu_cpu_pct")),
            cell(&mut col(rs, "pkts_per_cpu_s")),
            cell(&mut frac),
            cell(&mut col(rs, "cpu_us_per_pkt")),
            cell(&mut col(rs, "lat_sock_p50_ms")),
            cell(&mut col(rs, "lat_sock_p99_ms")),
            cell(&mut col(rs, "lat_sock_max_ms")),
            cell(&mut col(rs, "lat_p50_ms")),
            cell(&mut col(rs, "lat_p99_ms")),
            cell(&mut col(rs, "lat_max_ms")),
            cell(&mut col(rs, "skew_p99_ms")),
            cell(&mut col(rs, "loss_pct")),
            cell(&mut col(rs, "ttff_p50_ms")),
            cell(&mut col(rs, "ttff_p95_ms")),
            cell(&mut col(rs, "ttc_p50_ms")),
            cell(&mut col(rs, "ttc_p95_ms")),
            cell(&mut col(rs, "mem_per_participant_kib")),
            cell(&mut col(rs, "gen_cpu_pct")),
        )?;
    }
    writeln!(
        s,
        "\n### S6: join/leave cycles (one publisher stays; subscribers join, get a first frame, leave)\n"
    )?;
    writeln!(
        s,
        "| system | runs | cycles | cycles with a frame | RSS before → after KiB | RSS growth / cycle KiB | fds before → after | threads after | first frame p95 ms | SFU tables before → after (per run) |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|---|---|")?;
    for ((sc, t), rs) in &by {
        if sc != "s6" {
            continue;
        }
        writeln!(
            s,
            "| {} | {} | {} | {} | {} → {} | {} | {} → {} | {} | {} | {} |",
            t,
            rs.len(),
            rs[0]["cycles"],
            cell(&mut col(rs, "cycles_ok")),
            cell(&mut col(rs, "rss_base_kib")),
            cell(&mut col(rs, "rss_kib")),
            cell(&mut col(rs, "mem_per_participant_kib")),
            cell(&mut col(rs, "fds_base")),
            cell(&mut col(rs, "fds_after")),
            cell(&mut col(rs, "threads")),
            cell(&mut col(rs, "ttff_p95_ms")),
            rs.iter()
                .map(|r| format!(
                    "`{}` → `{}`",
                    r["sfu_counts_base"].as_str().unwrap_or("—"),
                    r["sfu_counts_after"].as_str().unwrap_or("—")
                ))
                .collect::<Vec<_>>()
                .join("<br>"),
        )?;
    }

    // S4: rooms of two under a CPU cap.
    let s4: Vec<_> = by.iter().filter(|((sc, _), _)| sc == "s4").collect();
    if !s4.is_empty() {
        writeln!(
            s,
            "\n### S4: rooms of two (both publish), added until a limit breaks, server under a CPU cap\n"
        )?;
        writeln!(
            s,
            "| system | runs | CPU cap (cores) | rooms within limits | rooms per core | what broke | µs CPU / pkt at ≈25 / 50 / 75 % of capacity | rooms per core by CPU alone (extrapolated) | generator CPU % at the limit |"
        )?;
        writeln!(s, "|---|---|---|---|---|---|---|---|---|")?;
        for ((_, t), rs) in &s4 {
            let at = |frac: f64| -> Vec<f64> {
                rs.iter()
                    .filter_map(|r| {
                        let ok = r["s4_rooms_ok"].as_f64()?;
                        let steps = r["s4_steps"].as_array()?;
                        let target = ok * frac;
                        steps
                            .iter()
                            .filter(|st| st["ok"].as_bool() == Some(true))
                            .min_by(|a, b| {
                                let da = (a["rooms"].as_f64().unwrap_or(0.0) - target).abs();
                                let db = (b["rooms"].as_f64().unwrap_or(0.0) - target).abs();
                                da.total_cmp(&db)
                            })
                            .and_then(|st| st["cpu_us_per_pkt"].as_f64())
                    })
                    .collect()
            };
            // Rooms per core if only CPU counted: the largest step's rooms over its CPU share.
            let mut by_cpu: Vec<f64> = rs
                .iter()
                .filter_map(|r| {
                    let st = r["s4_steps"]
                        .as_array()?
                        .iter()
                        .max_by_key(|st| st["rooms"].as_u64().unwrap_or(0))?;
                    let cpu = st["sfu_cpu_pct"].as_f64()? / 100.0;
                    (cpu > 0.0).then(|| st["rooms"].as_f64().unwrap_or(0.0) / cpu)
                })
                .collect();
            let gen_at_limit: Vec<f64> = rs
                .iter()
                .filter_map(|r| r["s4_steps"].as_array()?.last()?["gen_cpu_pct"].as_f64())
                .collect();
            let limits: Vec<String> = rs
                .iter()
                .map(|r| r["s4_limit"].as_str().unwrap_or("?").to_owned())
                .collect();
            writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {} |",
                t,
                rs.len(),
                cell(&mut col(rs, "s4_cpu_cap")),
                cell(&mut col(rs, "s4_rooms_ok")),
                cell(&mut col(rs, "s4_rooms_per_core")),
                limits.join("; "),
                cell(&mut at(0.25)),
                cell(&mut at(0.5)),
                cell(&mut at(0.75)),
                cell(&mut by_cpu),
                cell(&mut gen_at_limit.clone()),
            )?;
        }
    }

    // Goals (issue 4), for tuxa.
    writeln!(s, "\n### Goals\n")?;
    writeln!(s, "| goal | measured (median over runs) | result |")?;
    writeln!(s, "|---|---|---|")?;
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "**pass**",
        Some(false) => "**fail**",
        None => "not measured",
    };
    let tuxa = |sc: &str| by.get(&(sc.to_owned(), "tuxa".to_owned()));
    if let Some(rs) = tuxa("s3") {
        let pps = stats(&mut col(rs, "pkts_per_cpu_s")).map(|x| x.0);
        let mut f: Vec<f64> = rs
            .iter()
            .filter_map(|r| Some(r["pkts_per_cpu_s"].as_f64()? / floor_of("s3", &r["run"])?))
            .collect();
        let frac = stats(&mut f).map(|x| x.0);
        let mut j: Vec<f64> = rs
            .iter()
            .filter_map(|r| Some(r["pkts_per_cpu_s"].as_f64()? / janus_of("s3", &r["run"])?))
            .collect();
        let vj = stats(&mut j).map(|x| x.0);
        writeln!(
            s,
            "| S3 ≥ 250,000 forwarded pkt/s per core of SFU CPU | {} | {} |",
            pps.map(fmt_num).unwrap_or("—".into()),
            verdict(pps.map(|x| x >= 250_000.0))
        )?;
        writeln!(
            s,
            "| S3 ≥ 50 % of the floor | {} | {} |",
            frac.map(|x| format!("{:.1} %", 100.0 * x))
                .unwrap_or("—".into()),
            verdict(frac.map(|x| x >= 0.5))
        )?;
        writeln!(
            s,
            "| S3 ≥ 2× Janus (same run) | {} | {} |",
            vj.map(|x| format!("{x:.2}×")).unwrap_or("—".into()),
            verdict(vj.map(|x| x >= 2.0))
        )?;
    }
    let mut worst_p99: Option<f64> = None;
    let mut worst_ttff: Option<f64> = None;
    for sc in ["s1", "s2", "s3"] {
        if let Some(rs) = tuxa(sc) {
            if let Some((m, _, _)) = stats(&mut col(rs, "lat_sock_p99_ms")) {
                worst_p99 = Some(worst_p99.map_or(m, |w: f64| w.max(m)));
            }
            if let Some((m, _, _)) = stats(&mut col(rs, "ttff_p95_ms")) {
                worst_ttff = Some(worst_ttff.map_or(m, |w: f64| w.max(m)));
            }
        }
    }
    writeln!(
        s,
        "| added latency p99 ≤ 2 ms in S1–S3 (worst scenario; send → arrival at the receiver's socket) | {} | {} |",
        worst_p99
            .map(|x| format!("{x:.2} ms"))
            .unwrap_or("—".into()),
        verdict(worst_p99.map(|x| x <= 2.0))
    )?;
    match tuxa("s4") {
        Some(rs) => {
            let per_core = stats(&mut col(rs, "s4_rooms_per_core")).map(|x| x.0);
            writeln!(
                s,
                "| S4 ≥ 150 rooms of two per core | {} | {} |",
                per_core.map(fmt_num).unwrap_or("—".into()),
                verdict(per_core.map(|x| x >= 150.0))
            )?;
        }
        None => writeln!(s, "| S4 ≥ 150 rooms of two per core | — | not measured |")?,
    }
    if let Some(rs) = tuxa("s6") {
        let growth = stats(&mut col(rs, "mem_per_participant_kib")).map(|x| x.0);
        let mut fd: Vec<f64> = rs
            .iter()
            .filter_map(|r| Some(r["fds_after"].as_f64()? - r["fds_base"].as_f64()?))
            .collect();
        let fdg = stats(&mut fd).map(|x| x.0);
        // The SFU's tables after the cycles, as before them (every run that logged them).
        let tables: Vec<bool> = rs
            .iter()
            .filter_map(|r| {
                let (b, a) = (
                    r["sfu_counts_base"].as_str()?,
                    r["sfu_counts_after"].as_str()?,
                );
                Some(b == a)
            })
            .collect();
        let tables_ok = (!tables.is_empty()).then(|| tables.iter().all(|x| *x));
        let ok = match (growth, fdg, tables_ok) {
            (Some(g), Some(f), Some(t)) => Some(g < 1.0 && f <= 0.0 && t),
            _ => None,
        };
        writeln!(
            s,
            "| S6 no growth (fds and SFU tables back to baseline, RSS growth < 1 KiB per cycle) | {} KiB/cycle, fds {:+}, SFU tables {} | {} |",
            growth.map(fmt_num).unwrap_or("—".into()),
            fdg.unwrap_or(f64::NAN),
            match tables_ok {
                Some(true) => "at baseline",
                Some(false) => "NOT at baseline",
                None => "not logged",
            },
            verdict(ok)
        )?;
    }
    writeln!(
        s,
        "| time to first frame p95 ≤ 200 ms on loopback (worst of S1–S3) | {} | {} |",
        worst_ttff
            .map(|x| format!("{x:.0} ms"))
            .unwrap_or("—".into()),
        verdict(worst_ttff.map(|x| x <= 200.0))
    )?;
    if let (Some(plain), Some(rec)) = (tuxa("s2"), tuxa("s2r")) {
        recording_table(&mut s, plain, rec)?;
    }
    if !failed.is_empty() {
        writeln!(s, "\n### Runs that failed\n")?;
        for f in failed {
            writeln!(s, "- {f}")?;
        }
    }
    Ok(s)
}

/// S2 against S2R (the same six-party room with every track recorded), paired by run: the SFU's
/// extra CPU, per recorded track, per recorded packet, and the disk bytes written per minute.
fn recording_table(s: &mut String, plain: &[&Value], rec: &[&Value]) -> anyhow::Result<()> {
    let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let (mut cpu0, mut cpu1, mut extra, mut per_track, mut per_pkt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut us0, mut us1, mut us_extra, mut bytes, mut files, mut loss1) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut tracks = 0.0;
    for r in rec {
        let Some(p) = plain.iter().find(|p| p["run"] == r["run"]) else {
            continue;
        };
        // Every publisher's audio and video.
        tracks = 2.0 * f(r, "publishers");
        let (c0, c1) = (f(p, "sfu_cpu_pct"), f(r, "sfu_cpu_pct"));
        cpu0.push(c0);
        cpu1.push(c1);
        extra.push(100.0 * (c1 - c0) / c0);
        per_track.push((c1 - c0) / tracks);
        // Published packets per second: each is forwarded to every other participant.
        let recorded_pps = f(r, "fwd_pps") / (f(r, "participants") - 1.0);
        per_pkt.push(1e4 * (c1 - c0) / recorded_pps);
        let (u0, u1) = (f(p, "cpu_us_per_pkt"), f(r, "cpu_us_per_pkt"));
        us0.push(u0);
        us1.push(u1);
        us_extra.push(100.0 * (u1 - u0) / u0);
        bytes.push(f(r, "rec_bytes_per_min") / 1e6);
        files.push(f(r, "rec_files"));
        loss1.push(f(r, "loss_pct"));
    }
    if cpu0.is_empty() {
        return Ok(());
    }
    let goal = stats(&mut extra.clone()).map(|x| x.0);
    writeln!(
        s,
        "\n### Recording (S2R: S2 with every track recorded, paired with S2 of the same run)\n"
    )?;
    writeln!(
        s,
        "| runs | recorded tracks | SFU CPU % S2 → S2R | extra SFU CPU % | extra CPU per recorded track (% of a core) | extra CPU per recorded packet µs | µs CPU / forwarded pkt S2 → S2R (extra %) | disk MB / min | files | loss % S2R | goal ≤ 10 % more CPU |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    writeln!(
        s,
        "| {} | {} | {} → {} | {} | {} | {} | {} → {} ({}) | {} | {} | {} | {} |",
        cpu0.len(),
        tracks,
        cell(&mut cpu0),
        cell(&mut cpu1),
        cell(&mut extra),
        cell(&mut per_track),
        cell(&mut per_pkt),
        cell(&mut us0),
        cell(&mut us1),
        cell(&mut us_extra),
        cell(&mut bytes),
        cell(&mut files),
        cell(&mut loss1),
        match goal {
            Some(g) if g <= 10.0 => format!("met ({g:.1} %)"),
            Some(g) => format!("NOT met ({g:.1} %)"),
            None => "—".into(),
        }
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sc: &str, run: u32, cpu: f64, fwd: f64, us: f64, bytes: f64) -> String {
        serde_json::json!({
            "target": "tuxa", "scenario": sc, "run": run, "participants": 6, "publishers": 6,
            "fwd_pps": fwd, "sfu_cpu_pct": cpu, "cpu_us_per_pkt": us,
            "rec_bytes_per_min": bytes, "rec_files": if bytes > 0.0 { 12 } else { 0 },
            "loss_pct": 0.0,
        })
        .to_string()
    }

    #[test]
    fn recording_table_pairs_runs_and_judges_the_goal() {
        // Run 1: 10 % → 12 % (+20 %); run 2: 10 % → 10.5 % (+5 %). Median +12.5 %: not met.
        let lines = [
            row("s2", 1, 10.0, 5000.0, 20.0, 0.0),
            row("s2r", 1, 12.0, 5000.0, 24.0, 45e6),
            row("s2", 2, 10.0, 5000.0, 20.0, 0.0),
            row("s2r", 2, 10.5, 5000.0, 21.0, 44e6),
        ]
        .join("\n");
        let md = markdown(&lines).unwrap();
        let table = md.split("### Recording").nth(1).expect("a recording table");
        let data = table.lines().nth(4).unwrap();
        // 12 tracks; extra CPU per track (2 and 0.5 points / 12); 1,000 recorded pkt/s, so
        // 1e4 × 2 / 1000 = 20 µs and 5 µs per recorded packet.
        assert!(
            data.starts_with("| 2 | 12 | 10.0 → 11.2 (10.5–12.0) | 12.5 (5.00–20.0) |"),
            "{data}"
        );
        assert!(
            data.contains("| 0.10 (0.04–0.17) | 12.5 (5.00–20.0) |"),
            "{data}"
        );
        assert!(data.contains("| 44.5 (44.0–45.0) | 12.0 |"), "{data}");
        assert!(data.ends_with("| NOT met (12.5 %) |"), "{data}");
        // Without S2R there is no table.
        let plain = row("s2", 1, 10.0, 5000.0, 20.0, 0.0);
        assert!(!markdown(&plain).unwrap().contains("### Recording"));
    }
}
