//! The county at work, through the gateway, as logged-in users of every role:
//! residents report issues and confirm their fixes, cadres claim, work on and
//! resolve them, visit households and check in for duty, community workers
//! read their dashboards and open lists and plan deliveries, the supervisor
//! reads the county, and dashboards hold `WatchCommunity` streams open.
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use linli_proto::gateway::v1 as gpb;
use linli_proto::gateway::v1::auth_service_client::AuthServiceClient;
use linli_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use linli_proto::issues::v1 as ipb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use linli_proto::logistics::v1 as lpb;
use linli_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use linli_proto::people::v1 as ppb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::report::Recorder;

/// The password of the benchmark county's accounts (`linli-people seed-county`).
pub const PASSWORD: &str = "linli-demo-2021";

/// One community's users, logged in.
pub struct Member {
    pub community: String,
    pub worker: String,
    pub cadre: String,
    pub cadre_id: String,
    pub resident: String,
    pub household_id: String,
    pub households: Vec<String>,
}

pub struct County {
    pub members: Vec<Member>,
    pub supervisor: String,
}

/// Logs in; while the gateway has not yet seen the people service healthy
/// (it probes once a second), tries again for up to ten seconds.
async fn login(channel: &Channel, username: &str) -> anyhow::Result<gpb::Session> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = AuthServiceClient::new(channel.clone())
            .login(gpb::LoginRequest {
                username: username.into(),
                password: PASSWORD.into(),
            })
            .await;
        match answer {
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => {
                return other
                    .map_err(|s| anyhow::anyhow!("logging in as {username}: {}", s.message()))?
                    .into_inner()
                    .session
                    .ok_or_else(|| anyhow::anyhow!("no session for {username}"));
            }
        }
    }
}

/// Logs in the worker, cadre and resident of the first `communities` communities, and the supervisor.
pub async fn log_in(channel: &Channel, communities: usize) -> anyhow::Result<County> {
    use futures_util::StreamExt;
    let supervisor = login(channel, "supervisor").await?.access_token;
    let one = |n: usize| async move {
        let worker = login(channel, &format!("w{n:03}")).await?;
        let cadre = login(channel, &format!("c{n:03}")).await?;
        let resident = login(channel, &format!("r{n:03}")).await?;
        let id = |s: &gpb::Session| s.identity.clone().unwrap_or_default();
        let community = id(&worker).community_id;
        let households = PeopleServiceClient::new(channel.clone())
            .list_households(with_token(
                ppb::ListHouseholdsRequest {
                    community_id: community.clone(),
                    page_size: 100,
                    ..Default::default()
                },
                &worker.access_token,
            ))
            .await?
            .into_inner()
            .households
            .into_iter()
            .map(|h| h.id)
            .collect();
        anyhow::Ok(Member {
            community,
            cadre_id: id(&cadre).cadre_id,
            household_id: id(&resident).household_id,
            worker: worker.access_token,
            cadre: cadre.access_token,
            resident: resident.access_token,
            households,
        })
    };
    let mut members: Vec<Member> = futures_util::stream::iter((1..=communities).map(one))
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    members.retain(|m| !m.households.is_empty());
    Ok(County {
        members,
        supervisor,
    })
}

pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(Duration::from_secs(10));
    if let Ok(v) = format!("Bearer {token}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

/// An issue the generator made, waiting for its next move.
struct Open {
    member: usize,
    id: String,
    version: i64,
}

/// Issues between moves, by the move they wait for.
#[derive(Default)]
struct Pipeline {
    to_claim: Mutex<VecDeque<Open>>,
    to_start: Mutex<VecDeque<Open>>,
    to_resolve: Mutex<VecDeque<Open>>,
    to_confirm: Mutex<VecDeque<Open>>,
}

const PIPELINE_CAP: usize = 20_000;

fn push(q: &Mutex<VecDeque<Open>>, o: Open) {
    let mut q = q.lock().expect("pipeline lock");
    if q.len() < PIPELINE_CAP {
        q.push_back(o);
    }
}

fn pop(q: &Mutex<VecDeque<Open>>) -> Option<Open> {
    q.lock().expect("pipeline lock").pop_front()
}

/// The operations the generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Empty,
    FanOut,
    Dashboard,
    /// A dashboard read anew, never a held one.
    DashboardFresh,
    County,
    ListOpen,
    Report,
    Claim,
    Start,
    Resolve,
    Confirm,
    Visit,
    CheckIn,
    Household,
    Batches,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Empty => "limit.EmptyCall",
            Op::FanOut => "limit.FanOutOfThree",
            Op::Dashboard => "GetCommunityDashboard",
            Op::DashboardFresh => "GetCommunityDashboard(fresh)",
            Op::County => "GetCountyOverview",
            Op::ListOpen => "ListIssues(open)",
            Op::Report => "ReportIssue",
            Op::Claim => "ClaimIssue",
            Op::Start => "StartWork",
            Op::Resolve => "ResolveIssue",
            Op::Confirm => "ConfirmResolution",
            Op::Visit => "LogVisit",
            Op::CheckIn => "CheckIn",
            Op::Household => "GetHouseholdProfile",
            Op::Batches => "ListBatches",
        }
    }
}

