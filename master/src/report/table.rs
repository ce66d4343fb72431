//! Plain text tables for the terminal, drawn by comfy-table: a header row,
//! then columns padded to their widest cell, two blanks apart, numeric
//! columns right-aligned, no borders (easy to read, `awk` and `cut`).

use std::io::Write;

use comfy_table::{presets, CellAlignment, ContentArrangement};

pub(super) struct Table {
    inner: comfy_table::Table,
    right: Vec<bool>,
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
        }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.inner.add_row(cells);
    }

    /// Write the table, each line prefixed with `indent`.
    pub(super) fn write(mut self, out: &mut dyn Write, indent: &str) -> std::io::Result<()> {
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
}
