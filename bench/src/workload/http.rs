//! Just enough HTTP/1.x for the workload: classify a request head (server side) and parse a
//! response (client side). Pure functions over byte slices, so every malformed input is a value,
//! never a panic.

/// What the server does with a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A well-formed GET (`head_only == false`) or HEAD (`true`). `keep_alive`: the client
    /// wants the connection kept open (HTTP/1.1 without `Connection: close`, or an explicit
    /// `Connection: keep-alive` on HTTP/1.1) and the request has no body to skip.
    Answer { head_only: bool, keep_alive: bool },
    /// Well-formed, but a method other than GET or HEAD.
    MethodNotAllowed,
    /// Not an HTTP/1.x request head.
    BadRequest,
}

/// Length of the request or response head including its blank line, if it is complete.
///
/// Bare `\n` line ends are tolerated, as RFC 9112 section 2.2 allows a recipient to do.
pub(crate) fn head_len(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Splits a head into lines without their line ends (the blank line excluded).
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> + Clone {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

/// RFC 9110 `tchar`: what methods and header names are made of.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// Header lines: `name: value` with a token name and no control characters except tab.
fn headers_ok<'a>(mut rest: impl Iterator<Item = &'a [u8]>) -> bool {
    rest.all(|line| {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        is_token(&line[..colon])
            && line[colon + 1..]
                .iter()
                .all(|&c| c == b'\t' || (c >= 0x20 && c != 0x7f))
    })
}

/// Classifies a complete request head (as delimited by [`head_len`]).
pub(crate) fn classify_request(head: &[u8]) -> Verdict {
    let mut it = lines(head);
    let Some(request_line) = it.next() else {
        return Verdict::BadRequest;
    };
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Verdict::BadRequest;
    };
    let target_ok = !target.is_empty() && target.iter().all(|&c| c > 0x20 && c != 0x7f);
    let version_ok = version == b"HTTP/1.1" || version == b"HTTP/1.0";
    if !is_token(method) || !target_ok || !version_ok || !headers_ok(it.clone()) {
        return Verdict::BadRequest;
    }
    // HTTP/1.0 always closes (its keep-alive extension is not spoken); HTTP/1.1 stays open
    // unless the client says `close`. A request with a body closes too: its framing is not
    // followed, so the next request could not be found after it.
    let mut keep_alive = version == b"HTTP/1.1";
    for line in it {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"connection") {
            if value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
            {
                keep_alive = false;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || (name.eq_ignore_ascii_case(b"content-length") && value != b"0")
        {
            keep_alive = false;
        }
    }
    match method {
        b"GET" => Verdict::Answer {
            head_only: false,
            keep_alive,
        },
        b"HEAD" => Verdict::Answer {
            head_only: true,
            keep_alive,
        },
        _ => Verdict::MethodNotAllowed,
    }
}

/// A complete response in one buffer, so it leaves in one write (one segment on loopback).
/// `keep_alive` announces `Connection: keep-alive` instead of `Connection: close`.
pub(crate) fn response(
    status: u16,
    reason: &str,
    body: &[u8],
    head_only: bool,
    keep_alive: bool,
) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: {connection}\r\n",
        body.len()
    )
    .into_bytes();
    if status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The client's view of the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ResponseParse<'a> {
    /// More bytes are needed.
    Incomplete,
    /// The whole response is there.
    Complete {
        status: u16,
        body: &'a [u8],
        /// The server announced `Connection: close`.
        close: bool,
    },
    /// Unusable; the label is a failure kind (no spaces).
    Invalid(&'static str),
}

/// Parses a response; `eof` says the server has closed its side, so nothing more will come.
pub(crate) fn parse_response(buf: &[u8], eof: bool) -> ResponseParse<'_> {
    let Some(head_end) = head_len(buf) else {
        return if eof {
            ResponseParse::Invalid("closed_early")
        } else {
            ResponseParse::Incomplete
        };
    };
    let mut it = lines(&buf[..head_end]);
    let status = it.next().and_then(|line| {
        let rest = line
            .strip_prefix(b"HTTP/1.1 ")
            .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
        let code = rest.get(..3)?;
        if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), None | Some(b' ')) {
            return None;
        }
        std::str::from_utf8(code).ok()?.parse::<u16>().ok()
    });
    let Some(status) = status else {
        return ResponseParse::Invalid("bad_response");
    };
    let mut content_length: Option<usize> = None;
    let mut close = false;
    for line in it {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return ResponseParse::Invalid("bad_response");
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            else {
                return ResponseParse::Invalid("bad_response");
            };
            if content_length.is_some_and(|old| old != n) {
                return ResponseParse::Invalid("bad_response");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return ResponseParse::Invalid("unsupported_encoding");
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let rest = &buf[head_end..];
    match content_length {
        Some(n) if rest.len() >= n => ResponseParse::Complete {
            status,
            body: &rest[..n],
            close,
        },
        Some(_) if eof => ResponseParse::Invalid("closed_early"),
        None if eof => ResponseParse::Complete {
            status,
            body: rest,
            close: true,
        },
        _ => ResponseParse::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_len_finds_crlf_and_bare_lf_ends() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nxyz"), Some(27));
        assert_eq!(head_len(b"GET / HTTP/1.1\nHost: a\n\n"), Some(24));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_len(b""), None);
    }

    #[test]
    fn classify_accepts_get_and_head() {
        let get = b"GET / HTTP/1.1\r\nHost: 10.0.0.1:3000\r\nConnection: keep-alive\r\n\r\n";
        let answer = |head_only, keep_alive| Verdict::Answer {
            head_only,
            keep_alive,
        };
        assert_eq!(classify_request(get), answer(false, true));
        assert_eq!(
            classify_request(b"HEAD /x?y=1 HTTP/1.0\r\n\r\n"),
            answer(true, false)
        );
        assert_eq!(
            classify_request(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Verdict::MethodNotAllowed
        );
    }

    #[test]
    fn keep_alive_follows_version_connection_and_body() {
        let keeps = |head: &[u8]| match classify_request(head) {
            Verdict::Answer { keep_alive, .. } => keep_alive,
            other => panic!("{other:?} for {head:?}"),
        };
        assert!(keeps(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(keeps(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"));
        assert!(keeps(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
        assert!(!keeps(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keeps(
            b"GET / HTTP/1.1\r\nconnection: Keep-Alive, CLOSE\r\n\r\n"
        ));
        assert!(!keeps(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(!keeps(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!keeps(b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"));
        assert!(!keeps(
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn classify_rejects_garbage() {
        for bad in [
            &b"\r\n\r\n"[..],
            b"garbage\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
        ] {
            assert_eq!(classify_request(bad), Verdict::BadRequest, "{bad:?}");
        }
    }

    #[test]
    fn response_is_complete_and_closes() {
        let r = response(200, "OK", b"PRI\n", false, false);
        assert_eq!(
            r,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\
              Connection: close\r\n\r\nPRI\n"
        );
        let head = response(200, "OK", b"PRI\n", true, false);
        assert!(head.ends_with(b"Content-Length: 4\r\nConnection: close\r\n\r\n"));
        let kept = response(200, "OK", b"PRI\n", false, true);
        assert!(kept.ends_with(b"Content-Length: 4\r\nConnection: keep-alive\r\n\r\nPRI\n"));
        assert_eq!(
            parse_response(&kept, false),
            ResponseParse::Complete {
                status: 200,
                body: b"PRI\n",
                close: false
            }
        );
        assert!(
            String::from_utf8(response(405, "Method Not Allowed", b"", false, false))
                .unwrap()
                .contains("Allow: GET, HEAD\r\n")
        );
    }

    #[test]
    fn parse_response_round_trips_our_own() {
        let r = response(200, "OK", b"SEC\n", false, false);
        assert_eq!(
            parse_response(&r, false),
            ResponseParse::Complete {
                status: 200,
                body: b"SEC\n",
                close: true
            }
        );
        // Every strict prefix is incomplete while the connection is open, and cut short at EOF.
        for n in 0..r.len() {
            assert_eq!(
                parse_response(&r[..n], false),
                ResponseParse::Incomplete,
                "{n}"
            );
            assert_eq!(
                parse_response(&r[..n], true),
                ResponseParse::Invalid("closed_early"),
                "{n}"
            );
        }
    }

    #[test]
    fn parse_response_without_length_reads_to_eof() {
        let r = b"HTTP/1.0 200 OK\r\n\r\nPRI\n";
        assert_eq!(parse_response(r, false), ResponseParse::Incomplete);
        assert_eq!(
            parse_response(r, true),
            ResponseParse::Complete {
                status: 200,
                body: b"PRI\n",
                close: true
            }
        );
    }

    #[test]
    fn parse_response_rejects_what_it_cannot_read() {
        assert_eq!(
            parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", true),
            ResponseParse::Invalid("bad_response")
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 2x0 OK\r\n\r\n", true),
            ResponseParse::Invalid("bad_response")
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", true),
            ResponseParse::Invalid("bad_response")
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                true
            ),
            ResponseParse::Invalid("bad_response")
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            ),
            ResponseParse::Invalid("unsupported_encoding")
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", false),
            ResponseParse::Complete {
                status: 503,
                body: b"",
                close: false
            }
        );
    }
}
