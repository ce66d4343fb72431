//! Plain text tables for the terminal, drawn by comfy-table: a header row,
//! then columns padded to their widest cell, two blanks apart, numeric
//! columns right-aligned, no borders (easy to read, `awk` and `cut`).

use std::io::Write;

use comfy_table::{presets, CellAlignment, ContentArrangement};

pub(super) struct Table {
    inner: comfy_table::Table,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns as `(header, right-aligned)`.
    pub(super) fn new(cols: &[(&str, bool)]) -> Table {
        let mut inner = comfy_table::Table::new();
        inner
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(cols.iter().map(|(h, _)| h.to_string()));
        Table {
            inner,
            right: cols.iter().map(|(_, r)| *r).collect(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Write the table, each line prefixed with `indent`.
    pub(super) fn write(mut self, out: &mut dyn Write, indent: &str) -> std::io::Result<()> {
        for col in 0..self.right.len() {
            same_decimals(&mut self.rows, col);
        }
        for row in std::mem::take(&mut self.rows) {
            self.inner.add_row(row);
        }
        let last = self.right.len().saturating_sub(1);
        for (i, (col, right)) in self.inner.column_iter_mut().zip(&self.right).enumerate() {
            col.set_padding((0, if i == last { 0 } else { 2 }));
            col.set_cell_alignment(if *right {
                CellAlignment::Right
            } else {
                CellAlignment::Left
            });
        }
        for line in self.inner.lines() {
            writeln!(out, "{}", format!("{indent}{line}").trim_end())?;
        }
        Ok(())
    }
}

/// One rule per column: when every cell of column `col` is a plain decimal
/// number (or `-`) and one has a fraction, all get as many decimals as the
/// one with most, so `0.19` never stands next to `0.184` and the points
/// line up. Columns with text or scientific notation are left alone.
fn same_decimals(rows: &mut [Vec<String>], col: usize) {
    let cells = || {
        rows.iter()
            .filter_map(|r| r.get(col))
            .filter(|c| c.as_str() != "-")
    };
    let plain = |c: &String| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_digit() || ch == '.' || ch == '-')
            && c.parse::<f64>().is_ok()
    };
    if !cells().all(plain) {
        return;
    }
    let decimals = |c: &String| c.split_once('.').map_or(0, |(_, f)| f.len());
    let Some(most) = cells().map(decimals).max().filter(|d| *d > 0) else {
        return;
    };
    for row in rows.iter_mut() {
        if let Some(c) = row.get_mut(col).filter(|c| c.as_str() != "-") {
            let x: f64 = c.parse().unwrap_or(f64::NAN);
            *c = format!("{x:.most$}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_two_blanks_apart_numbers_right_aligned() {
        let mut t = Table::new(&[("name", false), ("n", true), ("", false)]);
        t.row(vec!["a".into(), "12345".into(), "x".into()]);
        t.row(vec!["longer".into(), "7".into(), String::new()]);
        let mut out = Vec::new();
        t.write(&mut out, "  ").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  name        n\n  a       12345  x\n  longer      7\n"
        );
    }

    #[test]
    fn numbers_in_one_column_share_their_decimals() {
        let mut t = Table::new(&[
            ("error", true),
            ("lr", true),
            ("name", false),
            ("seed", true),
        ]);
        t.row(vec!["0.19".into(), "1".into(), "a.b".into(), "3".into()]);
        t.row(vec![
            "0.184".into(),
            "0.0978175".into(),
            "c".into(),
            "12".into(),
        ]);
        t.row(vec!["-".into(), "1.5e-7".into(), "d".into(), "-".into()]);
        let mut out = Vec::new();
        t.write(&mut out, "").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "error         lr  name  seed\n0.190          1  a.b      3\n0.184  0.0978175  c       12\n    -     1.5e-7  d        -\n",
            "{text}"
        );
    }
}
