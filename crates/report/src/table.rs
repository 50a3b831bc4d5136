//! Rows of text cells under a caption, rendered alike in the terminal, Markdown and HTML: what plans and trace
//! analyses are shown as, so each document builds its cells once.

use comfy_table::Table as TermTable;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde::{Deserialize, Serialize};

use crate::html::escape;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn term(&self) -> String {
        let mut rendered = TermTable::new();
        rendered.load_preset(UTF8_FULL_CONDENSED);
        rendered.set_header(&self.header);
        for row in &self.rows {
            rendered.add_row(row);
        }
        format!("\n{}\n{rendered}\n", self.caption)
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "\n## {}\n\n| {} |\n|{}\n",
            self.caption,
            self.header.join(" | "),
            "---|".repeat(self.header.len())
        );
        for row in &self.rows {
            out += &format!("| {} |\n", row.join(" | "));
        }
        out
    }

    pub fn html(&self) -> String {
        let mut out = format!("<h2>{}</h2><table><thead><tr>", escape(&self.caption));
        for cell in &self.header {
            out += &format!("<th>{}</th>", escape(cell));
        }
        out += "</tr></thead><tbody>";
        for row in &self.rows {
            out += "<tr>";
            for cell in row {
                out += &format!("<td>{}</td>", escape(cell));
            }
            out += "</tr>";
        }
        out + "</tbody></table>"
    }
}
