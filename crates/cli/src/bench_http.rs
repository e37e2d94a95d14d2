//! A lean HTTP/1.1 client for `offpay bench server` over plain `http://`: one kept-alive
//! connection per client thread, a request written in one call, and only the status line and
//! the headers needed to find the end of the answer read. The load generator shares the
//! machine's cores with the server and PostgreSQL (as pgbench does with pgledger), so the fewer
//! cycles it spends per request the more the figures say about the server; the blocking
//! `reqwest` client hands every request to a runtime thread and back (two thread wake-ups per
//! request). HTTPS servers are driven with `reqwest` as before.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Longest header section accepted in an answer.
const HEADERS_MAX: usize = 16 * 1024;

/// One client's connection to one server.
pub struct PlainClient {
    /// `host:port`.
    authority: String,
    timeout: Duration,
    connection: Option<BufReader<TcpStream>>,
}

impl PlainClient {
    /// A client for `base` (`http://host:port`, no path); `None` for any other form.
    pub fn for_base(base: &str, timeout: Duration) -> Option<PlainClient> {
        let authority = base.strip_prefix("http://")?;
        if authority.is_empty() || authority.contains('/') {
            return None;
        }
        Some(PlainClient {
            authority: authority.to_owned(),
            timeout,
            connection: None,
        })
    }

    /// POSTs `body` (JSON) to `path` with the bearer `token`; the answer's status code. A
    /// connection that fails is dropped and the next request opens a new one.
    pub fn post_json(&mut self, path: &str, token: &str, body: &[u8]) -> Result<u16, String> {
        let result = self.exchange(path, token, body);
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    fn exchange(&mut self, path: &str, token: &str, body: &[u8]) -> Result<u16, String> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.authority,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let stream = TcpStream::connect(&self.authority).map_err(|e| e.to_string())?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                stream
                    .set_read_timeout(Some(self.timeout))
                    .map_err(|e| e.to_string())?;
                stream
                    .set_write_timeout(Some(self.timeout))
                    .map_err(|e| e.to_string())?;
                self.connection.insert(BufReader::new(stream))
            }
        };
        connection
            .get_mut()
            .write_all(&request)
            .map_err(|e| e.to_string())?;
        read_answer(connection)
    }
}

/// Reads one answer (status line, headers, body by `Content-Length` or chunks); its status.
fn read_answer(connection: &mut BufReader<TcpStream>) -> Result<u16, String> {
    let mut line = String::new();
    read_line(connection, &mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {:?}", line.trim_end()))?;
    let (mut length, mut chunked, mut close, mut seen) = (None, false, false, 0usize);
    loop {
        read_line(connection, &mut line)?;
        seen += line.len();
        if seen > HEADERS_MAX {
            return Err("the answer's headers are too long".to_owned());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<u64>().map_err(|e| e.to_string())?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    if chunked {
        loop {
            read_line(connection, &mut line)?;
            let size = u64::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|e| format!("bad chunk size: {e}"))?;
            skip(connection, size)?;
            read_line(connection, &mut line)?; // the CRLF after the chunk (or the end of the trailers)
            if size == 0 {
                break;
            }
        }
    } else {
        skip(connection, length.unwrap_or(0))?;
    }
    if close {
        return Err(format!(
            "the server closed the connection after answering {status}"
        ));
    }
    Ok(status)
}

/// Reads one line (with its CRLF) into `line`.
fn read_line(connection: &mut BufReader<TcpStream>, line: &mut String) -> Result<(), String> {
    line.clear();
    let count = connection.read_line(line).map_err(|e| e.to_string())?;
    if count == 0 {
        return Err("the server closed the connection".to_owned());
    }
    Ok(())
}

fn skip(connection: &mut BufReader<TcpStream>, count: u64) -> Result<(), String> {
    let copied = std::io::copy(&mut connection.by_ref().take(count), &mut std::io::sink())
        .map_err(|e| e.to_string())?;
    if copied == count {
        Ok(())
    } else {
        Err("the server closed the connection inside an answer".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Answers each request on one connection with the canned `answers` in turn.
    fn serve(answers: Vec<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            for answer in answers {
                let mut length = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                reader.get_mut().write_all(answer.as_bytes()).unwrap();
            }
        });
        format!("http://{address}")
    }

    #[test]
    fn reads_answers_by_length_and_by_chunks_on_one_connection() {
        let base = serve(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\n\r\n",
        ]);
        let mut client = PlainClient::for_base(&base, Duration::from_secs(5)).unwrap();
        assert_eq!(client.post_json("/x", "t", b"{}"), Ok(200));
        assert_eq!(client.post_json("/x", "t", b"{\"a\":1}"), Ok(201));
        assert_eq!(client.post_json("/x", "t", b"[]"), Ok(409));
    }

    #[test]
    fn takes_only_plain_http_bases() {
        assert!(PlainClient::for_base("https://h:1", Duration::from_secs(1)).is_none());
        assert!(PlainClient::for_base("http://h:1/api", Duration::from_secs(1)).is_none());
        assert!(PlainClient::for_base("http://127.0.0.1:8080", Duration::from_secs(1)).is_some());
    }
}
