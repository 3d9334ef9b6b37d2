//! The sweep's outputs: CSV, a plain-text table and an SVG plot (hand-drawn, no dependency) of
//! bytes and time per token against the batch size.

use std::fmt::Write as _;

use crate::sweep::{Report, Row};

impl Report {
    /// The rows of one layer, in batch order.
    pub fn layer(&self, name: &str) -> Vec<&Row> {
        self.rows.iter().filter(|r| r.layer == name).collect()
    }

    /// CSV, one line per row, with a header.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "layer,batch,seconds,model_bytes,model_weight_bytes,model_bytes_per_token,flops,gbps,copy_gbps,efficiency,touched,dist,device\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{},{},{:.9e},{:.6e},{:.6e},{:.6e},{:.6e},{:.3},{:.3},{:.4},{},{},\"{}\"",
                r.layer,
                r.batch,
                r.seconds,
                r.model_bytes.total(),
                r.model_bytes.weights(),
                r.model_bytes.per_token(),
                r.flops,
                r.gbps(),
                self.copy_gbps,
                r.gbps() / self.copy_gbps,
                r.touched,
                self.dist,
                self.device.replace('"', "'")
            );
        }
        s
    }

    /// A text table with the memory / MoE ratios.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "device: {} | copy bandwidth {:.1} GB/s | indices {} | params: memory {:.3e}, MoE {:.3e}",
            self.device, self.copy_gbps, self.dist, self.params.0 as f64, self.params.1 as f64
        );
        let _ = writeln!(
            s,
            "{:>5} {:>20} {:>12} {:>12} {:>10} {:>8} {:>11} {:>8}",
            "B", "layer", "time µs", "model MB", "GB/s", "of copy", "GFLOP", "touched"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:>5} {:>20} {:>12.1} {:>12.3} {:>10.1} {:>7.1}% {:>11.3} {:>8}",
                r.batch,
                r.layer,
                r.seconds * 1e6,
                r.model_bytes.total() / 1e6,
                r.gbps(),
                100.0 * r.gbps() / self.copy_gbps,
                r.flops / 1e9,
                r.touched
            );
        }
        let _ = writeln!(
            s,
            "\n{:>5} {:>14} {:>14}",
            "B", "MoE/memory time", "MoE/memory bytes"
        );
        for (m, o) in self.layer("ultramem_v2").iter().zip(self.layer("moe")) {
            let _ = writeln!(
                s,
                "{:>5} {:>14.2}× {:>14.2}×",
                m.batch,
                o.seconds / m.seconds,
                o.model_bytes.total() / m.model_bytes.total()
            );
        }
        s
    }

    /// An SVG with two log-log panels against the batch size: model bytes per token, and
    /// measured time per token, one line per layer.
    pub fn to_svg(&self) -> String {
        let layers = [
            ("ultramem_v2", "#1f77b4"),
            ("ultramem_v2_values", "#2ca02c"),
            ("moe", "#d62728"),
        ];
        let panel = |title: &str, value: &dyn Fn(&Row) -> f64, unit: &str, x0: f64| -> String {
            let (w, h, left, top) = (420.0, 300.0, x0 + 70.0, 50.0);
            let pts: Vec<(f64, f64)> = self
                .rows
                .iter()
                .map(|r| ((r.batch as f64).log10(), value(r).max(1e-30).log10()))
                .collect();
            let (bmin, bmax) = pts
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
            let (vmin, vmax) = pts
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
            let (vmin, vmax) = (vmin.floor(), vmax.ceil().max(vmin.floor() + 1.0));
            let bspan = (bmax - bmin).max(1e-9);
            let sx = |b: f64| left + (b - bmin) / bspan * w;
            let sy = |v: f64| top + h - (v - vmin) / (vmax - vmin) * h;
            let mut s = String::new();
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="30" font-size="15" text-anchor="middle">{title}</text>"#,
                left + w / 2.0
            );
            let _ = writeln!(
                s,
                r#"<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="black"/>"#
            );
            for decade in (vmin as i32)..=(vmax as i32) {
                let y = sy(f64::from(decade));
                let _ = writeln!(
                    s,
                    r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">1e{decade}</text>"##,
                    left + w,
                    left - 5.0,
                    y + 4.0
                );
            }
            for r in self.layer("moe") {
                let x = sx((r.batch as f64).log10());
                let _ = writeln!(
                    s,
                    r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
                    top + h + 16.0,
                    r.batch
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">batch size B (tokens per step)</text>"#,
                left + w / 2.0,
                top + h + 36.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="12" transform="rotate(-90 {:.1} {:.1})" text-anchor="middle">{unit}</text>"#,
                x0 + 18.0,
                top + h / 2.0,
                x0 + 18.0,
                top + h / 2.0
            );
            for (i, (name, color)) in layers.iter().enumerate() {
                let line: Vec<String> = self
                    .layer(name)
                    .iter()
                    .map(|r| {
                        format!(
                            "{:.1},{:.1}",
                            sx((r.batch as f64).log10()),
                            sy(value(r).max(1e-30).log10())
                        )
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                    line.join(" ")
                );
                for p in &line {
                    let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                    let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
                }
                let ly = top + 14.0 + 16.0 * i as f64;
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{ly:.1}" font-size="11" fill="{color}">{name}</text>"#,
                    left + 8.0
                );
            }
            s
        };
        let bytes = panel(
            "model bytes per token",
            &|r: &Row| r.model_bytes.per_token(),
            "bytes / token",
            0.0,
        );
        let time = panel(
            "measured time per token",
            &|r: &Row| r.seconds / r.batch as f64,
            "seconds / token",
            520.0,
        );
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1040\" height=\"420\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{bytes}{time}<text x=\"520\" y=\"412\" font-size=\"11\" text-anchor=\"middle\">{} | indices {}</text>\n</svg>\n",
            self.device.replace('<', "(").replace('>', ")"),
            self.dist
        )
    }
}
