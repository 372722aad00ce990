//! The timeline picture (SVG, built as a string): time on x; fault windows as coloured bands
//! (injection to heal, then a lighter band until the cluster converged) labelled with their
//! kind and targets; each slot's first delivery as a point at its lateness (log scale on y),
//! later deliveries of the same slot as red crosses, arrivals before their slot as blue points
//! on a strip under the axis; leader changes as marks along the top.
//!
//! Pure: takes the recorded data, returns the document. No input is trusted as markup: labels
//! are escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::FaultKind;
use crate::history::{FaultRecord, LeaderMark};
use crate::sink::Hit;

const W: f64 = 1400.0;
const H: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 60.0;
/// Arrivals earlier than this before their slot are drawn as "early".
const EARLY_MS: i64 = 100;
/// At most this many points are drawn (evenly thinned beyond it).
const MAX_POINTS: usize = 40_000;

fn colour(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::KillLeader | FaultKind::KillFollower | FaultKind::KillAll => "#e4572e",
        FaultKind::PauseLeader | FaultKind::PauseFollower => "#f3a712",
        FaultKind::IsolateLeader
        | FaultKind::IsolateFollower
        | FaultKind::Split
        | FaultKind::Bridge
        | FaultKind::OneWay => "#4c6ef5",
        FaultKind::Delay | FaultKind::Loss => "#29a19c",
        FaultKind::Membership => "#9c36b5",
        FaultKind::ClockJump => "#868e96",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Lateness in ms to y (log scale from 1 ms to the maximum, negatives pinned at the bottom).
fn y_of(late_ms: i64, max_ms: f64) -> f64 {
    let plot_h = H - TOP - BOTTOM;
    let v = (late_ms.max(1) as f64).log10();
    let top = max_ms.max(10.0).log10();
    H - BOTTOM - (v / top).clamp(0.0, 1.0) * plot_h
}

/// Renders the picture of a run between `t0` and `t1` (Unix ms).
pub fn render(title: &str, t0: i64, t1: i64, faults: &[FaultRecord], hits: &[Hit], leaders: &[LeaderMark]) -> String {
    let span = (t1 - t0).max(1) as f64;
    let x_of = |t: i64| LEFT + ((t - t0) as f64 / span).clamp(0.0, 1.0) * (W - LEFT - RIGHT);
    // First delivery per key.
    let mut first: BTreeMap<&str, &Hit> = BTreeMap::new();
    for h in hits {
        first
            .entry(h.key.as_str())
            .and_modify(|x| {
                if h.received_ms < x.received_ms {
                    *x = h
                }
            })
            .or_insert(h);
    }
    let max_late = first.values().map(|h| h.received_ms - h.scheduled_ms).max().unwrap_or(1000).max(1000) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"#, esc(title));
    // Fault bands.
    for (i, f) in faults.iter().enumerate() {
        let (x0, x1) = (x_of(f.start_ms), x_of(f.end_ms));
        let xc = x_of(f.converged_ms.unwrap_or(f.end_ms));
        let c = colour(f.kind);
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{c}" fill-opacity="0.28"><title>{}</title></rect>"#,
            (x1 - x0).max(1.0),
            H - TOP - BOTTOM,
            esc(&format!("{} {:?} {} ({} ms)", f.kind, f.targets, f.detail, f.end_ms - f.start_ms))
        );
        if xc > x1 {
            let _ = writeln!(
                s,
                r#"<rect x="{x1:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{c}" fill-opacity="0.10"/>"#,
                xc - x1,
                H - TOP - BOTTOM
            );
        }
        let ly = TOP + 12.0 + (i % 4) as f64 * 12.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{ly:.1}" fill="{c}">{}</text>"#,
            x0 + 2.0,
            esc(&format!("{} {:?}", f.kind, f.targets))
        );
    }
    // Axes and grid.
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##,
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM
    );
    let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="#333"/>"##, H - BOTTOM);
    for ms in [1i64, 10, 100, 1_000, 10_000, 100_000] {
        if ms as f64 > max_late * 1.01 {
            break;
        }
        let y = y_of(ms, max_late);
        let label = if ms >= 1000 { format!("{} s", ms / 1000) } else { format!("{ms} ms") };
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##, W - RIGHT);
        let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{label}</text>"#, LEFT - 6.0, y + 4.0);
    }
    let secs = span / 1000.0;
    let step =
        [10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0].into_iter().find(|st| secs / st <= 12.0).unwrap_or(3600.0);
    let mut tick = 0.0;
    for _ in 0..100 {
        if tick > secs {
            break;
        }
        let x = x_of(t0 + (tick * 1000.0) as i64);
        let _ =
            writeln!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}s</text>"#, H - BOTTOM + 16.0, tick as i64);
        tick += step;
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">time since start</text>"#, W / 2.0, H - 8.0);
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">lateness (log)</text>"#,
        H / 2.0,
        H / 2.0
    );
    // Points.
    let pts: Vec<&&Hit> = first.values().collect();
    let stride = (pts.len() / MAX_POINTS).max(1);
    let _ = writeln!(s, r##"<g fill="#222" fill-opacity="0.45">"##);
    let mut early = Vec::new();
    for h in pts.iter().step_by(stride) {
        let late = h.received_ms - h.scheduled_ms;
        if late < -EARLY_MS {
            early.push(**h);
            continue;
        }
        let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="1.3"/>"#, x_of(h.scheduled_ms), y_of(late, max_late));
    }
    let _ = writeln!(s, "</g>");
    // Arrivals before their slot, in blue on a strip under the axis.
    let _ = writeln!(s, r##"<g fill="#1c7ed6">"##);
    for h in &early {
        let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="1.6"/>"#, x_of(h.scheduled_ms), H - BOTTOM + 26.0);
    }
    let _ = writeln!(s, "</g>");
    if !early.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#1c7ed6">early</text>"##,
            LEFT - 6.0,
            H - BOTTOM + 30.0
        );
    }
    // Second and later deliveries of a slot, in red.
    let _ = writeln!(s, r##"<g stroke="#d00" stroke-width="1.2">"##);
    for h in hits.iter().filter(|h| first.get(h.key.as_str()).is_some_and(|f| !std::ptr::eq(*f, *h))).take(MAX_POINTS) {
        let (x, y) = (x_of(h.scheduled_ms), y_of(h.received_ms - h.scheduled_ms, max_late));
        let _ = writeln!(s, r#"<path d="M{:.1},{:.1} l6,6 m0,-6 l-6,6"/>"#, x - 3.0, y - 3.0);
    }
    let _ = writeln!(s, "</g>");
    // Leader changes.
    for m in leaders {
        let x = x_of(m.at_ms);
        let label = m.leader.map(|l| format!("L{l}")).unwrap_or_else(|| "L?".into());
        let _ = writeln!(
            s,
            r##"<path d="M{x:.1},{} l-4,-8 h8 z" fill="#111"><title>term {} leader {:?}</title></path>"##,
            TOP - 2.0,
            m.term,
            m.leader
        );
        let _ = writeln!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle" font-size="9">{label}</text>"#, TOP - 12.0);
    }
    // Legend.
    let legend = [
        ("kill", colour(FaultKind::KillLeader)),
        ("pause", colour(FaultKind::PauseLeader)),
        ("partition", colour(FaultKind::Split)),
        ("delay/loss", colour(FaultKind::Delay)),
        ("membership", colour(FaultKind::Membership)),
        ("clock", colour(FaultKind::ClockJump)),
    ];
    for (i, (name, c)) in legend.iter().enumerate() {
        let x = W - RIGHT - 560.0 + i as f64 * 92.0;
        let _ = writeln!(s, r#"<rect x="{x:.1}" y="8" width="12" height="12" fill="{c}" fill-opacity="0.5"/>"#);
        let _ = writeln!(s, r#"<text x="{:.1}" y="18">{name}</text>"#, x + 16.0);
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bands_points_and_marks() {
        let f = FaultRecord {
            kind: FaultKind::Split,
            targets: vec![1],
            minority: vec![1],
            cut_off: vec![1],
            affected: vec![1],
            detail: "<cut>".into(),
            start_ms: 2_000,
            in_effect_ms: 2_010,
            heal_ms: 5_990,
            end_ms: 6_000,
            converged_ms: Some(8_000),
            error: None,
        };
        let hits = vec![
            Hit { key: "a".into(), job: "j".into(), scheduled_ms: 1_000, received_ms: 1_020, attempt: 1, canary: true },
            Hit { key: "b".into(), job: "j".into(), scheduled_ms: 3_000, received_ms: 7_000, attempt: 1, canary: true },
            Hit { key: "b".into(), job: "j".into(), scheduled_ms: 3_000, received_ms: 9_000, attempt: 1, canary: true },
            Hit { key: "c".into(), job: "j".into(), scheduled_ms: 9_000, received_ms: 4_000, attempt: 1, canary: true },
        ];
        let marks = vec![LeaderMark { at_ms: 2_500, leader: Some(2), term: 3 }];
        let svg = render("t", 0, 10_000, &[f], &hits, &marks);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("&lt;cut&gt;"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">early</text>"));
        assert!(svg.contains("L2"));
        assert_eq!(svg.matches("l6,6 m0,-6").count(), 1, "one re-delivery cross");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
