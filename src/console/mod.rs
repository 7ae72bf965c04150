//! `sluice console`: a web console for any Kafka-compatible cluster, in
//! the same binary. It speaks Kafka only through `sluice-client` (as the
//! command-line tools in `crate::cli` do, whose group and produce code it
//! reuses) and serves server-rendered pages over HTTP (tiny_http) from a
//! few worker threads, each with its own blocking client connection.
//!
//! It owns the HTTP side: routing, the safety rules (loopback by default,
//! `--read-only` refusing every POST with 403, a same-origin check on
//! every change, bounded bodies, bounded pages) and turning every cluster
//! error into a page that says what went wrong. It must not start
//! glommio, shards or any broker state, and must not panic on anything a
//! broker or a browser sends: a handler that panics anyway answers 500 and
//! the worker carries on.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use askama::Template;
use clap::Args;
use sluice_client::Cluster as Client;

use crate::cli::Common;

mod browser;
mod groups;
pub mod http;
mod overview;
mod pages;
pub mod sampler;

use http::{Params, Reply};
use pages::{Chrome, ErrorPage};

/// Requests served at once; each worker holds one client connection.
const WORKERS: usize = 4;
const CLIENT_ID: &str = "sluice-console";

#[derive(Debug, Args)]
#[command(
    after_help = "Open http://127.0.0.1:8080/ after starting it. Without --metrics-url the \
    throughput charts come from log-end offsets the console samples every 5 s."
)]
pub struct ConsoleArgs {
    /// Where the console listens (keep it on 127.0.0.1 unless a proxy
    /// in front of it authenticates users).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub listen: SocketAddr,
    /// Show the cluster only: no forms, and every POST is refused (403).
    #[arg(long)]
    pub read_only: bool,
    /// A broker's Prometheus metrics endpoint (`http://host:9644/metrics`)
    /// for the throughput charts.
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,
}

/// What every worker shares.
struct Console {
    bootstrap: String,
    timeout: Duration,
    read_only: bool,
    allowed_hosts: Option<Vec<String>>,
    throughput: Arc<Mutex<sampler::Throughput>>,
    metrics_url: Option<String>,
}

