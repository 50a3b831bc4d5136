//! The few YAML shapes a Prometheus rule file needs (maps in a fixed key order, lists, strings), written by hand
//! so the room needs no YAML crate; every string is double-quoted and escaped, so no value can change the shape.

use std::fmt::Write as _;

/// A YAML value: a string, a map whose keys keep their order, or a list.
pub(crate) enum Yaml {
    Text(String),
    Map(Vec<(&'static str, Yaml)>),
    List(Vec<Yaml>),
}

impl Yaml {
    pub fn text(value: impl Into<String>) -> Yaml {
        Yaml::Text(value.into())
    }

    /// The value as a YAML document in block style.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write_block(0, &mut out);
        out
    }

    /// Writes a map or list at `indent`, one entry per line (a string is written as a line of its own).
    fn write_block(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Yaml::Text(text) => {
                let _ = writeln!(out, "{pad}{}", quoted(text));
            }
            Yaml::Map(entries) => {
                for (key, value) in entries {
                    match value {
                        Yaml::Text(text) => {
                            let _ = writeln!(out, "{pad}{key}: {}", quoted(text));
                        }
                        Yaml::Map(inner) if inner.is_empty() => {
                            let _ = writeln!(out, "{pad}{key}: {{}}");
                        }
                        Yaml::List(items) if items.is_empty() => {
                            let _ = writeln!(out, "{pad}{key}: []");
                        }
                        Yaml::Map(_) => {
                            let _ = writeln!(out, "{pad}{key}:");
                            value.write_block(indent + 2, out);
                        }
                        // Lists sit at their key's indentation, as Prometheus's own examples write them.
                        Yaml::List(_) => {
                            let _ = writeln!(out, "{pad}{key}:");
                            value.write_block(indent, out);
                        }
                    }
                }
            }
            Yaml::List(items) => {
                for item in items {
                    // An item is written two columns in, then its first line takes the dash.
                    let mut block = String::new();
                    item.write_block(indent + 2, &mut block);
                    let _ = write!(out, "{pad}- {}", &block[indent + 2..]);
                }
            }
        }
    }
}

/// A YAML double-quoted scalar: quotes and backslashes escaped, and every character outside printable ASCII
/// written as an escape, so line breaks YAML counts (U+0085, U+2028) cannot end the scalar.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08X}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_maps_and_lists_are_written_in_block_style() {
        let document = Yaml::Map(vec![(
            "groups",
            Yaml::List(vec![Yaml::Map(vec![
                ("name", Yaml::text("g")),
                (
                    "rules",
                    Yaml::List(vec![Yaml::Map(vec![
                        ("alert", Yaml::text("A")),
                        (
                            "labels",
                            Yaml::Map(vec![("severity", Yaml::text("warning"))]),
                        ),
                        ("annotations", Yaml::Map(Vec::new())),
                    ])]),
                ),
            ])]),
        )]);
        assert_eq!(
            document.render(),
            "groups:\n- name: \"g\"\n  rules:\n  - alert: \"A\"\n    labels:\n      severity: \"warning\"\n    \
             annotations: {}\n"
        );
    }

    #[test]
    fn strings_cannot_break_out_of_their_quotes() {
        assert_eq!(
            quoted("a{b=\"c\\d\"}\n\u{2028}é😀"),
            "\"a{b=\\\"c\\\\d\\\"}\\u000A\\u2028\\u00E9\\U0001F600\""
        );
    }
}