/// Views answered with parts missing are recorded under these names.
pub const PARTIAL_DASHBOARD: &str = "GetCommunityDashboard (partial)";
pub const PARTIAL_FRESH_DASHBOARD: &str = "GetCommunityDashboard(fresh) (partial)";
pub const PARTIAL_COUNTY: &str = "GetCountyOverview (partial)";

/// The full mix, in calls per hundred.
pub const MIX: &[(Op, u32)] = &[
    (Op::Dashboard, 20),
    (Op::County, 2),
    (Op::ListOpen, 10),
    (Op::Report, 15),
    (Op::Claim, 10),
    (Op::Start, 8),
    (Op::Resolve, 8),
    (Op::Confirm, 6),
    (Op::Visit, 8),
    (Op::CheckIn, 5),
    (Op::Household, 3),
    (Op::Batches, 5),
];

/// A small deterministic generator (xorshift), one per worker.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
    pub fn pick(&mut self, mix: &[(Op, u32)]) -> Op {
        let total: u32 = mix.iter().map(|(_, w)| w).sum();
        let mut r = self.below(total as usize) as u32;
        for (op, w) in mix {
            if r < *w {
                return *op;
            }
            r -= w;
        }
        mix[0].0
    }
}

/// Which communities a scenario's calls go to.
#[derive(Debug, Clone, Copy)]
pub enum Spread {
    /// Any community, chosen at random per call.
    County,
    /// The first community only.
    One,
}

/// Everything the workers share.
pub struct Driver {
    pub channels: Vec<Channel>,
    pub county: County,
    pub limit_empty: Option<Channel>,
    pub limit_fanout: Option<Channel>,
    pipeline: Pipeline,
    run: String,
    keys: AtomicU64,
    /// Ids of the reports the gateway acknowledged, for reconciling after faults.
    pub acked: Mutex<Vec<(String, String)>>,
}

