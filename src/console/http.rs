//! The console's HTTP edge: query strings and url-encoded forms decoded,
//! the same-origin and Host checks, bounded request bodies, and replies
//! with the headers every page carries (a Content-Security-Policy that
//! allows no inline script, so text from brokers can never run even if an
//! escape were missed). Knows no Kafka and renders no page.

use std::collections::BTreeMap;
use std::io::Read;

/// The largest request body read (a produce form's value included); a
/// larger one is answered 413 without reading on.
pub const BODY_BYTES_MAX: usize = 2 * 1024 * 1024;

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    form-action 'self'; base-uri 'none'";

/// Decoded `name=value` pairs; a name given twice keeps its last value.
#[derive(Debug, Default, Clone)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn parse(text: &str) -> Params {
        let pairs = text
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) => (percent_decode(name), percent_decode(value)),
                None => (percent_decode(pair), String::new()),
            })
            .collect();
        Params(pairs)
    }

    /// The value of `name`, trimmed; `None` when missing or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// The value of `name` untrimmed (a record's value keeps its spaces).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| format!("'{name}' must be a number, not '{text}'")),
        }
    }
}

/// `%XX` and `+` (a space in forms) decoded; invalid UTF-8 is replaced.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => match (hex(index + 1), hex(index + 2)) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    index += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// For links built outside templates (redirects): every byte but
/// unreserved ones as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A change must come from a page of this console: the Origin header (or,
/// without one, the Referer) must name the host the request was sent to.
/// Neither header: refused, since browsers send one on form posts.
pub fn same_origin(host: Option<&str>, origin: Option<&str>, referer: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let Some(source) = origin.filter(|origin| *origin != "null").or(referer) else {
        return false;
    };
    let Some(rest) = source
        .strip_prefix("http://")
        .or_else(|| source.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.eq_ignore_ascii_case(host)
}

/// The Host names a console on a loopback address answers to; a page
/// of another name that resolves to 127.0.0.1 (DNS rebinding) is refused.
/// `None`: any name (the console listens on another interface).
pub fn allowed_hosts(listen: &std::net::SocketAddr) -> Option<Vec<String>> {
    if !listen.ip().is_loopback() {
        return None;
    }
    let port = listen.port();
    Some(vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ])
}

/// Reads at most [`BODY_BYTES_MAX`] bytes; `None` when the body is larger.
pub fn read_body(reader: &mut dyn Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    reader
        .take(BODY_BYTES_MAX as u64 + 1)
        .read_to_end(&mut body)?;
    Ok((body.len() <= BODY_BYTES_MAX).then_some(body))
}

/// What a handler answers.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn html(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }

    pub fn json(body: String) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body: body.into_bytes(),
            headers: vec![("Cache-Control", "no-store".into())],
        }
    }

    pub fn asset(content_type: &'static str, body: &'static str) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.as_bytes().to_vec(),
            headers: vec![("Cache-Control", "max-age=300".into())],
        }
    }

    /// 303 to `location` (a path of this console), after a change.
    pub fn see_other(location: String) -> Reply {
        Reply {
            status: 303,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
            headers: vec![("Location", location)],
        }
    }

    /// Bytes to save, never shown inline.
    pub fn download(file_name: &str, body: Vec<u8>) -> Reply {
        let safe: String = file_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Reply {
            status: 200,
            content_type: "application/octet-stream",
            body,
            headers: vec![(
                "Content-Disposition",
                format!("attachment; filename=\"{safe}\""),
            )],
        }
    }

    /// Headers every reply carries.
    pub fn all_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("Content-Type", self.content_type.to_string()),
            ("Content-Security-Policy", CONTENT_SECURITY_POLICY.into()),
            ("X-Content-Type-Options", "nosniff".into()),
            ("Referrer-Policy", "same-origin".into()),
            ("X-Frame-Options", "DENY".into()),
        ];
        headers.extend(self.headers.iter().cloned());
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let params = Params::parse("name=a+b%2Fc&empty=&n=12&bad=%zz&flag");
        assert_eq!(params.get("name"), Some("a b/c"));
        assert_eq!(params.get("empty"), None);
        assert_eq!(params.number::<i32>("n"), Ok(Some(12)));
        assert!(params.number::<i32>("name").is_err());
        assert_eq!(params.get("bad"), Some("%zz"));
        assert_eq!(params.raw("flag"), Some(""));
        assert_eq!(percent_decode("%E2%9C%93"), "\u{2713}");
        assert_eq!(percent_decode(&percent_encode("a b/<é>")), "a b/<é>");
    }

    #[test]
    fn changes_need_a_page_of_this_console() {
        let host = Some("127.0.0.1:8080");
        assert!(same_origin(host, Some("http://127.0.0.1:8080"), None));
        assert!(same_origin(
            host,
            None,
            Some("http://127.0.0.1:8080/topics?q=x")
        ));
        assert!(!same_origin(host, Some("http://evil.example"), None));
        assert!(!same_origin(host, Some("http://127.0.0.1:8080.evil"), None));
        assert!(!same_origin(host, Some("null"), None));
        assert!(!same_origin(host, None, None));
        assert!(!same_origin(None, Some("http://127.0.0.1:8080"), None));
        // Origin decides when both are present.
        assert!(!same_origin(
            host,
            Some("http://evil.example"),
            Some("http://127.0.0.1:8080/")
        ));
    }

    #[test]
    fn bodies_are_bounded() {
        let small = vec![b'a'; 10];
        assert_eq!(read_body(&mut &small[..]).unwrap(), Some(small.clone()));
        let large = vec![b'a'; BODY_BYTES_MAX + 1];
        assert_eq!(read_body(&mut &large[..]).unwrap(), None);
    }
}
