//! The limit our figures are compared with: what this machine does with no
//! work at all behind a call. An empty unary RPC (the gRPC health check,
//! answered from memory) through the same client connections as the real
//! calls, and a gateway-shaped fan-out — one call in, three empty calls out
//! concurrently, one answer back — each server its own process, as the
//! suite's are.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Serves the empty RPC on `listen`; with `fanout`, each call first makes the
/// same call to those three servers, at once, and answers when all have.
pub async fn serve(listen: &str, fanout: Vec<String>) -> anyhow::Result<()> {
    let addr = listen.parse()?;
    if fanout.is_empty() {
        let (reporter, service) = tonic_health::server::health_reporter();
        drop(reporter);
        Server::builder().add_service(service).serve(addr).await?;
    } else {
        let mut clients = Vec::new();
        for a in &fanout {
            let channel = Endpoint::from_shared(format!("http://{a}"))?
                .tcp_nodelay(true)
                .connect_lazy();
            clients.push(HealthClient::new(channel));
        }
        Server::builder()
            .add_service(HealthServer::new(FanOut { clients }))
            .serve(addr)
            .await?;
    }
    Ok(())
}

struct FanOut {
    clients: Vec<HealthClient<Channel>>,
}

#[tonic::async_trait]
impl Health for FanOut {
    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let calls = self.clients.iter().map(|c| {
            let mut c = c.clone();
            async move { c.check(HealthCheckRequest::default()).await }
        });
        let answers = futures_util::future::join_all(calls).await;
        for a in answers {
            a?;
        }
        Ok(Response::new(HealthCheckResponse {
            status: tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
        }))
    }

    type WatchStream = futures_util::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("the limit server only answers Check"))
    }
}

/// The limit servers, running: `empty` answers from memory, `fanout` calls three of those.
pub struct LimitServers {
    pub empty: String,
    pub fanout: String,
    children: Vec<Child>,
}

impl LimitServers {
    pub async fn start() -> anyhow::Result<LimitServers> {
        let me = std::env::current_exe()?;
        let backends: Vec<String> = (0..3).map(|_| crate::suite::free_addr()).collect();
        let fanout = crate::suite::free_addr();
        let mut children = Vec::new();
        for a in &backends {
            children.push(
                Command::new(&me)
                    .args(["limit-server", "--listen", a])
                    .stdout(Stdio::null())
                    .spawn()?,
            );
        }
        children.push(
            Command::new(&me)
                .args([
                    "limit-server",
                    "--listen",
                    &fanout,
                    "--fanout",
                    &backends.join(","),
                ])
                .stdout(Stdio::null())
                .spawn()?,
        );
        let servers = LimitServers {
            empty: backends[0].clone(),
            fanout,
            children,
        };
        let until = Instant::now() + Duration::from_secs(10);
        for a in backends.iter().chain([&servers.fanout]) {
            while !crate::suite::healthy(a).await {
                if Instant::now() > until {
                    bail!("the limit server on {a} did not start");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(servers)
    }
}

impl Drop for LimitServers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
