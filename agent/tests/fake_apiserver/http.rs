//! A minimal HTTP/1.1 server: one GET per connection (`Connection: close`), lists as
//! `Content-Length` bodies and watches as chunked streams of JSON lines.

use super::resources::{fields_match, labels_match, Res};
use super::FakeApi;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub async fn serve(listener: TcpListener, api: FakeApi) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        if api.lock().down {
            drop(stream);
            continue;
        }
        tokio::spawn(handle(stream, api.clone()));
    }
}

async fn handle(mut stream: TcpStream, api: FakeApi) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    api.lock().requests.push(target.clone());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let Some(res) = Res::from_path(path) else {
        let _ = respond(
            &mut stream,
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        )
        .await;
        return;
    };
    if res == Res::ServiceCidrs && api.lock().service_cidrs_not_served {
        let _ = respond(
            &mut stream,
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        )
        .await;
        return;
    }
    if api.lock().forbidden.contains(&res) {
        let message = format!("{} is forbidden: cannot list resource", res.kind());
        let _ = respond(&mut stream, 403, &status(403, "Forbidden", &message)).await;
        return;
    }
    if params.get("watch").is_some_and(|w| w == "1" || w == "true") {
        watch(stream, api, res, &params).await;
    } else {
        list(&mut stream, &api, res, &params).await;
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn respond(stream: &mut TcpStream, code: u16, body: &Value) -> std::io::Result<()> {
    let text = body.to_string();
    let reason = match code {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await
}

fn selected(object: &Value, params: &BTreeMap<String, String>) -> bool {
    params
        .get("labelSelector")
        .is_none_or(|s| labels_match(object, s))
        && params
            .get("fieldSelector")
            .is_none_or(|s| fields_match(object, s))
}

async fn list(stream: &mut TcpStream, api: &FakeApi, res: Res, params: &BTreeMap<String, String>) {
    while api.lock().stall_lists.contains(&res) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let (code, body) = page(&mut api.lock(), res, params, limit);
    let _ = respond(stream, code, &body).await;
    api.lock().last_list_served = Some(std::time::SystemTime::now());
}

/// One page of a list: the status code and body.
fn page(
    inner: &mut super::Inner,
    res: Res,
    params: &BTreeMap<String, String>,
    limit: usize,
) -> (u16, Value) {
    // A continue token is `PAGE-OFFSET`: the snapshot taken at the first page, and where the
    // next page starts in it.
    let (page, offset) = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let parsed = token
                .split_once('-')
                .and_then(|(p, o)| Some((p.parse::<usize>().ok()?, o.parse::<usize>().ok()?)));
            match parsed {
                Some((p, o))
                    if inner
                        .pages
                        .get(p)
                        .is_some_and(|(rv, _)| *rv >= inner.compacted) =>
                {
                    (p, o)
                }
                _ => {
                    return (410, status(410, "Expired",
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."));
                }
            }
        }
        None => {
            let items: Vec<Value> = inner
                .objects
                .iter()
                .filter(|((r, _), o)| *r == res && selected(o, params))
                .map(|(_, o)| {
                    // Items of a typed list carry no kind/apiVersion on the wire.
                    let mut o = o.clone();
                    if let Some(map) = o.as_object_mut() {
                        map.remove("kind");
                        map.remove("apiVersion");
                    }
                    o
                })
                .collect();
            let rv = inner.rv;
            inner.pages.push((rv, items));
            (inner.pages.len() - 1, 0)
        }
    };
    let (rv, items) = &inner.pages[page];
    let end = offset.saturating_add(limit).min(items.len());
    let body_items: Vec<Value> = items.get(offset..end).unwrap_or_default().to_vec();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if end < items.len() {
        metadata["continue"] = json!(format!("{page}-{end}"));
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    let body = json!({"kind": format!("{}List", res.kind()), "apiVersion": res.api_version(),
                      "metadata": metadata, "items": body_items});
    (200, body)
}

async fn write_chunk(stream: &mut TcpStream, event: &Value) -> std::io::Result<()> {
    let line = format!("{event}\n");
    stream
        .write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
        .await
}

async fn watch(mut stream: TcpStream, api: FakeApi, res: Res, params: &BTreeMap<String, String>) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut from: u64 = params
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wake = api.wake.subscribe();
    let epoch = api.lock().stream_epoch;
    let compacted = api.lock().compacted;
    if from < compacted {
        let gone = status(
            410,
            "Expired",
            &format!("too old resource version: {from} ({compacted})"),
        );
        let _ = write_chunk(&mut stream, &json!({"type": "ERROR", "object": gone})).await;
        let _ = stream.write_all(b"0\r\n\r\n").await;
        return;
    }
    let mut next_bookmark = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let (events, current_rv, ended, stalled) = {
            let inner = api.lock();
            let ended = inner.stream_epoch != epoch || inner.down;
            let events: Vec<Value> = if inner.stall_watches {
                Vec::new()
            } else {
                inner
                    .history
                    .iter()
                    .filter(|e| e.res == res && e.rv > from && selected(&e.object, params))
                    .map(|e| json!({"type": e.kind, "object": e.object}))
                    .collect()
            };
            (events, inner.rv, ended, inner.stall_watches)
        };
        if ended {
            // An abrupt end, as when a connection breaks: no terminating chunk.
            return;
        }
        for e in &events {
            if write_chunk(&mut stream, e).await.is_err() {
                return;
            }
        }
        if let Some(last) = events.last() {
            from = last["object"]["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|rv| rv.parse().ok())
                .unwrap_or(from);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let _ = stream.write_all(b"0\r\n\r\n").await;
            return;
        }
        if bookmarks && !stalled && now >= next_bookmark {
            next_bookmark = now + Duration::from_secs(1);
            from = from.max(current_rv);
            let mark = json!({"type": "BOOKMARK", "object": {"kind": res.kind(), "apiVersion": res.api_version(),
                              "metadata": {"resourceVersion": from.to_string()}}});
            if write_chunk(&mut stream, &mark).await.is_err() {
                return;
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), wake.changed()).await;
    }
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}
