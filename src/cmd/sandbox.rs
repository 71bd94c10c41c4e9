//! `digidesk-upload sandbox`: runs the local DigiDesk until Ctrl-C or SIGTERM,
//! printing its endpoint and credentials on start.

use std::io::Write;

use crate::cli::SandboxArgs;
use crate::exit::{Exit, Fatal};
use crate::sandbox::{Sandbox, SandboxConfig};

impl From<SandboxArgs> for SandboxConfig {
    fn from(a: SandboxArgs) -> SandboxConfig {
        SandboxConfig {
            listen: a.listen,
            username: a.username,
            password: a.password,
            tls: a.tls,
            cert_out: a.cert_out,
            record: a.record,
            campaigns: a.campaigns,
            allowed_params: a.allow_param,
            latency_ms: a.latency_ms,
            jitter_ms: a.jitter_ms,
            rate_limit: a.rate_limit,
            rate_limit_burst: a.rate_limit_burst,
            error_rate: a.error_rate,
            html_error_rate: a.html_error_rate,
            drop_before_rate: a.drop_before_rate,
            drop_after_rate: a.drop_after_rate,
            gateway_timeout_rate: a.gateway_timeout_rate,
            fault_status_rate: a.fault_status_rate,
            fault_status: a.fault_status,
            retry_after: a.retry_after,
            seed: a.seed,
            fast: a.fast,
            remember: false,
        }
    }
}

pub async fn run(args: SandboxArgs) -> Result<Exit, Fatal> {
    let cert_out = args.cert_out.clone();
    let cfg = SandboxConfig::from(args);
    cfg.validate().map_err(Fatal::usage)?;
    let (username, password) = (cfg.username.clone(), cfg.password.clone());
    let mut signals = crate::signals::Signals::install()
        .map_err(|e| Fatal::usage(format!("cannot watch for Ctrl-C: {e}")))?;
    let sandbox = Sandbox::start(cfg)
        .await
        .map_err(|e| Fatal::usage(format!("sandbox: {e:#}")))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "endpoint: {}", sandbox.endpoint());
        let _ = writeln!(out, "username: {username}");
        let _ = writeln!(out, "password: {password}");
        if let Some(path) = cert_out {
            let _ = writeln!(out, "ca-cert: {}", path.display());
        }
        let _ = out.flush();
    }
    tracing::info!("sandbox running; Ctrl-C to stop");
    signals.next().await;
    sandbox.shutdown().await;
    Ok(Exit::Success)
}
