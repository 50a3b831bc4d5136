//! Small hand-written scanners shared by the log parsers: numbers as engines print them, `label: value` fields
//! and Python's dict repr. The crate has no regex dependency, and these few shapes are all the formats need.

use std::collections::BTreeMap;

/// The numeric token at the start of `text`: an optional `-`, digits with optional `,` thousands separators
/// (Python's `f"{n:,}"`, as in `262,144 tokens`) and an optional fraction. A comma counts as a separator only
/// when exactly three digits follow it, so `4 reqs, Waiting` is not read as one number.
fn numeric_token(text: &str) -> Option<(&str, bool)> {
    let bytes = text.as_bytes();
    let mut end = usize::from(bytes.first() == Some(&b'-'));
    let digits_start = end;
    let mut has_separator = false;
    while end < bytes.len() {
        let byte = bytes[end];
        if byte.is_ascii_digit() {
            end += 1;
        } else if byte == b','
            && end > digits_start
            && bytes.len() >= end + 4
            && bytes[end + 1..end + 4].iter().all(u8::is_ascii_digit)
            && bytes.get(end + 4).is_none_or(|b| !b.is_ascii_digit())
        {
            has_separator = true;
            end += 4;
        } else {
            break;
        }
    }
    if end == digits_start {
        return None;
    }
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end += 1;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    Some((&text[..end], has_separator))
}

/// The number at the start of `text` (after any spaces), as a float.
pub(super) fn leading_f64(text: &str) -> Option<f64> {
    let (token, has_separator) = numeric_token(text.trim_start())?;
    if has_separator {
        token.replace(',', "").parse().ok()
    } else {
        token.parse().ok()
    }
}

/// The whole non-negative number at the start of `text` (after any spaces); `None` for fractions, negative
/// numbers and values beyond `u64`.
pub(super) fn leading_u64(text: &str) -> Option<u64> {
    let (token, has_separator) = numeric_token(text.trim_start())?;
    if has_separator {
        token.replace(',', "").parse().ok()
    } else {
        token.parse().ok()
    }
}

/// The float right after the first `label` in `text`.
pub(super) fn f64_after(text: &str, label: &str) -> Option<f64> {
    let start = text.find(label)? + label.len();
    leading_f64(&text[start..])
}

/// The whole number right after the first `label` in `text`.
pub(super) fn u64_after(text: &str, label: &str) -> Option<u64> {
    let start = text.find(label)? + label.len();
    leading_u64(&text[start..])
}

/// `label<separator>value` pairs of a `, `-separated list, as in vLLM's stats line (`Running: 4 reqs`) or
/// SGLang's capacity line (`max_total_num_tokens=1234`); parts without the separator are left out.
pub(super) fn fields<'a>(
    text: &'a str,
    separator: &'a str,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    text.split(", ")
        .filter_map(move |part| part.split_once(separator))
        .map(|(label, value)| (label.trim(), value.trim()))
}

/// The key → value pairs of a Python dict repr such as vLLM's `non-default args: {'port': 8001, 'x': ['a']}`.
/// String values lose their quotes and escapes; anything else (numbers, `None`, lists, nested dicts) keeps its
/// repr text. A truncated or malformed repr yields the pairs read before the damage.
pub(super) fn python_dict(text: &str) -> BTreeMap<String, String> {
    let mut pairs = BTreeMap::new();
    let mut rest = match text.trim_start().strip_prefix('{') {
        Some(rest) => rest,
        None => return pairs,
    };
    loop {
        rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with('}') {
            break;
        }
        let Some((key, after_key)) = python_scalar(rest) else {
            break;
        };
        let Some(after_colon) = after_key.trim_start().strip_prefix(':') else {
            break;
        };
        let Some((value, after_value)) = python_scalar(after_colon.trim_start()) else {
            break;
        };
        pairs.insert(key, value);
        rest = after_value.trim_start();
        match rest.strip_prefix(',') {
            Some(after_comma) => rest = after_comma,
            None => break,
        }
    }
    pairs
}

/// One dict key or value at the start of `text`: a quoted string (unescaped) or a bracket-balanced token up to
/// the next top-level `,`, `:` (for keys) or `}`; `None` when the input ends inside it.
fn python_scalar(text: &str) -> Option<(String, &str)> {
    if let Some(quote) = text.chars().next().filter(|c| *c == '\'' || *c == '"') {
        return python_string(&text[1..], quote);
    }
    let mut depth = 0_usize;
    let mut in_quote: Option<char> = None;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        if let Some(quote) = in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == quote {
                in_quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => in_quote = Some(c),
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' if depth > 0 => depth -= 1,
            ',' | ':' | '}' if depth == 0 => {
                let token = text[..index].trim();
                return (!token.is_empty()).then(|| (token.to_string(), &text[index..]));
            }
            _ => {}
        }
    }
    None
}

