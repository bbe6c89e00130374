//! The client's side of the upgrade (`Dial::ws`): the request of each
//! connect attempt (a fresh key every time), the check of the server's
//! answer (RFC 6455 §4.1), and what the application reads of it
//! ([`WsResponse`]). tungstenite writes the request and parses the
//! response; nothing here touches a socket.

use std::fmt;

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::{generate_request, Response};
use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::machine::TryParse;
use tungstenite::http::header::{HeaderName, HeaderValue};
use tungstenite::http::{StatusCode, Uri};
use tungstenite::protocol::WebSocketConfig;

use super::{WsMode, MAX_REQUEST_HEAD, READ_BUFFER};
use crate::config::Config;
use crate::error::{CloseReason, Error, Result};

/// What a WebSocket dial asks for: the URL's path and query, extra
/// headers, subprotocols, how messages map, and the limits.
#[derive(Debug, Clone)]
pub(crate) struct WsDial {
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    protocols: Vec<String>,
    pub(crate) mode: WsMode,
    pub(crate) max_message: Option<usize>,
    pub(crate) max_frame: Option<usize>,
    /// tungstenite's configuration, settled by `settle`.
    pub(crate) config: WebSocketConfig,
}

/// Where a `ws://` or `wss://` URL points.
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) secure: bool,
}

