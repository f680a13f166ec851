//! A small HTTP/1.1 client for the tests: plain requests (one connection
//! each, `Connection: close`), Server-Sent Events, and cookies carried by hand,
//! so the tests see exactly the bytes a browser or a civic app would.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as bytes, for binary answers.
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `name=value` of every cookie set, attributes dropped.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.split(';').next().unwrap_or("").to_owned())
            .collect()
    }

    /// The full `Set-Cookie` line for cookie `name`.
    pub fn set_cookie_line(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    request_from(None, addr, method, path, headers, body).await
}

/// A request from the loopback address `from` (any of 127.0.0.0/8), as
/// another host would send it.
pub async fn request_from(
    from: Option<std::net::IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    tokio::time::timeout(TIMEOUT, async {
        let mut stream = match from {
            None => TcpStream::connect(addr).await.expect("connect"),
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .expect("bind a loopback address");
                socket.connect(addr).await.expect("connect")
            }
        };
        stream
            .write_all(&request_bytes(addr, method, path, headers, body))
            .await
            .unwrap();
        // Read until the answer is whole: some servers keep the connection
        // open despite `Connection: close`.
        let mut raw = Vec::new();
        // On the heap: every await of a helper holds this future, and a
        // browser test awaits hundreds of them (in debug builds, each its own
        // stack slot).
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if is_complete(&raw) {
                break;
            }
        }
        parse(&raw)
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {path}: no answer in {TIMEOUT:?}"))
}

pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", path, headers, b"").await
}

/// A form POST (`application/x-www-form-urlencoded`).
pub async fn post_form(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request(addr, "POST", path, &all, body.as_bytes()).await
}

/// Whether `raw` holds a whole answer (by Content-Length or the last chunk).
fn is_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// An open Server-Sent Events stream.
pub struct Events {
    reader: BufReader<TcpStream>,
    pub status: u16,
}

impl Events {
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Events {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut all = vec![("accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let bytes = request_bytes(addr, "GET", path, &all, b"");
        stream.write_all(&bytes).await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = 0;
        loop {
            let mut line = String::new();
            tokio::time::timeout(TIMEOUT, reader.read_line(&mut line))
                .await
                .expect("the stream's head in time")
                .unwrap();
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Events { reader, status }
    }

    /// The data of the next event named `name`, if one comes within `wait`.
    pub async fn next(&mut self, name: &str, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut event = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout_at(deadline, self.reader.read_line(&mut line))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            // Chunk-size lines of the chunked body carry no colon; skip them.
            let line = line.trim_end();
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:")
                && event == name
            {
                return Some(d.trim().to_owned());
            }
        }
    }
}

/// Logs in through the login form as a browser does; the session cookie (`name=value`).
pub async fn login(addr: SocketAddr, username: &str) -> String {
    let form = get(addr, "/login", &[]).await;
    assert_eq!(form.status, 200);
    let prefix = "name=\"nonce\" value=\"";
    let start = form.body.find(prefix).expect("a login form") + prefix.len();
    let nonce = form.body[start..].split('"').next().unwrap().to_owned();
    let done = post_form(
        addr,
        "/login",
        &[("cookie", &format!("linli_login={nonce}"))],
        &[
            ("username", username),
            ("password", super::PASSWORD),
            ("nonce", &nonce),
        ],
    )
    .await;
    assert_eq!(done.status, 303, "{username}: {}", done.body);
    let line = done
        .set_cookie_line("linli_session")
        .expect("a session cookie");
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Lax"),
        "{line}"
    );
    done.set_cookies()
        .into_iter()
        .find(|c| c.starts_with("linli_session="))
        .unwrap()
}