pub fn run(common: &Common, args: ConsoleArgs) -> Result<ExitCode> {
    let server = tiny_http::Server::http(args.listen)
        .map_err(|error| anyhow!("cannot listen on {}: {error}", args.listen))?;
    let console = Arc::new(Console {
        bootstrap: common.bootstrap_server.clone(),
        timeout: common.timeout(),
        read_only: args.read_only,
        allowed_hosts: http::allowed_hosts(&args.listen),
        throughput: Arc::default(),
        metrics_url: args.metrics_url.clone(),
    });
    sampler::spawn(
        console.bootstrap.clone(),
        console.timeout,
        args.metrics_url,
        console.throughput.clone(),
    );
    eprintln!(
        "Sluice console for {} on http://{}/{}",
        console.bootstrap,
        args.listen,
        if args.read_only { " (read-only)" } else { "" }
    );
    let server = Arc::new(server);
    let workers: Vec<_> = (0..WORKERS)
        .map(|index| {
            let (server, console) = (server.clone(), console.clone());
            std::thread::Builder::new()
                .name(format!("console-{index}"))
                .spawn(move || serve(&server, console))
                .context("starting a console worker")
        })
        .collect::<Result<_>>()?;
    for worker in workers {
        let _ = worker.join();
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(server: &tiny_http::Server, console: Arc<Console>) {
    let mut worker = Worker {
        console,
        client: None,
    };
    while let Ok(mut request) = server.recv() {
        let reply = match catch_unwind(AssertUnwindSafe(|| worker.handle(&mut request))) {
            Ok(reply) => reply,
            Err(_) => {
                worker.client = None;
                worker.error_page(500, "Internal error", "The console failed on this request.")
            }
        };
        let mut response = tiny_http::Response::from_data(reply.body.clone())
            .with_status_code(tiny_http::StatusCode(reply.status));
        for (name, value) in reply.all_headers() {
            if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(header);
            }
        }
        let _ = request.respond(response);
    }
}

/// One request as the handlers see it.
pub struct Incoming {
    pub path: String,
    pub query: Params,
    pub form: Params,
}

struct Worker {
    console: Arc<Console>,
    /// Connected on first use, dropped after an error so the next request
    /// starts afresh (a broker that came back is found again).
    client: Option<Client>,
}

impl Worker {
    fn chrome(&self, notice: Option<String>) -> Chrome {
        Chrome {
            bootstrap: self.console.bootstrap.clone(),
            read_only: self.console.read_only,
            notice,
        }
    }

    fn error_page(&self, status: u16, heading: &str, message: &str) -> Reply {
        let page = ErrorPage {
            chrome: self.chrome(None),
            status,
            heading: heading.to_string(),
            message: message.to_string(),
        };
        Reply::html(
            status,
            page.render().unwrap_or_else(|_| message.to_string()),
        )
    }

    fn handle(&mut self, request: &mut tiny_http::Request) -> Reply {
        let header = |name: &str| {
            request
                .headers()
                .iter()
                .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                .map(|h| h.value.as_str().to_string())
        };
        let host = header("Host");
        if let Some(allowed) = &self.console.allowed_hosts {
            if !host.as_ref().is_some_and(|host| allowed.contains(host)) {
                return self.error_page(
                    421,
                    "Wrong host",
                    "This console answers to its loopback address only.",
                );
            }
        }
        let url = request.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let post = match request.method() {
            tiny_http::Method::Get | tiny_http::Method::Head => false,
            tiny_http::Method::Post => true,
            _ => {
                return self.error_page(405, "Method not allowed", "Only GET and POST are served.")
            }
        };
        let mut incoming = Incoming {
            path: path.to_string(),
            query: Params::parse(query),
            form: Params::default(),
        };
        if post {
            if self.console.read_only {
                return self.error_page(
                    403,
                    "Read-only",
                    "This console is read-only: it changes nothing.",
                );
            }
            if !http::same_origin(
                host.as_deref(),
                header("Origin").as_deref(),
                header("Referer").as_deref(),
            ) {
                return self.error_page(403, "Refused", "A change must come from a page of this console (Origin or Referer must match Host).");
            }
            match http::read_body(request.as_reader()) {
                Ok(Some(body)) => incoming.form = Params::parse(&String::from_utf8_lossy(&body)),
                Ok(None) => {
                    return self.error_page(
                        413,
                        "Too large",
                        &format!(
                            "Request bodies are limited to {} bytes.",
                            http::BODY_BYTES_MAX
                        ),
                    )
                }
                Err(error) => return self.error_page(400, "Bad request", &error.to_string()),
            }
        }
        let routed = if post {
            self.post(&incoming)
        } else {
            self.get(&incoming)
        };
        match routed {
            Ok(Some(reply)) => reply,
            Ok(None) => {
                self.error_page(404, "Not found", &format!("No page at {}.", incoming.path))
            }
            Err(error) => {
                self.client = None;
                let status = if error.is::<UserError>() { 400 } else { 502 };
                let heading = if status == 400 {
                    "Cannot do that"
                } else {
                    "Cluster error"
                };
                self.error_page(status, heading, &format!("{error:#}"))
            }
        }
    }

    fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_none() {
            let client = Client::connect(&self.console.bootstrap, CLIENT_ID, self.console.timeout)
                .with_context(|| {
                    format!("cannot reach the cluster at {}", self.console.bootstrap)
                })?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn get(&mut self, request: &Incoming) -> Result<Option<Reply>> {
        let notice = request.query.get("notice").map(str::to_string);
        let html = |page: &dyn DynPage| page.html();
        Ok(Some(match request.path.as_str() {
            "/static/console.css" => Reply::asset("text/css", include_str!("assets/console.css")),
            "/static/console.js" => {
                Reply::asset("text/javascript", include_str!("assets/console.js"))
            }
            "/api/throughput" => {
                let throughput = self
                    .console
                    .throughput
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                Reply::json(throughput.to_json().to_string())
            }
            "/" => {
                let mut source = match &self.console.metrics_url {
                    Some(url) => format!("from log-end offsets in {url}"),
                    None => "from log-end offsets the console samples every 5 s".to_string(),
                };
                if let Some(error) = self.sampling_error() {
                    source.push_str(&format!(" (the last sample failed: {error})"));
                }
                let (brokers, topics) = self.throughput_rows();
                let chrome = self.chrome(notice);
                html(&overview::cluster(
                    self.client()?,
                    chrome,
                    source,
                    brokers,
                    topics,
                )?)?
            }
            "/topics" => {
                let chrome = self.chrome(notice);
                html(&overview::topics(self.client()?, chrome, &request.query)?)?
            }
            "/topic" => {
                let chrome = self.chrome(notice);
                html(&overview::topic(self.client()?, chrome, &request.query)?)?
            }
            "/messages" => {
                let chrome = self.chrome(notice);
                html(&browser::messages(self.client()?, chrome, &request.query)?)?
            }
            "/messages/value" => browser::download(self.client()?, &request.query)?,
            "/groups" => {
                let chrome = self.chrome(notice);
                html(&groups::list(self.client()?, chrome)?)?
            }
            "/group" => {
                let chrome = self.chrome(notice);
                html(&groups::group(self.client()?, chrome, &request.query)?)?
            }
            _ => return Ok(None),
        }))
    }

    fn post(&mut self, request: &Incoming) -> Result<Option<Reply>> {
        let form = &request.form;
        let client = self.client()?;
        Ok(Some(match request.path.as_str() {
            "/topics/create" => overview::create_topic(client, form)?,
            "/topic/partitions" => overview::add_partitions(client, form)?,
            "/topic/config" => overview::set_config(client, form)?,
            "/topic/config-delete" => overview::delete_config(client, form)?,
            "/topic/delete" => overview::delete_topic(client, form)?,
            "/messages/produce" => browser::produce(client, form)?,
            "/group/reset" => groups::reset(client, form)?,
            "/group/delete" => groups::delete(client, form)?,
            _ => return Ok(None),
        }))
    }

    fn sampling_error(&self) -> Option<String> {
        let throughput = self.console.throughput.lock();
        throughput.unwrap_or_else(|e| e.into_inner()).error.clone()
    }

    fn throughput_rows(&self) -> (Vec<pages::RateRow>, Vec<pages::RateRow>) {
        let throughput = self
            .console
            .throughput
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let rows = |rates: Vec<(String, f64)>| {
            rates
                .into_iter()
                .map(|(name, rate)| pages::RateRow {
                    name,
                    rate: format!("{rate:.1} records/s"),
                })
                .collect()
        };
        let (brokers, topics) = throughput.latest();
        (rows(brokers), rows(topics))
    }
}

/// A page rendered to a 200 reply.
trait DynPage {
    fn html(&self) -> Result<Reply>;
}

impl<T: Template> DynPage for T {
    fn html(&self) -> Result<Reply> {
        Ok(Reply::html(
            200,
            self.render().context("rendering the page")?,
        ))
    }
}

/// A request the console refuses before asking the cluster (a form field
/// missing or wrong): answered 400, not as a cluster error.
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

pub fn user_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(message.into()))
}

