//! Configuration: the raw command line turned into checked, typed settings
//! (a parsed endpoint, credentials, a rate, the results path) before any row
//! is read or any request made. Bad configuration never reaches the network.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use encoding_rs::Encoding;

use crate::cli::{ResultsFormat, SendOptions};
/// The credentials are the transport's; re-exported for the settings' users.
pub use crate::transport::Credentials;
use crate::transport::TransportError;

/// A setting that cannot be used: nothing was sent. Each says which option
/// is wrong and what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An option's value.
    #[error("{0}")]
    Invalid(String),
    /// What the transport refuses: the endpoint through a proxy, `--ca-cert`,
    /// the credentials.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// The latency `--concurrency`'s default is sized for.
pub const DESIGN_LATENCY: Duration = Duration::from_millis(250);

/// In-flight requests with `--rate 0`.
pub const UNLIMITED_CONCURRENCY: usize = 64;

/// Parses `--encoding` (any WHATWG label: `utf-8`, `windows-1252`, `latin1`, ...).
pub fn parse_encoding(name: &str) -> Result<&'static Encoding, ConfigError> {
    Encoding::for_label(name.trim().as_bytes()).ok_or_else(|| {
        invalid(format!(
            "--encoding {name:?} is not an encoding I know; common ones: utf-8, windows-1252 (Excel on Windows), iso-8859-1, iso-8859-15, utf-16le, shift_jis"
        ))
    })
}

/// Parses `--delimiter`: one ASCII character, or `tab` / `\t`.
pub fn parse_delimiter(s: &str) -> Result<u8, ConfigError> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => {
            Ok(s.as_bytes()[0])
        }
        _ => Err(invalid(format!(
            "--delimiter {s:?} must be one ASCII character such as ',' ';' '|' or the word tab"
        ))),
    }
}

/// Parses and checks `--endpoint`: HTTPS anywhere, plain HTTP only to loopback.
pub fn parse_endpoint(raw: Option<&str>) -> Result<url::Url, ConfigError> {
    let raw = raw
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(crate::spec::DEFAULT_ENDPOINT);
    let url = url::Url::parse(raw).map_err(|e| {
        invalid(format!(
            "--endpoint {raw:?} is not a URL ({e}); expected e.g. {}",
            crate::spec::DEFAULT_ENDPOINT
        ))
    })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(invalid(format!(
                "--endpoint {raw} uses plain http:// to a host that is not this machine; DigiDesk is HTTPS only and credentials must not cross the network unencrypted. Use https://"
            )))
        }
        other => {
            return Err(invalid(format!("--endpoint {raw}: unsupported scheme {other:?}; use https://")))
        }
    }
    if url.host().is_none() {
        return Err(invalid(format!("--endpoint {raw} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "--endpoint must not carry credentials; use DIGIDESK_USERNAME and DIGIDESK_PASSWORD",
        ));
    }
    Ok(url)
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// How the run treats an existing results file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// An existing results file or journal is an error.
    Fresh,
    /// Continue the run they belong to.
    Resume,
    /// Replace them.
    Force,
}

/// The sending settings shared by `send` and `retry`, checked.
#[derive(Debug, Clone)]
pub struct SendSettings {
    pub results: PathBuf,
    pub endpoint: url::Url,
    pub credentials: Credentials,
    /// Requests per second; `None` = no limit.
    pub rate: Option<u32>,
    /// Requests in flight at the start.
    pub concurrency: usize,
    /// How far the pool may grow when latency calls for it (Little's law);
    /// equal to `concurrency` when the user set `--concurrency`.
    pub max_concurrency: usize,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub mode: StartMode,
    pub ca_cert_pem: Option<Vec<u8>>,
    pub summary_json: Option<PathBuf>,
    pub limit: Option<u64>,
    /// Time between progress log lines off a terminal.
    pub progress_every: Duration,
    /// Retry 500, 502, 504 and other 5xx like a 503.
    pub retry_server_errors: bool,
    /// How the results file is written.
    pub results_format: crate::results::Format,
}

