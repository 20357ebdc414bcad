//! A local OAuth2 token endpoint (Microsoft's is unreachable offline) following the documented
//! v2.0 token response.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct TokenEndpoint {
    pub url: String,
    /// The form bodies received, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl TokenEndpoint {
    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// Answers each request with the next (status, body) of `replies`, then stops listening.
pub fn token_endpoint(replies: Vec<(u16, String)>) -> TokenEndpoint {
    serve(replies, false)
}

/// Answers every request with `reply`, for as long as the test runs.
pub fn token_endpoint_always(reply: (u16, String)) -> TokenEndpoint {
    serve(vec![reply], true)
}

fn serve(replies: Vec<(u16, String)>, repeat_last: bool) -> TokenEndpoint {
    serve_on(replies, repeat_last, None)
}

/// Like [`token_endpoint_always`], over HTTPS with the PEM certificate chain `cert` and key
/// `key` (a test CA's): what a client trusting that CA reaches at `https://127.0.0.1:port/…`.
pub fn https_token_endpoint_always(reply: (u16, String), cert: &str, key: &str) -> TokenEndpoint {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    serve_on(vec![reply], true, Some(Arc::new(config)))
}

fn serve_on(
    replies: Vec<(u16, String)>,
    repeat_last: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> TokenEndpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "{}://127.0.0.1:{}/tenant.example/oauth2/v2.0/token",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr().unwrap().port()
    );
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        let mut next = 0;
        loop {
            let Some((status, body)) = replies
                .get(next)
                .or(if repeat_last { replies.last() } else { None })
                .cloned()
            else {
                return;
            };
            next += 1;
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let stream: Box<dyn ReadWrite> = match &tls {
                Some(config) => {
                    let Ok(conn) = rustls::ServerConnection::new(Arc::clone(config)) else {
                        continue;
                    };
                    Box::new(rustls::StreamOwned::new(conn, stream))
                }
                None => Box::new(stream),
            };
            answer(stream, status, &body, &seen);
        }
    });
    TokenEndpoint { url, requests }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Reads one request (headers, then a Content-Length body) and answers it.
fn answer(stream: Box<dyn ReadWrite>, status: u16, body: &str, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        // Nothing arrived (the client hung up, or a TLS handshake failed): no request.
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut form = vec![0; length];
    let _ = reader.read_exact(&mut form);
    seen.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&form).into_owned());
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut stream = reader.into_inner();
    let _ = write!(stream, "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = stream.flush();
}

/// A successful client-credentials response.
pub fn ok_token(token: &str, expires_in: u64) -> (u16, String) {
    (
        200,
        format!(
            r#"{{"token_type":"Bearer","expires_in":{expires_in},"ext_expires_in":{expires_in},"access_token":"{token}"}}"#
        ),
    )
}

/// Microsoft's answer to a wrong client secret.
pub fn invalid_client() -> (u16, String) {
    (
        401,
        r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '6f1c2b0e'.\r\nTrace ID: 1","error_codes":[7000215]}"#
            .to_string(),
    )
}
