//! Manifest text -> one JSON value per Kubernetes object document, as fast as the format allows.
//!
//! - JSON (the first non-blank character is `{` or `[`: `kubectl get -o json`, a `v1 List`, or
//!   several objects one after another) goes through `serde_json`, which reads a 10 MB dump in
//!   a few tens of milliseconds.
//! - YAML is cut into its documents at the `---` marker lines and the documents are parsed on
//!   every core (at most a thread per `BYTES_PER_THREAD`, so a small file is parsed on the
//!   calling thread), each by `block_yaml` when it is plain block style (dumps are), else by
//!   serde-saphyr. Cutting there is exact, not a heuristic: YAML forbids a line starting with
//!   `---` (followed by a blank or the line end) inside any node of a document, so such a line
//!   always starts the next one. Files with directives (`%YAML`, `%TAG`), which belong to the
//!   document after them, are parsed whole.
//!
//! Nothing here looks at fields: what a document means is decided by `manifest.rs` (kind and
//! schema) and `core::plan` (values), as for every other source.

use serde_json::Value;
use std::ops::Range;

/// Why a text did not parse: the message names the line (1-based, in the whole text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

/// Parses `text` into its documents (empty YAML documents are skipped). A text that starts
/// like JSON takes the JSON fast path; if that fails it is read as YAML (JSON documents
/// separated by `---` lines are YAML, not JSON), and a text neither reads reports the JSON error.
pub fn parse(
    text: &str,
    yaml_options: fn() -> serde_saphyr::Options,
) -> Result<Vec<Value>, ParseError> {
    if text.trim_start().starts_with(['{', '[']) {
        return parse_json(text).or_else(|json| parse_yaml(text, yaml_options).map_err(|_| json));
    }
    parse_yaml(text, yaml_options)
}

/// YAML text per parser thread at least: a thread is spawned only for as much text as it
/// takes far longer to parse (~ms) than to spawn it (~tens of µs).
const BYTES_PER_THREAD: usize = 64 * 1024;

fn parse_yaml(
    text: &str,
    yaml_options: fn() -> serde_saphyr::Options,
) -> Result<Vec<Value>, ParseError> {
    let chunks = yaml_documents(text);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(chunks.len().max(1))
        .min(text.len().div_ceil(BYTES_PER_THREAD).max(1));
    let groups = balanced_groups(&chunks, threads);
    // One group: parse here. A thread costs a stack of fresh pages per call, more than
    // parsing a small file takes (in the fuzzer, under ASan, ~3/4 of a run went to it).
    if let [only] = groups.as_slice() {
        return parse_yaml_chunks(text, &chunks[only.clone()], yaml_options);
    }
    let parsed: Vec<Result<Vec<Value>, ParseError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .iter()
            .map(|group| {
                let chunks = &chunks[group.clone()];
                scope.spawn(move || parse_yaml_chunks(text, chunks, yaml_options))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(ParseError("YAML parser thread panicked".into())))
            })
            .collect()
    });
    let mut docs = Vec::new();
    for group in parsed {
        docs.extend(group?);
    }
    Ok(docs)
}

fn parse_json(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut docs = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        let value = value.map_err(|e| ParseError(format!("not valid JSON: {e}")))?;
        match value {
            // A bare JSON array of objects: each element is a document.
            Value::Array(items) => docs.extend(items),
            other => docs.push(other),
        }
    }
    Ok(docs)
}

/// A document's byte range and its first line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    bytes: Range<usize>,
    line: usize,
}

/// Cuts YAML text at its `---` marker lines (each chunk starts at its marker, so content on
/// the marker line, `--- {a: 1}`, stays with its document). One chunk when the text has
/// directives.
fn yaml_documents(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 1, 0);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.starts_with('%') {
            return vec![Chunk {
                bytes: 0..text.len(),
                line: 1,
            }];
        }
        let rest = line.strip_prefix("---");
        let marker = rest.is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t', '\r', '\n']));
        if marker && offset > start {
            chunks.push(Chunk {
                bytes: start..offset,
                line: start_line,
            });
            (start, start_line) = (offset, i + 1);
        }
        offset += line.len();
    }
    if offset > start || chunks.is_empty() {
        chunks.push(Chunk {
            bytes: start..offset,
            line: start_line,
        });
    }
    chunks
}

