//! Charts drawn as SVG on the server: numbers in, coordinates out; the template draws them.

pub struct Bar {
    pub label: String,
    pub count: i64,
    pub y: i64,
    pub text_y: i64,
    pub width: i64,
    pub value_x: i64,
}

/// A horizontal bar chart, one row per item, largest first (as given).
pub struct BarChart {
    pub bars: Vec<Bar>,
    pub height: i64,
    /// The same data as text, for screen readers.
    pub description: String,
}

const LABEL_WIDTH: i64 = 190;
const MAX_BAR: i64 = 380;
const ROW: i64 = 28;

pub fn bar_chart(items: &[(String, i64)]) -> BarChart {
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let bars = items
        .iter()
        .enumerate()
        .map(|(i, (label, count))| {
            let y = 8 + i as i64 * ROW;
            let width = (count * MAX_BAR / max).max(2);
            Bar {
                label: label.clone(),
                count: *count,
                y,
                text_y: y + 15,
                width,
                value_x: LABEL_WIDTH + 10 + width + 6,
            }
        })
        .collect();
    BarChart {
        bars,
        height: 16 + items.len() as i64 * ROW,
        description: items
            .iter()
            .map(|(l, n)| format!("{l}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// One series of a line chart, drawn as a polyline.
pub struct Line {
    pub name: String,
    /// CSS class of the stroke (`series-1` …).
    pub class: String,
    /// `x,y x,y …` (days without a value are left out).
    pub points: String,
    /// The last value, for the legend.
    pub last: String,
    /// The point, when there is only one (a polyline of one point draws nothing).
    pub single: Option<(i64, i64)>,
}

/// A line chart over days: coordinates computed here, the template draws them.
pub struct LineChart {
    pub lines: Vec<Line>,
    /// (y, label) of the horizontal grid lines.
    pub ticks: Vec<(i64, String)>,
    pub first_day: String,
    pub last_day: String,
    /// The same data as text, for screen readers.
    pub description: String,
    /// No value at all.
    pub empty: bool,
}

pub const LINE_LEFT: i64 = 56;
pub const LINE_RIGHT: i64 = 624;
pub const LINE_TOP: i64 = 16;
pub const LINE_BOTTOM: i64 = 176;

fn fmt_value(v: f64, unit: &str) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}{unit}")
    } else {
        format!("{v:.1}{unit}")
    }
}

/// `days` on the x axis (oldest first); each series has one optional value per day. The y
/// axis starts at 0 and ends at `max` (or the largest value, rounded up).
pub fn line_chart(
    days: &[String],
    series: &[(String, Vec<Option<f64>>)],
    unit: &str,
    max: Option<f64>,
) -> LineChart {
    let largest = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let empty = series.iter().all(|(_, v)| v.iter().all(Option::is_none));
    let top = match max {
        Some(m) => m,
        None => {
            // 1, 2 or 5 times a power of ten, at least 4.
            let mut step = 1.0;
            loop {
                if let Some(t) = [1.0, 2.0, 5.0]
                    .iter()
                    .map(|k| k * step)
                    .find(|t| *t >= largest)
                {
                    break t.max(4.0);
                }
                step *= 10.0;
            }
        }
    };
    let n = days.len().max(2) as f64 - 1.0;
    let x = |i: usize| LINE_LEFT + ((LINE_RIGHT - LINE_LEFT) as f64 * i as f64 / n).round() as i64;
    let y = |v: f64| {
        LINE_BOTTOM - ((LINE_BOTTOM - LINE_TOP) as f64 * (v / top).clamp(0.0, 1.0)).round() as i64
    };
    let lines = series
        .iter()
        .enumerate()
        .map(|(k, (name, values))| Line {
            single: {
                let known: Vec<(i64, i64)> = values
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (x(i), y(v))))
                    .collect();
                (known.len() == 1).then(|| known[0])
            },
            name: name.clone(),
            class: format!("series-{}", k % 6 + 1),
            points: values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| format!("{},{}", x(i), y(v))))
                .collect::<Vec<_>>()
                .join(" "),
            last: values
                .iter()
                .rev()
                .flatten()
                .next()
                .map_or("–".to_owned(), |v| fmt_value(*v, unit)),
        })
        .collect();
    let ticks = [0.0, top / 2.0, top]
        .iter()
        .map(|v| (y(*v), fmt_value(*v, unit)))
        .collect();
    let first_day = days.first().cloned().unwrap_or_default();
    let last_day = days.last().cloned().unwrap_or_default();
    let description = if empty {
        format!("No daily history between {first_day} and {last_day}.")
    } else {
        let parts: Vec<String> = series
            .iter()
            .filter(|(_, v)| v.iter().any(Option::is_some))
            .map(|(name, v)| {
                let known: Vec<f64> = v.iter().flatten().copied().collect();
                let first = known.first().copied().unwrap_or(0.0);
                let last = known.last().copied().unwrap_or(0.0);
                let hi = known.iter().fold(f64::MIN, |a, b| a.max(*b));
                format!(
                    "{name}: {} at the start, {} at the end, at most {}",
                    fmt_value(first, unit),
                    fmt_value(last, unit),
                    fmt_value(hi, unit)
                )
            })
            .collect();
        format!("From {first_day} to {last_day}. {}.", parts.join("; "))
    };
    LineChart {
        lines,
        ticks,
        first_day,
        last_day,
        description,
        empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest() {
        let c = bar_chart(&[("lock_held".into(), 4), ("disk_full".into(), 1)]);
        assert_eq!(c.bars[0].width, MAX_BAR);
        assert_eq!(c.bars[1].width, MAX_BAR / 4);
        assert_eq!(c.bars[1].y - c.bars[0].y, ROW);
        assert_eq!(c.description, "lock_held: 4, disk_full: 1");
        assert!(bar_chart(&[]).bars.is_empty());
    }

    #[test]
    fn lines_scale_to_the_axis() {
        let days: Vec<String> = ["d1", "d2", "d3"].iter().map(|d| d.to_string()).collect();
        let c = line_chart(
            &days,
            &[
                ("coverage".into(), vec![Some(50.0), None, Some(100.0)]),
                ("other".into(), vec![None, None, None]),
            ],
            " %",
            Some(100.0),
        );
        let mid = (LINE_TOP + LINE_BOTTOM) / 2;
        assert_eq!(
            c.lines[0].points,
            format!("{LINE_LEFT},{mid} {LINE_RIGHT},{LINE_TOP}")
        );
        assert_eq!(c.lines[0].last, "100 %");
        assert_eq!(c.lines[1].points, "");
        assert_eq!(c.lines[0].single, None);
        let one = line_chart(
            &days,
            &[("x".into(), vec![None, Some(2.0), None])],
            "",
            None,
        );
        assert_eq!(
            one.lines[0].single,
            Some(((LINE_LEFT + LINE_RIGHT) / 2, mid)) // the axis ends at 4 at least: 2 is half way up
        );
        assert_eq!(c.ticks[2], (LINE_TOP, "100 %".to_owned()));
        assert!(c
            .description
            .starts_with("From d1 to d3. coverage: 50 % at the start, 100 % at the end"));
        // Without a fixed maximum the axis ends at 1, 2 or 5 times a power of ten.
        let c = line_chart(
            &days,
            &[("open".into(), vec![Some(7.0), Some(13.0), None])],
            "",
            None,
        );
        assert_eq!(c.ticks[2].1, "20");
        assert!(line_chart(&days, &[], "", None).empty);
    }
}