impl Driver {
    pub fn new(channels: Vec<Channel>, county: County) -> Driver {
        let run = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros())
        );
        Driver {
            channels,
            county,
            limit_empty: None,
            limit_fanout: None,
            pipeline: Pipeline::default(),
            run,
            keys: AtomicU64::new(0),
            acked: Mutex::new(Vec::new()),
        }
    }

    fn key(&self) -> String {
        format!(
            "lg-{}-{}",
            self.run,
            self.keys.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Makes one call of `op`; the name it is recorded under and its outcome.
    /// A move with nothing waiting for it reads the open list instead.
    pub async fn call(
        &self,
        op: Op,
        worker: usize,
        rng: &mut Rng,
        spread: Spread,
    ) -> (&'static str, Result<(), tonic::Status>) {
        let ch = self.channels[worker % self.channels.len()].clone();
        let m = match spread {
            Spread::County => rng.below(self.county.members.len()),
            Spread::One => 0,
        };
        let member = &self.county.members[m];
        let p = &self.pipeline;
        let transition = |o: &Open| {
            Some(ipb::Transition {
                issue_id: o.id.clone(),
                expected_version: o.version,
                ..Default::default()
            })
        };
        let version = |i: Option<ipb::Issue>| i.map_or(0, |i| i.version);
        let mut issues = IssuesServiceClient::new(ch.clone());
        let outcome = match op {
            Op::Empty | Op::FanOut => {
                let limit = if op == Op::Empty {
                    &self.limit_empty
                } else {
                    &self.limit_fanout
                };
                let Some(limit) = limit else {
                    return (
                        op.name(),
                        Err(tonic::Status::failed_precondition("no limit server")),
                    );
                };
                HealthClient::new(limit.clone())
                    .check(HealthCheckRequest::default())
                    .await
                    .map(drop)
            }
            // A view with parts missing is counted apart: it answered, but not whole.
            Op::Dashboard | Op::DashboardFresh => {
                let fresh = op == Op::DashboardFresh;
                let answer = GatewayServiceClient::new(ch)
                    .get_community_dashboard(with_token(
                        gpb::GetCommunityDashboardRequest {
                            community_id: member.community.clone(),
                            fresh,
                        },
                        &member.worker,
                    ))
                    .await;
                return match answer {
                    Ok(r) if !r.get_ref().missing.is_empty() => (
                        if fresh {
                            PARTIAL_FRESH_DASHBOARD
                        } else {
                            PARTIAL_DASHBOARD
                        },
                        Ok(()),
                    ),
                    other => (op.name(), other.map(drop)),
                };
            }
            Op::County => {
                let answer = GatewayServiceClient::new(ch)
                    .get_county_overview(with_token(
                        gpb::GetCountyOverviewRequest {},
                        &self.county.supervisor,
                    ))
                    .await;
                return match answer {
                    Ok(r) if !r.get_ref().missing.is_empty() => (PARTIAL_COUNTY, Ok(())),
                    other => (op.name(), other.map(drop)),
                };
            }
            Op::ListOpen => list_open(&mut issues, member).await,
            Op::Report => {
                let key = self.key();
                let request = ipb::ReportIssueRequest {
                    idempotency_key: key.clone(),
                    community_id: member.community.clone(),
                    household_id: member.household_id.clone(),
                    title: format!("楼道灯坏了 {key}"),
                    category: 1 + rng.below(8) as i32,
                    source: ipb::Source::ResidentReport as i32,
                    ..Default::default()
                };
                match issues
                    .report_issue(with_token(request, &member.resident))
                    .await
                {
                    Ok(r) => {
                        let issue = r.into_inner().issue.unwrap_or_default();
                        self.acked
                            .lock()
                            .expect("acked lock")
                            .push((key, issue.id.clone()));
                        push(
                            &p.to_claim,
                            Open {
                                member: m,
                                id: issue.id,
                                version: issue.version,
                            },
                        );
                        Ok(())
                    }
                    Err(s) => Err(s),
                }
            }
            Op::Claim | Op::Start | Op::Resolve | Op::Confirm => {
                let (from, to) = match op {
                    Op::Claim => (&p.to_claim, Some(&p.to_start)),
                    Op::Start => (&p.to_start, Some(&p.to_resolve)),
                    Op::Resolve => (&p.to_resolve, Some(&p.to_confirm)),
                    _ => (&p.to_confirm, None),
                };
                let Some(o) = pop(from) else {
                    return ("ListIssues(open)", list_open(&mut issues, member).await);
                };
                let member = &self.county.members[o.member];
                let moved = match op {
                    Op::Claim => issues
                        .claim_issue(with_token(
                            ipb::ClaimIssueRequest {
                                transition: transition(&o),
                                cadre_id: member.cadre_id.clone(),
                                ..Default::default()
                            },
                            &member.cadre,
                        ))
                        .await
                        .map(|r| version(r.into_inner().issue)),
                    Op::Start => issues
                        .start_work(with_token(
                            ipb::StartWorkRequest {
                                transition: transition(&o),
                            },
                            &member.cadre,
                        ))
                        .await
                        .map(|r| version(r.into_inner().issue)),
                    Op::Resolve => issues
                        .resolve_issue(with_token(
                            ipb::ResolveIssueRequest {
                                transition: transition(&o),
                                attachments: vec![],
                            },
                            &member.cadre,
                        ))
                        .await
                        .map(|r| version(r.into_inner().issue)),
                    _ => issues
                        .confirm_resolution(with_token(
                            ipb::ConfirmResolutionRequest {
                                transition: transition(&o),
                                household_id: member.household_id.clone(),
                                rating: 5,
                                comment: "修好了，谢谢".into(),
                            },
                            &member.resident,
                        ))
                        .await
                        .map(|r| version(r.into_inner().issue)),
                };
                match moved {
                    Ok(v) => {
                        if let Some(to) = to {
                            push(to, Open { version: v, ..o });
                        }
                        Ok(())
                    }
                    Err(s) => Err(s),
                }
            }
            Op::Visit => {
                let household = member.households[rng.below(member.households.len())].clone();
                PeopleServiceClient::new(ch)
                    .log_visit(with_token(
                        ppb::LogVisitRequest {
                            idempotency_key: self.key(),
                            household_id: household,
                            cadre_id: member.cadre_id.clone(),
                            kind: ppb::VisitKind::HomeVisit as i32,
                            outcome: ppb::VisitOutcome::Ok as i32,
                            ..Default::default()
                        },
                        &member.cadre,
                    ))
                    .await
                    .map(drop)
            }
            Op::CheckIn => PeopleServiceClient::new(ch)
                .check_in(with_token(
                    ppb::CheckInRequest {
                        idempotency_key: self.key(),
                        cadre_id: member.cadre_id.clone(),
                        community_id: member.community.clone(),
                        activity: "入户走访".into(),
                        ..Default::default()
                    },
                    &member.cadre,
                ))
                .await
                .map(drop),
            Op::Household => GatewayServiceClient::new(ch)
                .get_household_profile(with_token(
                    gpb::GetHouseholdProfileRequest {
                        household_id: member.household_id.clone(),
                    },
                    &member.resident,
                ))
                .await
                .map(drop),
            Op::Batches => LogisticsServiceClient::new(ch)
                .list_batches(with_token(
                    lpb::ListBatchesRequest {
                        community_id: member.community.clone(),
                        page_size: 20,
                        ..Default::default()
                    },
                    &member.worker,
                ))
                .await
                .map(drop),
        };
        (op.name(), outcome)
    }
}

async fn list_open(
    issues: &mut IssuesServiceClient<Channel>,
    member: &Member,
) -> Result<(), tonic::Status> {
    issues
        .list_issues(with_token(
            ipb::ListIssuesRequest {
                community_id: member.community.clone(),
                open_only: true,
                page_size: 20,
                ..Default::default()
            },
            &member.worker,
        ))
        .await
        .map(drop)
}

/// How a scenario runs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub in_flight: usize,
    pub duration: Duration,
    /// Calls per second in all; 0 means flat out.
    pub rate: f64,
}

