//! What every service's command line does around its own commands: report
//! errors as `program: message` with a failing exit code, build the runtime
//! and telemetry, and serve on the configured address until SIGTERM/SIGINT.
use std::future::Future;
use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::config::Settings;
use crate::server::{GrpcServer, shutdown_signal};

/// Turns a command's result into the process exit code, printing any error.
pub fn exit_with(program: &str, result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` on a new runtime with logging (and trace export, when configured)
/// set up first and flushed last.
pub fn run<F>(service: &str, settings: &Settings, command: F) -> anyhow::Result<ExitCode>
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let telemetry = crate::telemetry::init(
            service,
            settings.log_format,
            settings.otlp_endpoint.as_deref(),
        )?;
        tracing::info!(database = %settings.database_url, "{service} starting");
        // Every command that writes seals the audit chain with the suite's key. A command
        // that needs none (migrate on a deployment whose key is elsewhere) still runs.
        if let Err(e) = crate::auth::Keys::load(&settings.auth, &[service]) {
            tracing::debug!(error = %e, "no signing key loaded; audit records cannot be written");
        }
        let result = command.await;
        telemetry.shutdown();
        result
    })
}

/// Asks the server on the configured address whether `service` is SERVING:
/// exit 0 when it is. The containers' health check (their images hold no
/// shell and no probe tool, only the service's own binary).
pub async fn health(settings: &Settings, service: &str) -> anyhow::Result<ExitCode> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let mut addr = settings.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let wait = std::time::Duration::from_secs(2);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(wait)
        .timeout(wait)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("nothing answers on {addr}: {e}"))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("health check on {addr}: {}", s.message()))?
        .into_inner()
        .status();
    println!("{service}: {}", status.as_str_name());
    Ok(
        if status == tonic_health::pb::health_check_response::ServingStatus::Serving {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// Binds the configured address and serves until SIGTERM or SIGINT, then drains.
pub async fn serve(
    service: &str,
    settings: &Settings,
    server: GrpcServer,
) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    tracing::info!(address = %listener.local_addr()?, "{service} service listening");
    server.serve(listener, shutdown_signal()).await?;
    tracing::info!("{service} service stopped");
    Ok(ExitCode::SUCCESS)
}
