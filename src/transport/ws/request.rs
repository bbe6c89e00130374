//! [`WsRequest`]: the upgrade request, kept compactly for the application.

use std::fmt;

use tungstenite::handshake::server::Request;

/// The WebSocket upgrade request: path, query parameters and headers.
///
/// Handed to `Builder::ws_on_upgrade` and then kept as connection data:
/// read it from any handler with `ctx.data().get::<WsRequest>()` (or
/// `Session::ws_request`). Stored compactly (one string plus offsets);
/// remove it with `data_mut().remove::<WsRequest>()` if the memory matters.
#[derive(Clone)]
pub struct WsRequest {
    text: Box<str>,
    path: Span,
    query: Option<Span>,
    params: Box<[(Span, Span)]>,
    headers: Box<[(Span, Span)]>,
}

#[derive(Clone, Copy)]
struct Span(u32, u32);

impl WsRequest {
    pub(super) fn from_http(request: &Request) -> WsRequest {
        let mut text = String::new();
        let mut push = |s: &str| {
            let start = text.len() as u32;
            text.push_str(s);
            Span(start, text.len() as u32)
        };
        let uri = request.uri();
        let path = push(uri.path());
        let query = uri.query().map(&mut push);
        let params = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (push(&form_decode(k)), push(&form_decode(v)))
            })
            .collect();
        // The handshake's own headers are spent once the 101 is written;
        // not keeping them saves ~150 bytes per connection.
        let spent = [
            "upgrade",
            "connection",
            "sec-websocket-key",
            "sec-websocket-version",
        ];
        let headers = request
            .headers()
            .iter()
            .filter(|(k, _)| !spent.contains(&k.as_str()))
            .map(|(k, v)| {
                (
                    push(k.as_str()),
                    push(&String::from_utf8_lossy(v.as_bytes())),
                )
            })
            .collect();
        WsRequest {
            text: text.into_boxed_str(),
            path,
            query,
            params,
            headers,
        }
    }

    fn get(&self, span: Span) -> &str {
        self.text
            .get(span.0 as usize..span.1 as usize)
            .unwrap_or("")
    }

    /// The request path as sent (percent-encoded), without the query, e.g.
    /// `/chat`.
    pub fn path(&self) -> &str {
        self.get(self.path)
    }

    /// The raw query string (after `?`), if any.
    pub fn query_string(&self) -> Option<&str> {
        self.query.map(|s| self.get(s))
    }

    /// The first value of query parameter `name` (decoded: `%XX` and `+`).
    ///
    /// ```
    /// let builder = netloom::Server::builder().ws_on_upgrade(|_session, req| {
    ///     let room = req.query("room").unwrap_or("lobby");
    ///     if room.len() > 32 { Err(400) } else { Ok(()) }
    /// });
    /// # drop(builder);
    /// ```
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_pairs().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Every query parameter in order, decoded (a key without `=` has an
    /// empty value).
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.params
            .iter()
            .map(|(k, v)| (self.get(*k), self.get(*v)))
    }

    /// The first value of header `name` (case-insensitive); see
    /// [`headers`](Self::headers) for the ones not kept.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header in order; names in lowercase. The handshake's own
    /// headers (`Upgrade`, `Connection`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version`) are not kept.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers
            .iter()
            .map(|(k, v)| (self.get(*k), self.get(*v)))
    }
}

impl fmt::Debug for WsRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsRequest")
            .field("path", &self.path())
            .field("query", &self.query_string())
            .field("headers", &self.headers.len())
            .finish()
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte; malformed escapes stay as they are, invalid UTF-8 becomes U+FFFD.
pub(super) fn form_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (b, escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