/// Runs `in_flight` workers for `duration`, each calling `step` in a loop
/// (paced to `rate` in all, if set), with a progress bar; the merged recorder
/// and how long the run took.
pub async fn drive<F, Fut>(label: &str, shape: Shape, step: F) -> (Recorder, Duration)
where
    F: Fn(usize, Arc<AtomicU64>) -> Fut,
    Fut: Future<Output = Recorder> + Send + 'static,
{
    let calls = Arc::new(AtomicU64::new(0));
    let bar = indicatif::ProgressBar::new(shape.duration.as_secs().max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} s  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    let started = Instant::now();
    let workers: Vec<_> = (0..shape.in_flight.max(1))
        .map(|w| tokio::spawn(step(w, calls.clone())))
        .collect();
    let ticker = {
        let (bar, calls) = (bar.clone(), calls.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let secs = started.elapsed().as_secs_f64();
                let n = calls.load(Ordering::Relaxed);
                bar.set_position(secs as u64);
                bar.set_message(format!("{n} calls, {:.0}/s", n as f64 / secs.max(1e-3)));
            }
        })
    };
    let mut merged = Recorder::default();
    for w in workers {
        if let Ok(rec) = w.await {
            merged.merge(&rec);
        }
    }
    let took = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    (merged, took)
}

/// A worker's loop: calls chosen from `mix` until the deadline, paced if asked.
pub async fn work(
    driver: Arc<Driver>,
    worker: usize,
    shape: Shape,
    mix: Vec<(Op, u32)>,
    spread: Spread,
    calls: Arc<AtomicU64>,
) -> Recorder {
    let mut rec = Recorder::default();
    let mut rng = Rng::new(worker as u64 + 1);
    let deadline = Instant::now() + shape.duration;
    let gap = (shape.rate > 0.0)
        .then(|| Duration::from_secs_f64(shape.in_flight.max(1) as f64 / shape.rate));
    let mut next = Instant::now();
    while Instant::now() < deadline {
        if let Some(gap) = gap {
            tokio::time::sleep_until(next.into()).await;
            next += gap;
        }
        let op = rng.pick(&mix);
        let began = Instant::now();
        let (name, outcome) = driver.call(op, worker, &mut rng, spread).await;
        if let Err(s) = &outcome {
            rec.failed(name, s);
        }
        rec.record(name, began.elapsed(), outcome.map_err(|s| s.code()));
        calls.fetch_add(1, Ordering::Relaxed);
    }
    rec
}

/// Holds `n` WatchCommunity streams open (each a worker's dashboard) until
/// `stop`; counts the events they receive.
pub fn watchers(
    driver: &Arc<Driver>,
    n: usize,
    stop: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    let driver = driver.clone();
    tokio::spawn(async move {
        let events = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..n {
            let (driver, events, failures) = (driver.clone(), events.clone(), failures.clone());
            tasks.push(tokio::spawn(async move {
                let member = &driver.county.members[i % driver.county.members.len()];
                let mut client =
                    GatewayServiceClient::new(driver.channels[i % driver.channels.len()].clone());
                let mut req = tonic::Request::new(gpb::WatchCommunityRequest {
                    community_id: member.community.clone(),
                    from_now: true,
                    ..Default::default()
                });
                if let Ok(v) = format!("Bearer {}", member.worker).parse() {
                    req.metadata_mut().insert("authorization", v);
                }
                match client.watch_community(req).await {
                    Ok(stream) => {
                        let mut stream = stream.into_inner();
                        loop {
                            match stream.message().await {
                                Ok(Some(_)) => {
                                    events.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(None) => break,
                                // A stream the server ended with an error counts as refused.
                                Err(_) => {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                            }
                        }
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        stop.notified().await;
        for t in &tasks {
            t.abort();
        }
        (
            events.load(Ordering::Relaxed),
            failures.load(Ordering::Relaxed),
        )
    })
}