/// A required form or query field.
pub fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str> {
    params
        .get(name)
        .ok_or_else(|| user_error(format!("'{name}' is required")))
}

/// A 303 back to `path` with a notice (query-encoded).
pub fn done(path: &str, notice: &str) -> Reply {
    let separator = if path.contains('?') { '&' } else { '?' };
    Reply::see_other(format!(
        "{path}{separator}notice={}",
        http::percent_encode(notice)
    ))
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Epoch milliseconds as `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub fn format_timestamp(ms: i64) -> String {
    if ms < 0 {
        return format!("{ms}");
    }
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (hours, minutes) = (rest / 3_600_000, rest / 60_000 % 60);
    let (seconds, millis) = (rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02} {hours:02}:{minutes:02}:{seconds:02}.{millis:03} UTC")
}

/// Bytes for people: `1.5 MiB`.
pub fn format_bytes(bytes: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_sizes_for_people() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            format_timestamp(1_709_251_199_123),
            "2024-02-29 23:59:59.123 UTC"
        );
        assert_eq!(format_timestamp(-1), "-1");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn notices_ride_in_the_query() {
        let reply = done("/topic?name=a", "Set x=1.");
        assert_eq!(reply.status, 303);
        assert_eq!(reply.headers[0].1, "/topic?name=a&notice=Set%20x%3D1.");
    }
}