/// Splits `chunks` into at most `groups` contiguous runs of about equal bytes.
fn balanced_groups(chunks: &[Chunk], groups: usize) -> Vec<Range<usize>> {
    let total: usize = chunks.iter().map(|c| c.bytes.len()).sum();
    let per = total.div_ceil(groups.max(1)).max(1);
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, c) in chunks.iter().enumerate() {
        bytes += c.bytes.len();
        if bytes >= per && out.len() + 1 < groups {
            out.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < chunks.len() {
        out.push(start..chunks.len());
    }
    out
}

fn parse_yaml_chunks(
    text: &str,
    chunks: &[Chunk],
    yaml_options: fn() -> serde_saphyr::Options,
) -> Result<Vec<Value>, ParseError> {
    let mut docs = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let part = &text[chunk.bytes.clone()];
        if let Some(value) = super::block_yaml::read(part) {
            docs.push(value);
            continue;
        }
        let values: Vec<Value> = serde_saphyr::from_multiple_with_options(part, yaml_options())
            .map_err(|e| {
                ParseError(format!(
                    "not valid YAML (document starting at line {}): {e}",
                    chunk.line
                ))
            })?;
        docs.extend(values.into_iter().filter(|v| !v.is_null()));
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> serde_saphyr::Options {
        serde_saphyr::Options::default()
    }

    fn kinds(docs: &[Value]) -> Vec<&str> {
        docs.iter()
            .map(|d| d["kind"].as_str().unwrap_or("?"))
            .collect()
    }

    #[test]
    fn yaml_is_cut_only_at_marker_lines() {
        let text = "kind: A\n---\nkind: B\ntext: |\n  --- not a marker (indented)\n---  \nkind: C\n--- {kind: D}\n---\n";
        let chunks = yaml_documents(text);
        let lines: Vec<usize> = chunks.iter().map(|c| c.line).collect();
        assert_eq!(lines, [1, 2, 6, 8, 9]);
        let docs = parse(text, options).expect("parses");
        assert_eq!(kinds(&docs), ["A", "B", "C", "D"]);
        assert_eq!(docs[1]["text"], "--- not a marker (indented)\n");
    }

    #[test]
    fn documents_keep_their_order_across_threads() {
        // Past 3 x BYTES_PER_THREAD, so every core of the machine gets a part.
        let pad = "x".repeat(100);
        let text: String = (0..2500)
            .map(|i| format!("---\nkind: K{i}\nnote: {pad}\n"))
            .collect();
        assert!(text.len() > 3 * BYTES_PER_THREAD);
        let docs = parse(&text, options).expect("parses");
        let want: Vec<String> = (0..2500).map(|i| format!("K{i}")).collect();
        assert_eq!(kinds(&docs), want);
        let groups = balanced_groups(&yaml_documents(&text), 3);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups.last().map(|g| g.end), Some(2500));
    }

    #[test]
    fn a_yaml_error_names_the_line_in_the_whole_file() {
        let text = "kind: A\n---\nkind: B\n---\nkind: [C\n";
        let err = parse(text, options).expect_err("bad YAML");
        assert!(err.0.contains("document starting at line 4"), "{}", err.0);
    }

    #[test]
    fn json_lists_arrays_and_streams_are_documents() {
        let docs = parse(
            "  {\"kind\": \"List\", \"items\": []}\n{\"kind\": \"B\"}\n",
            options,
        )
        .expect("parses");
        assert_eq!(kinds(&docs), ["List", "B"]);
        let docs = parse("[{\"kind\": \"A\"}, {\"kind\": \"B\"}]", options).expect("parses");
        assert_eq!(kinds(&docs), ["A", "B"]);
        let err = parse("{\"kind\": ", options).expect_err("bad JSON");
        assert!(err.0.starts_with("not valid JSON: "), "{}", err.0);
        // JSON documents between `---` lines are YAML.
        let docs = parse("{\"kind\": \"A\"}\n---\n{\"kind\": \"B\"}\n", options).expect("parses");
        assert_eq!(kinds(&docs), ["A", "B"]);
    }

    #[test]
    fn directives_keep_the_file_whole() {
        let text = "%YAML 1.2\n---\nkind: A\n---\nkind: B\n";
        assert_eq!(yaml_documents(text).len(), 1);
        assert_eq!(kinds(&parse(text, options).expect("parses")), ["A", "B"]);
    }
}
