//! What the fuzz targets share: how one input is cut into parts, how a part becomes an HTTP
//! answer, and a host that answers a plugin's HTTP requests with those answers.
//!
//! Contract:
//! - An input with several parts (a main file and a drop-in; an authority's answers in the
//!   order they are asked for) separates them with [`SEPARATOR`], a line of its own. The seed
//!   generator (`certvakt-fuzz-seeds` in the test kit) writes seeds in the same form.
//! - A part is an HTTP answer when it starts with a status line of digits: then header lines
//!   `Name: value`, an empty line, and the body (CRLF or LF). Any other part is the body of a
//!   `200` answer without headers, so a bare XML or JSON file is a valid part.
//! - [`ScriptedHost`] answers the plugin's host calls as the daemon would, from memory: HTTP
//!   with the next scripted answer (then "no answer", as a server that went away), secrets with
//!   fixed bytes (never a file: a fuzzed path must not read `/dev/zero`), everything else like
//!   the SDK's `FakeHost`. In an answer, `@CONTEXT@` and `@MESSAGE_ID@` are replaced by the
//!   `Context` attribute and `MessageID` the request carried, so the fuzzer can reach the reader
//!   of an STS token, which must echo the request's random identifiers.
//! - [`scratch_dir`] is one folder per process for targets that must write files, under
//!   `TMPDIR` (`scripts/fuzz` points it at a folder in memory that it removes after the run:
//!   libFuzzer exits without running destructors).
//! - [`call`] runs one plugin method through the real codec (`dispatch`) and checks the
//!   plugin's answer decodes: a plugin must always answer, whatever its authority said. A panic
//!   anywhere aborts the process (libFuzzer's panic hook runs before the SDK's catch_unwind),
//!   so the fuzzer sees it as the crash it is. With `CERTVAKT_FUZZ_SHOW` set it prints the
//!   answer, to see how far a seed gets (`fuzz/target/*/release/TARGET SEED`).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

use certvakt_plugin_api::abi::{HostCallHandler, LocalHostTable};
use certvakt_plugin_api::messages::{HostRequest, HostResponse, PluginRequest, PluginResponse};
use certvakt_plugin_api::testing::FakeHost;
use certvakt_plugin_api::{CertificateInfo, Host, HostError, HostErrorKind, HttpResponse, Plugin};

/// Separates the parts of one input.
pub const SEPARATOR: &[u8] = b"\n~~~\n";

/// The parts of `data`, split at every [`SEPARATOR`].
pub fn parts(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = find(rest, SEPARATOR) {
        out.push(&rest[..at]);
        rest = &rest[at + SEPARATOR.len()..];
    }
    out.push(rest);
    out
}

/// Joins parts with [`SEPARATOR`] (the seed generator's side of [`parts`]).
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(SEPARATOR)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One part as an HTTP answer (see the module contract).
pub fn http_response(part: &[u8]) -> HttpResponse {
    let line_end = part.iter().position(|&b| b == b'\n').unwrap_or(part.len());
    let status_line = String::from_utf8_lossy(&part[..line_end]);
    let status = match status_line.trim().parse::<u16>() {
        Ok(status) if !status_line.trim().is_empty() => status,
        _ => {
            return HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: part.to_vec(),
            };
        }
    };
    let mut headers = Vec::new();
    let mut rest = part.get(line_end + 1..).unwrap_or_default();
    loop {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = String::from_utf8_lossy(&rest[..end]);
        let line = line.trim_end_matches('\r');
        rest = rest.get(end + 1..).unwrap_or_default();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    HttpResponse {
        status,
        headers,
        body: rest.to_vec(),
    }
}

/// The daemon's side of a plugin call, with scripted HTTP answers.
#[derive(Debug, Default)]
pub struct ScriptedHost {
    fake: FakeHost,
    answers: Mutex<VecDeque<HttpResponse>>,
}

impl ScriptedHost {
    /// A host that answers the plugin's HTTP requests with `answers`, in order.
    pub fn new(answers: impl IntoIterator<Item = HttpResponse>) -> ScriptedHost {
        ScriptedHost {
            fake: FakeHost::new(),
            answers: Mutex::new(answers.into_iter().collect()),
        }
    }

    /// A host whose HTTP answers are the parts of `data`.
    pub fn from_parts(data: &[&[u8]]) -> ScriptedHost {
        ScriptedHost::new(data.iter().map(|part| http_response(part)))
    }

