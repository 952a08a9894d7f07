//! A chat webhook stand-in: records the JSON bodies POSTed to it, on loopback; it can answer HTTP 500 to
//! its first requests, as a flapping chat service does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct Webhook {
    pub url: String,
    received: Arc<Mutex<Vec<String>>>,
}

impl Webhook {
    pub fn start() -> Webhook {
        Webhook::failing_first(0)
    }

    /// A webhook that answers HTTP 500 to its first `failures` requests (recorded too), then 200.
    pub fn failing_first(failures: usize) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
        let url = format!("http://{}/hooks/lifeboat", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let seen = {
                    let mut received = sink.lock().unwrap();
                    if reader.read_exact(&mut body).is_ok() {
                        received.push(String::from_utf8_lossy(&body).into_owned());
                    }
                    received.len()
                };
                let answer: &[u8] = if seen <= failures {
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nfail"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                };
                let _ = reader.get_mut().write_all(answer);
            }
        });
        Webhook { url, received }
    }

    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}
