//! A fast reader for the YAML that cluster dumps are made of: block mappings and sequences of
//! single-line scalars, as `kubectl get -o yaml` and most serializers write them.
//!
//! serde-saphyr reads ~2-3 MB/s on this machine (a 13 MB dump of 10k Services: 2-6 s, all
//! of it in the parser; DESIGN-NOTES 171), so whole-cluster dumps go through this reader
//! first. It is deliberately narrow and never guesses: anything outside the subset — flow
//! collections other than `{}`/`[]`, block or multi-line scalars, anchors, aliases, tags,
//! inline comments, tabs, duplicate keys, and every plain scalar whose type any YAML schema
//! could read differently (`yes`, `0x1f`, `1:20`, `1.5`, `2001-12-14`, ...) — makes it
//! return `None`, and the document goes to serde-saphyr instead. So it only ever gives the
//! value serde-saphyr would (checked on every document of the benchmark dump and on a table
//! of tricky scalars); it is not a second schema check — field meaning stays in
//! `manifest.rs` and `core::plan`.

use serde_json::{Map, Value};

/// One line of content: its indentation and text (trailing blanks removed).
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

/// The document `doc` (optionally starting with its `---` line) as a value, or `None` when it
/// uses anything outside the subset, or is empty.
pub fn read(doc: &str) -> Option<Value> {
    let mut lines = Vec::new();
    for (i, raw) in doc.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw).trim_end_matches(' ');
        let text = raw.trim_start_matches(' ');
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if raw.starts_with("---") {
            // The document's own marker, bare; content after it, or a later one, is not ours.
            if i == 0 && raw == "---" && lines.is_empty() {
                continue;
            }
            return None;
        }
        if text.starts_with('\t') || text.contains(" #") || text.contains('\t') {
            return None;
        }
        lines.push(Line {
            indent: raw.len() - text.len(),
            text,
        });
    }
    let first = *lines.first()?;
    let mut pos = 0;
    let value = node(&mut lines, &mut pos, first.indent)?;
    (pos == lines.len()).then_some(value)
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// The block node starting at `lines[*pos]`, which is indented by exactly `indent`.
fn node(lines: &mut [Line<'_>], pos: &mut usize, indent: usize) -> Option<Value> {
    let line = lines.get(*pos)?;
    if line.indent != indent {
        return None;
    }
    if is_item(line.text) {
        sequence(lines, pos, indent)
    } else {
        mapping(lines, pos, indent)
    }
}

fn mapping(lines: &mut [Line<'_>], pos: &mut usize, indent: usize) -> Option<Value> {
    let mut map = Map::new();
    while let Some(line) = lines.get(*pos).copied() {
        if line.indent < indent || (line.indent == indent && is_item(line.text)) {
            break;
        }
        if line.indent > indent {
            return None; // a continuation line: multi-line scalars are not ours
        }
        let (key, rest) = split_entry(line.text)?;
        *pos += 1;
        let value = if rest.is_empty() {
            match lines.get(*pos) {
                Some(next) if next.indent > indent => node(lines, pos, next.indent)?,
                // kubectl's style: a sequence value at its key's indentation.
                Some(next) if next.indent == indent && is_item(next.text) => {
                    sequence(lines, pos, indent)?
                }
                _ => Value::Null,
            }
        } else {
            scalar(rest)?
        };
        if map.insert(key.to_string(), value).is_some() {
            return None; // duplicate key: serde-saphyr's policy decides
        }
    }
    Some(Value::Object(map))
}

fn sequence(lines: &mut [Line<'_>], pos: &mut usize, indent: usize) -> Option<Value> {
    let mut items = Vec::new();
    while let Some(line) = lines.get(*pos).copied() {
        if line.indent != indent || !is_item(line.text) {
            if line.indent > indent {
                return None;
            }
            break;
        }
        let rest = line.text[1..].trim_start_matches(' ');
        if rest.is_empty() {
            *pos += 1;
            items.push(match lines.get(*pos) {
                Some(next) if next.indent > indent => node(lines, pos, next.indent)?,
                _ => Value::Null,
            });
        } else if is_item(rest) || split_entry(rest).is_some() {
            // `- key: value` (or `- - x`): the rest of the line opens a node indented at
            // its own column; re-read this line as that node's first line.
            let column = indent + (line.text.len() - rest.len());
            lines[*pos] = Line {
                indent: column,
                text: rest,
            };
            items.push(node(lines, pos, column)?);
        } else {
            *pos += 1;
            items.push(scalar(rest)?);
        }
    }
    Some(Value::Array(items))
}

/// `key: rest` or `key:` with a plain, unambiguous key.
fn split_entry(text: &str) -> Option<(&str, &str)> {
    let (key, rest) = match text.find(": ") {
        Some(i) => (&text[..i], text[i + 2..].trim_start_matches(' ')),
        None => (text.strip_suffix(':')?, ""),
    };
    let plain_key = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-' | b'_'))
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && !special_word(key);
    plain_key.then_some((key, rest))
}

/// Words some YAML schema reads as a boolean, null or float, in any letter case.
fn special_word(s: &str) -> bool {
    const WORDS: [&str; 11] = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf",
    ];
    WORDS.iter().any(|w| w.eq_ignore_ascii_case(s))
}

/// A single-line scalar, or `None` when its type or content is not certain.
fn scalar(s: &str) -> Option<Value> {
    match s {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        "null" => return Some(Value::Null),
        "{}" => return Some(Value::Object(Map::new())),
        "[]" => return Some(Value::Array(Vec::new())),
        _ => {}
    }
    if let Some(inner) = s.strip_prefix('"') {
        return double_quoted(inner.strip_suffix('"')?).map(Value::String);
    }
    if let Some(inner) = s.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        if inner.replace("''", "").contains('\'') {
            return None;
        }
        return Some(Value::String(inner.replace("''", "'")));
    }
    if s.contains(": ") || s.ends_with(':') || s.contains(['{', '}', '[', ']', ',']) {
        return None;
    }
    let first = s.bytes().next()?;
    if first.is_ascii_digit() || first == b'-' {
        return number_or_string(s);
    }
    if first.is_ascii_alphabetic() || first == b'_' || first == b'/' {
        return (!special_word(s)).then(|| Value::String(s.to_string()));
    }
    None // an indicator or a character we do not type: `&`, `*`, `!`, `|`, `>`, `.`, `~`, ...
}

/// A plain scalar starting with a digit or `-`: an integer in canonical form, a string no
/// schema could read as a number, date or time, or `None`.
fn number_or_string(s: &str) -> Option<Value> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if digits.len() > 1 && digits.starts_with('0') {
            return None; // octal in YAML 1.1, decimal in 1.2
        }
        return s.parse::<i64>().ok().map(Value::from);
    }
    if s.starts_with('-') {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("0x") || lower.starts_with("0o") || lower.starts_with("0b") {
        return None;
    }
    // Numbers, dates, times and sexagesimals use only these characters.
    let numeric =
        |b: u8| b.is_ascii_digit() || matches!(b, b'_' | b'.' | b':' | b'+' | b'-' | b'e' | b'E');
    if !s.bytes().all(numeric) {
        return Some(Value::String(s.to_string())); // e.g. a uid or an IPv6 address
    }
    let dotted_quad = s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.bytes().filter(|&b| b == b'.').count() >= 2;
    dotted_quad.then(|| Value::String(s.to_string()))
}