impl WsDial {
    /// Parse `url` (`ws://host[:port][/path][?query]`, or `wss://`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that is not one.
    pub(crate) fn parse(url: &str) -> Result<(WsDial, Target)> {
        let bad = |why: &str| Error::Config(format!("WebSocket URL {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(bad("the scheme is not ws:// or wss://")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        // An IPv6 literal comes bracketed.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // The port as written (`Uri::port` hides one that is not a u16).
        let authority = uri.authority().map_or("", |a| a.as_str());
        let host_port = authority.rsplit('@').next().unwrap_or(authority);
        let written = match host_port.rfind(']') {
            Some(end) => host_port[end + 1..].strip_prefix(':'),
            None => host_port.rsplit_once(':').map(|(_, p)| p),
        };
        let port = match written {
            None => {
                if secure {
                    443
                } else {
                    80
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port is not one of 1 to 65535"))?,
        };
        let dial = WsDial {
            uri,
            headers: Vec::new(),
            protocols: Vec::new(),
            mode: WsMode::Messages,
            max_message: None,
            max_frame: None,
            config: WebSocketConfig::default(),
        };
        // The request must build (a URL tungstenite refuses fails here, not
        // on every connect).
        dial.request().map_err(|e| bad(&e.to_string()))?;
        Ok((dial, Target { host, port, secure }))
    }

    /// Send header `name: value` with the upgrade request.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a name or value HTTP does not allow.
    pub(crate) fn header(&mut self, name: &str, value: &str) -> Result<()> {
        let bad = |e: &dyn fmt::Display| Error::Config(format!("WebSocket header {name:?}: {e}"));
        let own = [
            "host",
            "connection",
            "upgrade",
            "sec-websocket-version",
            "sec-websocket-key",
        ];
        if own.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return Err(bad(&"the handshake sets it itself"));
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?;
        let value = HeaderValue::from_str(value).map_err(|e| bad(&e))?;
        self.headers.push((name, value));
        Ok(())
    }

    /// Its messages carry sequence numbers (packer mode).
    pub(crate) fn carries_seq(&self) -> bool {
        self.mode == WsMode::Packer
    }

    /// Offer these subprotocols (`Sec-WebSocket-Protocol`), in order of
    /// preference.
    pub(crate) fn protocols(&mut self, protocols: Vec<String>) {
        self.protocols = protocols;
    }

    /// Resolve the default limits from the server's configuration and
    /// check them.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero limit.
    pub(crate) fn settle(&mut self, config: &Config) -> Result<()> {
        let default = match self.mode {
            WsMode::Messages => config.max_body_length,
            WsMode::Packer => config
                .max_body_length
                .saturating_add(super::PACKER_HEADROOM),
        };
        let max_message = self.max_message.unwrap_or(default);
        let max_frame = self.max_frame.unwrap_or(max_message);
        if max_message == 0 || max_frame == 0 {
            return Err(Error::Config(
                "a WebSocket dial's message and frame limits must be at least 1 byte".into(),
            ));
        }
        // Every header and subprotocol must make a request.
        self.request()
            .map_err(|e| Error::Config(format!("WebSocket dial: {e}")))?;
        self.config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_frame));
        Ok(())
    }

    /// The upgrade request of one connect attempt, with a fresh key, and
    /// the `Sec-WebSocket-Accept` its answer must carry.
    pub(crate) fn request(&self) -> std::result::Result<(Vec<u8>, String), tungstenite::Error> {
        let mut request = self.uri.clone().into_client_request()?;
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        if !self.protocols.is_empty() {
            let offered = HeaderValue::from_str(&self.protocols.join(", "))
                .map_err(|e| tungstenite::Error::HttpFormat(e.into()))?;
            headers.insert("sec-websocket-protocol", offered);
        }
        let (bytes, key) = generate_request(request)?;
        Ok((bytes, derive_accept_key(key.as_bytes())))
    }

    /// Parse the answer received so far: `Ok(None)` while incomplete, else
    /// the checked answer and the bytes of its head (what follows is
    /// frames).
    pub(crate) fn answer(
        &self,
        head: &[u8],
        accept: &str,
    ) -> std::result::Result<Option<(WsResponse, usize)>, CloseReason> {
        let bad = |why: String| CloseReason::BadUpgrade(why);
        let (size, response) = match <Response as TryParse>::try_parse(head) {
            Ok(Some((size, _))) if size > MAX_REQUEST_HEAD => {
                return Err(bad("upgrade response too long".into()))
            }
            Ok(Some(parsed)) => parsed,
            Ok(None) if head.len() > MAX_REQUEST_HEAD => {
                return Err(bad("upgrade response too long".into()))
            }
            Ok(None) => return Ok(None),
            Err(e) => return Err(bad(format!("bad HTTP response: {e}"))),
        };
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(CloseReason::UpgradeRejected(response.status().as_u16()));
        }
        let headers = response.headers();
        let has = |name: &str, token: &str| {
            headers.get_all(name).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
        };
        if !has("upgrade", "websocket") {
            return Err(bad("the answer has no Upgrade: websocket".into()));
        }
        if !has("connection", "upgrade") {
            return Err(bad("the answer has no Connection: Upgrade".into()));
        }
        if headers
            .get("sec-websocket-accept")
            .map(HeaderValue::as_bytes)
            != Some(accept.as_bytes())
        {
            return Err(bad("Sec-WebSocket-Accept does not match the key".into()));
        }
        if headers.contains_key("sec-websocket-extensions") {
            // None is offered, so none may be chosen (RFC 6455 §4.1).
            return Err(bad("the server chose an extension nobody offered".into()));
        }
        let chosen = match headers
            .get("sec-websocket-protocol")
            .map(HeaderValue::to_str)
        {
            None => None,
            Some(Ok(p)) if self.protocols.iter().any(|o| o == p) => Some(p.to_owned()),
            Some(_) => return Err(bad("the server chose a subprotocol nobody offered".into())),
        };
        let headers = headers
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), v)
            })
            .collect();
        Ok(Some((
            WsResponse {
                status: response.status().as_u16(),
                protocol: chosen,
                headers,
            },
            size,
        )))
    }
}

/// The server's answer to a WebSocket dial's upgrade (`Dial::ws`): kept as
/// the connection's data once it opens, for `on_open` and every handler
/// (`session.data().get::<WsResponse>()`); each reconnect replaces it.
#[derive(Debug, Clone)]
pub struct WsResponse {
    status: u16,
    protocol: Option<String>,
    headers: Vec<(String, String)>,
}

impl WsResponse {
    /// The HTTP status (101).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The subprotocol the server chose among those offered, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header in order; names in lowercase.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