/// The body of a Python string literal whose opening quote is already consumed; returns the unescaped text
/// and what follows the closing quote.
fn python_string(text: &str, quote: char) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        if c == quote {
            return Some((value, &text[index + c.len_utf8()..]));
        }
        if c != '\\' {
            value.push(c);
            continue;
        }
        let (_, escaped) = chars.next()?;
        match escaped {
            'n' => value.push('\n'),
            't' => value.push('\t'),
            'r' => value.push('\r'),
            'x' | 'u' | 'U' => {
                let width = match escaped {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let digits: String = chars.by_ref().take(width).map(|(_, d)| d).collect();
                match u32::from_str_radix(&digits, 16)
                    .ok()
                    .and_then(char::from_u32)
                {
                    Some(decoded) => value.push(decoded),
                    None => {
                        value.push('\\');
                        value.push(escaped);
                        value.push_str(&digits);
                    }
                }
            }
            '\\' | '\'' | '"' => value.push(escaped),
            other => {
                value.push('\\');
                value.push(other);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_with_thousands_separators_and_fractions() {
        assert_eq!(leading_u64("262,144 tokens"), Some(262_144));
        assert_eq!(leading_u64("1,000,000"), Some(1_000_000));
        assert_eq!(leading_f64("128.00x"), Some(128.0));
        assert_eq!(leading_f64("  0.9%"), Some(0.9));
        assert_eq!(leading_u64("4 reqs, Waiting: 0"), Some(4));
        // A comma followed by a space separates fields; one followed by four digits is not a separator.
        assert_eq!(leading_u64("4, 123"), Some(4));
        assert_eq!(leading_u64("4,1234"), Some(4));
        assert_eq!(leading_u64("1.5"), None);
        assert_eq!(leading_f64("-1"), Some(-1.0));
        assert_eq!(leading_u64("-1"), None);
        assert_eq!(leading_f64("x"), None);
        assert_eq!(leading_f64("3."), Some(3.0));
        assert_eq!(leading_u64("99999999999999999999999"), None);
    }

    #[test]
    fn labelled_numbers_and_fields() {
        assert_eq!(u64_after("# GPU blocks: 12200", "blocks: "), Some(12_200));
        assert_eq!(f64_after("took 41.92 s", "took "), Some(41.92));
        let parsed: Vec<_> = fields("a: 1, b: 2 reqs, junk, c: x", ": ").collect();
        assert_eq!(parsed, [("a", "1"), ("b", "2 reqs"), ("c", "x")]);
    }

    #[test]
    fn python_dict_repr_from_the_vllm_fixture() {
        let args = python_dict(
            "{'host': '127.0.0.1', 'port': 8001, 'model': '<workdir>/tiny-model/hf', 'dtype': 'bfloat16', 'max_model_len': 2048, 'served_model_name': ['tiny'], 'load_format': 'dummy', 'max_num_seqs': 8}",
        );
        assert_eq!(args.len(), 8);
        assert_eq!(args["host"], "127.0.0.1");
        assert_eq!(args["port"], "8001");
        assert_eq!(args["served_model_name"], "['tiny']");
        assert_eq!(args["max_num_seqs"], "8");
    }

    #[test]
    fn python_dict_escapes_nesting_and_damage() {
        let args = python_dict(
            r#"{'a': "it's", 'b': 'say "hi" it\'s', 'c': 'tab\there\\ \x07', 'd': True, 'e': None, 'f': 0.92, 'g': [], 'h': -3, 'i': {'k': [1, 2], 'j': 'x,y}'}, 'u': '\u00e9'}"#,
        );
        assert_eq!(args["a"], "it's");
        assert_eq!(args["b"], "say \"hi\" it's");
        assert_eq!(args["c"], "tab\there\\ \u{7}");
        assert_eq!(args["d"], "True");
        assert_eq!(args["e"], "None");
        assert_eq!(args["f"], "0.92");
        assert_eq!(args["g"], "[]");
        assert_eq!(args["h"], "-3");
        assert_eq!(args["i"], "{'k': [1, 2], 'j': 'x,y}'}");
        assert_eq!(args["u"], "é");
        // Cut mid-value: the complete pairs survive.
        let cut = python_dict("{'host': '127.0.0.1', 'port': 80");
        assert_eq!(cut.len(), 1);
        assert!(python_dict("not a dict").is_empty());
        assert!(python_dict("{}").is_empty());
        assert!(python_dict("{'a' 1}").is_empty());
        // A broken escape swallows the closing quote, so the string never ends.
        assert!(python_dict(r"{'bad': '\x4'}").is_empty());
    }
}
