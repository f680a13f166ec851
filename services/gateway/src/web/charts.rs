//! Small SVG charts drawn on the server: no script, no library, readable on
//! a phone (they scale with their box) and printable.
use maud::{Markup, html};

/// One bar of a chart.
pub struct Bar {
    pub label: String,
    pub value: i64,
    /// A CSS class for its colour (`warn`, `bad`, `good`, or empty).
    pub class: &'static str,
}

/// Horizontal bars, one per row, each labelled with its value.
pub fn bars(title: &str, bars: &[Bar]) -> Markup {
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let row = 26;
    let height = (bars.len().max(1) * row) as i64;
    html! {
        figure.chart {
            figcaption { (title) }
            @if bars.is_empty() {
                p.empty { "—" }
            } @else {
                svg viewBox={ "0 0 320 " (height) } role="img" aria-label=(title) {
                    @for (i, b) in bars.iter().enumerate() {
                        @let y = (i * row) as i64;
                        @let w = (b.value * 170 / max).max(if b.value > 0 { 2 } else { 0 });
                        text.label x="0" y={ (y + 17) } { (b.label) }
                        rect class={ "bar " (b.class) } x="110" y={ (y + 4) } width=(w) height="18" rx="2" {}
                        text.value x={ (116 + w) } y={ (y + 17) } { (b.value) }
                    }
                }
            }
        }
    }
}

/// Two series per week side by side (reported and resolved), with a legend.
pub fn weekly(title: &str, weeks: &[(String, i64, i64)], legend: (&str, &str)) -> Markup {
    let max = weeks.iter().map(|w| w.1.max(w.2)).max().unwrap_or(0).max(1);
    let n = weeks.len().max(1) as i64;
    let slot = 300 / n;
    let bar = (slot / 3).max(2);
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox="0 0 320 150" role="img" aria-label=(title) {
                @for (i, (label, a, b)) in weeks.iter().enumerate() {
                    @let x = 10 + i as i64 * slot;
                    @let ha = a * 100 / max;
                    @let hb = b * 100 / max;
                    rect.bar x=(x) y={ (115 - ha) } width=(bar) height=(ha) { title { (label) ": " (a) } }
                    rect class="bar good" x={ (x + bar) } y={ (115 - hb) } width=(bar) height=(hb) { title { (label) ": " (b) } }
                    text.axis x=(x) y="130" { (label) }
                }
                rect.bar x="10" y="138" width="10" height="10" {}
                text.axis x="24" y="147" { (legend.0) }
                rect class="bar good" x="110" y="138" width="10" height="10" {}
                text.axis x="124" y="147" { (legend.1) }
            }
        }
    }
}

/// A share of a whole as one bar: `done` of `total`, the rest marked `rest_class`.
pub fn share(title: &str, done: i64, total: i64, caption: &str, rest_class: &str) -> Markup {
    let w = (done * 300).checked_div(total).unwrap_or(0);
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox="0 0 320 30" role="img" aria-label=(title) {
                rect class={ "bar " (rest_class) } x="0" y="4" width="300" height="18" rx="2" {}
                rect class="bar good" x="0" y="4" width=(w) height="18" rx="2" {}
            }
            p.caption { (caption) }
        }
    }
}

/// A day's hours as 24 cells, the gaps (hours short of staff) in red.
pub fn hours(label: &str, gaps: &[bool], first_hour: u32) -> Markup {
    html! {
        div.hours {
            span.label { (label) }
            svg viewBox="0 0 240 26" role="img" aria-label=(label) {
                @for (i, gap) in gaps.iter().enumerate() {
                    @let hour = (first_hour + i as u32) % 24;
                    rect class={ "hour" @if *gap { " gap" } } x={ (i * 10) } y="2" width="9" height="14" {
                        title { (format!("{hour:02}:00")) @if *gap { " ✗" } }
                    }
                    @if hour.is_multiple_of(6) {
                        text.axis x={ (i * 10) } y="25" { (format!("{hour:02}")) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars(
            "t",
            &[
                Bar {
                    label: "<a>".into(),
                    value: 4,
                    class: "",
                },
                Bar {
                    label: "b".into(),
                    value: 2,
                    class: "warn",
                },
            ],
        )
        .into_string();
        assert!(svg.contains("width=\"170\""), "{svg}");
        assert!(svg.contains("width=\"85\""), "{svg}");
        assert!(svg.contains("&lt;a&gt;") && !svg.contains("<a>"));
    }

    #[test]
    fn gaps_are_marked_hour_by_hour() {
        let svg = hours("gate", &[false, true, false], 23).into_string();
        assert_eq!(svg.matches("hour gap").count(), 1);
        assert!(svg.contains("00:00 ✗"), "{svg}");
    }
}
