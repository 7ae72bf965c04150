//! How the command-line tools print: aligned tables for people, JSON for
//! programs. Pure formatting, no I/O, so it is tested with strings.

use serde_json::Value;

/// `--output`: a readable table (the default) or JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Rows under a header, printed with each column as wide as its widest
/// cell, two spaces apart, as `kafka-consumer-groups.sh` does.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|title| title.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(
            cells.len(),
            self.header.len(),
            "a row has one cell per column"
        );
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline; the
    /// last column is not padded (no trailing spaces).
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .header
            .iter()
            .map(|title| title.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let last = line.len() - 1;
            for (index, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if index < last {
                    let pad = widths[index] - cell.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// A JSON value as printed by `--output json`: pretty, newline-terminated.
pub fn render_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a Value always serializes");
    text.push('\n');
    text
}

/// A list of broker ids as `1,2,3` (Kafka's describe output).
pub fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// An offset or `-` when there is none (Kafka prints `-` for a partition
/// without a committed offset).
pub fn offset_cell(offset: Option<i64>) -> String {
    offset.map_or_else(|| "-".to_string(), |offset| offset.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &[&str], rows: &[&[&str]], expected: &str) {
        let mut table = Table::new(header);
        for row in rows {
            table.row(row.iter().map(|cell| cell.to_string()).collect());
        }
        assert_eq!(table.render(), expected);
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        check(
            &["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"],
            &[&["orders", "6", "1"], &["a-much-longer-name", "12", "3"]],
            "TOPIC               PARTITIONS  REPLICATION-FACTOR\n\
             orders              6           1\n\
             a-much-longer-name  12          3\n",
        );
    }

    #[test]
    fn an_empty_table_prints_its_header() {
        check(&["GROUP", "STATE"], &[], "GROUP  STATE\n");
    }

    #[test]
    fn wide_characters_count_once() {
        check(&["K", "V"], &[&["é", "x"]], "K  V\né  x\n");
    }

    #[test]
    fn cells_helpers() {
        assert_eq!(join_ids(&[1, 2, 3]), "1,2,3");
        assert_eq!(join_ids(&[]), "");
        assert_eq!(offset_cell(None), "-");
        assert_eq!(offset_cell(Some(42)), "42");
    }

    #[test]
    fn json_is_pretty_and_ends_in_a_newline() {
        let text = render_json(&serde_json::json!({"topic": "t"}));
        assert_eq!(text, "{\n  \"topic\": \"t\"\n}\n");
    }
}