impl SendSettings {
    /// Checks the options; `results_default` is used when `--results` is
    /// absent, `input_delimiter` by `--results-format excel`.
    pub fn from_options(
        opts: &SendOptions,
        results_default: Option<PathBuf>,
        input_delimiter: u8,
    ) -> Result<SendSettings, ConfigError> {
        let results = opts.results.clone().or(results_default).ok_or_else(|| {
            invalid("--results FILE is required when the input is standard input")
        })?;
        let endpoint = parse_endpoint(opts.endpoint.as_deref())?;
        // Plain http through a proxy off this machine is refused here.
        crate::transport::route(&endpoint)?;
        if opts.max_attempts == 0 {
            return Err(invalid("--max-attempts must be at least 1"));
        }
        if !(opts.timeout.is_finite() && opts.timeout > 0.0 && opts.timeout <= 3600.0) {
            return Err(invalid(
                "--timeout must be a number of seconds between 0 and 3600",
            ));
        }
        if opts.concurrency == Some(0) {
            return Err(invalid("--concurrency must be at least 1"));
        }
        if !(opts.progress_every.is_finite() && opts.progress_every >= 0.05) {
            return Err(invalid("--progress-every must be at least 0.05 seconds"));
        }
        if opts.limit == Some(0) {
            return Err(invalid("--limit must be at least 1"));
        }
        let rate = (opts.rate > 0).then_some(opts.rate);
        let concurrency = opts
            .concurrency
            .unwrap_or_else(|| default_concurrency(rate));
        // A concurrency the user chose is kept; the default may grow with latency.
        let max_concurrency = opts.concurrency.unwrap_or_else(|| max_concurrency(rate));
        let ca_cert_pem = match &opts.ca_cert {
            Some(p) => Some(crate::transport::tls::read_ca_cert(p)?),
            None => None,
        };
        let mode = match (opts.resume, opts.force) {
            (true, _) => StartMode::Resume,
            (false, true) => StartMode::Force,
            _ => StartMode::Fresh,
        };
        let credentials = Credentials::load(opts.credentials.as_deref())?;
        Ok(SendSettings {
            results,
            endpoint,
            credentials,
            rate,
            concurrency,
            max_concurrency,
            max_attempts: opts.max_attempts,
            timeout: Duration::from_secs_f64(opts.timeout),
            mode,
            ca_cert_pem,
            summary_json: opts.summary_json.clone(),
            limit: opts.limit,
            progress_every: Duration::from_secs_f64(opts.progress_every),
            retry_server_errors: opts.retry_server_errors,
            results_format: match opts.results_format {
                ResultsFormat::Csv => crate::results::Format::default(),
                ResultsFormat::Excel => crate::results::Format {
                    delimiter: input_delimiter,
                    bom: true,
                },
            },
        })
    }
}

/// Little's law: how many requests must be in flight to hold `rate` (per
/// second) at `latency`, times `headroom`. Every pool size comes from here:
/// the default `--concurrency`, how far it may grow, and the growing itself
/// (in the pipeline's pool).
pub fn in_flight(rate: f64, latency: Duration, headroom: f64) -> usize {
    (rate * latency.as_secs_f64() * headroom).ceil() as usize
}

/// Enough requests in flight to hold `rate` at [`DESIGN_LATENCY`], with
/// headroom for latency spikes: Little's law, doubled.
pub fn default_concurrency(rate: Option<u32>) -> usize {
    match rate {
        None => UNLIMITED_CONCURRENCY,
        Some(r) => in_flight(f64::from(r), DESIGN_LATENCY, 2.0).clamp(4, 512),
    }
}

/// How far the default pool may grow: enough for `rate` at [`MAX_LATENCY`],
/// at most [`CONCURRENCY_CAP`].
pub fn max_concurrency(rate: Option<u32>) -> usize {
    match rate {
        None => UNLIMITED_CONCURRENCY,
        Some(r) => in_flight(f64::from(r), MAX_LATENCY, 1.0)
            .clamp(default_concurrency(rate), CONCURRENCY_CAP),
    }
}

/// The latency the default pool may grow to hold the rate at.
pub const MAX_LATENCY: Duration = Duration::from_secs(2);

/// The most requests the default pool ever has in flight.
pub const CONCURRENCY_CAP: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(parse_endpoint(Some("http://127.0.0.1:9/api/survey_requests/")).is_ok());
        assert!(parse_endpoint(Some("http://localhost:9/x")).is_ok());
        assert!(parse_endpoint(Some("http://[::1]:9/x")).is_ok());
        let e = parse_endpoint(Some("http://example.com/api/")).unwrap_err();
        assert!(e.to_string().contains("plain http://"), "{e}");
        assert!(parse_endpoint(Some("ftp://example.com/")).is_err());
        assert_eq!(
            parse_endpoint(None).unwrap().as_str(),
            crate::spec::DEFAULT_ENDPOINT
        );
    }

    #[test]
    fn concurrency_holds_rate_at_design_latency() {
        assert_eq!(default_concurrency(Some(10)), 5);
        assert_eq!(default_concurrency(Some(200)), 100);
        assert_eq!(default_concurrency(Some(1)), 4);
        assert_eq!(default_concurrency(None), UNLIMITED_CONCURRENCY);
    }
}