fn double_quoted(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => out.push(match chars.next()? {
                '\\' => '\\',
                '"' => '"',
                '/' => '/',
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                _ => return None,
            }),
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saphyr(doc: &str) -> Value {
        serde_saphyr::from_str(doc).expect("serde-saphyr parses the test document")
    }

    /// Either not ours, or exactly what serde-saphyr reads.
    fn agrees(doc: &str) -> bool {
        match read(doc) {
            None => false,
            Some(v) => {
                assert_eq!(v, saphyr(doc), "differs from serde-saphyr on:\n{doc}");
                true
            }
        }
    }

    #[test]
    fn kubectl_style_objects_read_as_serde_saphyr_reads_them() {
        let doc = "---\napiVersion: v1\nkind: Service\nmetadata:\n  labels:\n    app.kubernetes.io/name: web\n  name: web\n  namespace: shop\n  uid: 77a7bf4d-378d-49d9-8463-751cc278b7c1\n  resourceVersion: \"1234\"\nspec:\n  clusterIP: 10.96.0.10\n  clusterIPs:\n  - 10.96.0.10\n  - fd00:96::a\n  ports:\n  - name: http\n    port: 80\n    protocol: TCP\n    targetPort: 8080\n  -   name: 'it''s'\n      port: 443\n  selector: {}\n  sessionAffinity: None\n  externalIPs: []\n  nested:\n    -\n      a: -5\n    - - x\n      - \"tab\\there \\u00e9\"\n  empty:\nstatus:\n  loadBalancer: {}\n";
        assert!(agrees(doc));
    }

    #[test]
    fn every_tricky_scalar_is_left_to_serde_saphyr_or_read_the_same() {
        let mut ours = 0;
        for v in [
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "N",
            "True",
            "FALSE",
            "Null",
            "~",
            "",
            "nan",
            ".inf",
            "-.inf",
            ".NaN",
            "0x1f",
            "0o17",
            "0b11",
            "017",
            "0",
            "-0",
            "-12",
            "12",
            "1_000",
            "1.5",
            "1e3",
            "1E3",
            "-1.5e-3",
            "+12",
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
            "1:20",
            "190:20:30",
            "10.244.0.0/16",
            "10.96.0.1",
            "1.2",
            "fd00::1",
            "2001:db8::1",
            "::1",
            "a: b",
            "a:b",
            "http://x/y",
            "&anchor x",
            "*alias",
            "!tag x",
            "|",
            ">",
            "@x",
            "`x",
            "%x",
            "?x",
            "x # comment",
            "x#y",
            "\"q\\x41\"",
            "\"a\\\"b\"",
            "'a'b'",
            "'a''b'",
            "{a: 1}",
            "[1, 2]",
            "a, b",
            "99999999999999999999",
            "-",
            "- a",
            "TCP",
            "svc-00001",
            "_x",
            "/path",
            "e5",
            "1-2",
            "1.2.3",
            "12345678-1234-1234-1234-123456789abc",
        ] {
            let doc = format!("k: {v}\n");
            if serde_saphyr::from_str::<Value>(&doc).is_err() {
                assert!(
                    read(&doc).is_none(),
                    "{v:?}: read what serde-saphyr rejects"
                );
                continue;
            }
            ours += usize::from(agrees(&doc));
        }
        assert!(ours >= 20, "too few scalars taken by the fast path: {ours}");
    }

    #[test]
    fn structures_outside_the_subset_are_left_to_serde_saphyr() {
        for doc in [
            "a:\n  b: 1\n   c: 2\n",   // inconsistent indentation
            "a: 1\na: 2\n",            // duplicate key
            "a: |\n  text\n",          // block scalar
            "a: first\n  continued\n", // multi-line plain scalar
            "a: {b: 1}\n",             // flow mapping
            "a: 1 # note\n",           // inline comment
            "\"quoted key\": 1\n",     // quoted key
            "a:\n\t- 1\n",             // tab
            "--- {a: 1}\n",            // content on the marker line
            "<<: *base\n",             // merge key
            "a: &x 1\nb: *x\n",        // anchor and alias
        ] {
            assert!(read(doc).is_none(), "should not be read here:\n{doc}");
        }
        assert!(read("# only a comment\n").is_none());
    }
}
