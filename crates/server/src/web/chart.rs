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
}