    /// How many scripted HTTP answers are left.
    pub fn answers_left(&self) -> usize {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn answer(&self, request: HostRequest) -> HostResponse {
        match request {
            HostRequest::Http(http) => {
                let next = self
                    .answers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front();
                if std::env::var_os("CERTVAKT_FUZZ_SHOW").is_some() {
                    let status = next.as_ref().map(|a| a.status);
                    eprintln!("http {} {} -> {status:?}", http.method, http.url);
                }
                match next {
                    Some(mut answer) => {
                        fill_placeholders(&mut answer, &http.body);
                        HostResponse::Http(answer)
                    }
                    None => HostResponse::Error(HostError::new(
                        HostErrorKind::Failed,
                        format!("no answer from {}", http.url),
                    )),
                }
            }
            HostRequest::ReadSecret { .. } => HostResponse::ReadSecret {
                bytes: b"c2VjcmV0LWtleS1mb3ItdGhlLWZ1enotdGFyZ2V0cw".to_vec(),
            },
            other => self.fake.handle(other),
        }
    }
}

impl HostCallHandler for ScriptedHost {
    fn host_call(&self, method: &str, params: &[u8]) -> Vec<u8> {
        let response = match HostRequest::decode(method, params) {
            Ok(request) => self.answer(request),
            Err(e) => HostResponse::Error(HostError::new(HostErrorKind::Invalid, e.to_string())),
        };
        serde_json::to_vec(&response).unwrap_or_default()
    }
}

fn fill_placeholders(answer: &mut HttpResponse, request_body: &[u8]) {
    const CONTEXT: &[u8] = b"@CONTEXT@";
    const MESSAGE_ID: &[u8] = b"@MESSAGE_ID@";
    if find(&answer.body, CONTEXT).is_none() && find(&answer.body, MESSAGE_ID).is_none() {
        return;
    }
    let request = String::from_utf8_lossy(request_body);
    let context = between(&request, "Context=\"", "\"").unwrap_or_default();
    let message_id = between(&request, "MessageID>", "<").unwrap_or_default();
    let body = String::from_utf8_lossy(&answer.body)
        .replace("@CONTEXT@", context)
        .replace("@MESSAGE_ID@", message_id);
    answer.body = body.into_bytes();
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// Runs `request` on `plugin` as the daemon would, with `host` answering its host calls, and
/// returns the decoded answer.
///
/// # Panics
/// When the plugin's answer does not decode as a [`PluginResponse`]: the SDK must always
/// encode one, whatever happened inside the plugin.
pub fn call<P: Plugin>(plugin: &P, host: &ScriptedHost, request: &PluginRequest) -> PluginResponse {
    let params = request
        .encode_params()
        .expect("a request built by the target encodes");
    let table = LocalHostTable::new(host);
    let sdk_host = Host::new(table.table());
    let answer = certvakt_plugin_api::dispatch(plugin, request.method(), &params, &sdk_host);
    if std::env::var_os("CERTVAKT_FUZZ_SHOW").is_some() {
        eprintln!("{}: {}", request.method(), String::from_utf8_lossy(&answer));
    }
    match serde_json::from_slice::<PluginResponse>(&answer) {
        Ok(response) => response,
        Err(e) => panic!(
            "the plugin's answer to {} does not decode: {e}: {}",
            request.method(),
            String::from_utf8_lossy(&answer)
        ),
    }
}

/// An OCES3 organisation certificate from the test CA, as the daemon describes it to a plugin
/// (made once per process and `(cvr, uuid)`: RSA key generation is slow).
pub fn oces3(cvr: &'static str, uuid: &'static str, name: &'static str) -> CertificateInfo {
    type Made = Vec<((&'static str, &'static str), CertificateInfo)>;
    static MADE: OnceLock<Mutex<Made>> = OnceLock::new();
    let made = MADE.get_or_init(|| Mutex::new(Vec::new()));
    let mut made = made.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, info)) = made.iter().find(|(key, _)| *key == (cvr, uuid)) {
        return info.clone();
    }
    use certvakt_testkit::{CaShape, LeafSpec, TestCa};
    let issued = TestCa::new(CaShape::Oces3)
        .and_then(|ca| ca.issue(&LeafSpec::oces3(cvr, uuid, name)))
        .expect("the test CA issues an OCES3 certificate");
    let info = CertificateInfo {
        pem: issued.cert_pem.clone(),
        subject: format!("CN={name},O={name},C=DK"),
        serial: issued.serial_hex().unwrap_or_default(),
        not_before: issued.not_before.unix_timestamp(),
        not_after: issued.not_after.unix_timestamp(),
        identities: vec![format!("DK CVR {cvr} UUID {uuid}")],
    };
    made.push(((cvr, uuid), info.clone()));
    info
}

/// The first line of `data` (without its newline, at most `max` bytes, lossy UTF-8) and the
/// rest: a method name or a password before the bytes it goes with.
pub fn first_line(data: &[u8], max: usize) -> (String, &[u8]) {
    let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let line = String::from_utf8_lossy(&data[..end.min(max)]).into_owned();
    (line, data.get(end + 1..).unwrap_or_default())
}

/// Runs a raw method call (`method` on the first line, its JSON parameters after it) on
/// `plugin`, as a daemon of another version might send it: the SDK's decoding and the
/// plugin's settings reader take any bytes.
pub fn raw_call<P: Plugin>(plugin: &P, host: &ScriptedHost, data: &[u8]) {
    let (method, params) = first_line(data, 64);
    let table = LocalHostTable::new(host);
    let sdk_host = Host::new(table.table());
    let answer = certvakt_plugin_api::dispatch(plugin, &method, params, &sdk_host);
    if let Err(e) = serde_json::from_slice::<PluginResponse>(&answer) {
        panic!(
            "the plugin's answer to {method:?} does not decode: {e}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// This process's scratch folder (see the module contract).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
        .path()
}

/// Prints `what` when `CERTVAKT_FUZZ_SHOW` is set (see the module contract).
pub fn show(what: impl std::fmt::Display) {
    if std::env::var_os("CERTVAKT_FUZZ_SHOW").is_some() {
        eprintln!("{what}");
    }
}
