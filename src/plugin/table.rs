//! Plain tables like kubectl's: a header, columns two spaces apart, and the last column cut so a row
//! fits the width (100 columns: a terminal split in two, a CI log).

pub const WIDTH: usize = 100;

pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (column, cell) in row.iter().enumerate().take(columns) {
            widths[column] = widths[column].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 < columns {
                line.push_str(&format!("{cell:<width$}  ", width = widths[column]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(&fit(line.trim_end(), WIDTH));
        out.push('\n');
    }
    out
}

/// `text` cut to `width` characters, ending in `…` when cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_long_rows_are_cut_to_the_width() {
        let rows = vec![
            vec!["hotel-db".into(), "ok".into()],
            vec!["crm".into(), "x".repeat(200)],
        ];
        let table = render(&["NAME", "STATE"], &rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "NAME      STATE");
        assert_eq!(lines[1], "hotel-db  ok");
        assert_eq!(lines[2].chars().count(), WIDTH);
        assert!(lines[2].ends_with('…'));
    }
}
