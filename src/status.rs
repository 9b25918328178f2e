//! What the status page shows: each node's report on itself, gathered by the server
//! (`server::status`) and drawn by the page (`app::status`). Shared, so the two agree.

use serde::{Deserialize, Serialize};

/// Seconds between two samples of a node's series.
pub const SAMPLE_SECS: u64 = 5;
/// Samples kept per series: five minutes.
pub const SAMPLES: usize = 60;

/// All live nodes: the one that answered first, then the others by id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub nodes: Vec<NodeStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub version: String,
    pub uptime_secs: u64,
    /// `None` without Redis (one node, in memory); otherwise whether Redis answers this node.
    pub redis: Option<bool>,
    pub draining: bool,
    pub connections: u64,
    pub rooms: u64,
    pub series: Series,
}

/// One value per [`SAMPLE_SECS`], oldest first, at most [`SAMPLES`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub connections: Vec<f64>,
    pub rooms: Vec<f64>,
    pub messages_per_sec: Vec<f64>,
    pub deliveries_per_sec: Vec<f64>,
}

/// The points of an SVG polyline drawing `values` in a `width` × `height` box: the newest at the
/// right edge, one step per sample of a full series, the largest value at the top and zero at
/// the bottom.
pub fn sparkline(values: &[f64], width: f64, height: f64) -> String {
    let top = values.iter().copied().fold(0.0_f64, f64::max);
    let step = width / (SAMPLES.max(2) - 1) as f64;
    let start = width - step * values.len().saturating_sub(1) as f64;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = start + step * i as f64;
            let y = if top > 0.0 {
                height - (v.max(0.0) / top) * height
            } else {
                height
            };
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A duration as people read it: "42 s", "5 min", "3 h 20 min", "2 d 4 h".
pub fn uptime(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A rate or count, short: "0", "12", "3.4", "1.2k", "45k".
pub fn short_number(v: f64) -> String {
    match v {
        v if v >= 10_000.0 => format!("{:.0}k", v / 1000.0),
        v if v >= 1_000.0 => format!("{:.1}k", v / 1000.0),
        v if v >= 10.0 || v == v.trunc() => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_ends_at_the_right_edge_with_the_peak_at_the_top() {
        let points = sparkline(&[0.0, 5.0, 10.0], 118.0, 30.0);
        assert_eq!(points, "114.0,30.0 116.0,15.0 118.0,0.0");
        assert_eq!(sparkline(&[0.0, 0.0], 118.0, 30.0), "116.0,30.0 118.0,30.0");
        assert_eq!(sparkline(&[], 118.0, 30.0), "");
        let full = sparkline(&[1.0; SAMPLES], 118.0, 30.0);
        assert!(full.starts_with("0.0,0.0 "), "{full}");
    }

    #[test]
    fn durations_and_numbers_read_short() {
        assert_eq!(uptime(42), "42 s");
        assert_eq!(uptime(300), "5 min");
        assert_eq!(uptime(3 * 3600 + 20 * 60), "3 h 20 min");
        assert_eq!(uptime(2 * 86_400 + 4 * 3600 + 59), "2 d 4 h");
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(3.42), "3.4");
        assert_eq!(short_number(12.7), "13");
        assert_eq!(short_number(1234.0), "1.2k");
        assert_eq!(short_number(45_600.0), "46k");
    }
}
