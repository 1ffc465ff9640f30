//! The stack under load, as its own processes: its settings file, its tenants seeded in the
//! store before it starts, the processes (`engageninja`, or `dispatcher` and `admin-api`) with
//! their logs, and the provider simulator when it stands in for Twilio and SES.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use common::config::Settings;
use common::credentials::Keyring;
use common::store::{NumberStatus, SenderKind, SenderNumber, Store, Tenant, TenantStatus};
use common::{Channel, PhoneNumber, TenantId};
use load::simulator::ses::{CERT_PATH, DEFAULT_TOPIC_ARN};
use load::simulator::{RunningSimulator, SesSimConfig, Simulator, SimulatorConfig};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use tokio::process::{Child, Command};

use super::{ProviderChoice, RunArgs, Target};

/// How long a process may take to answer `/readyz` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// One process of the stack.
pub(super) struct Process {
    /// Its binary's name.
    pub name: &'static str,
    /// Its pid, for `/proc`.
    pub pid: u32,
    /// Where its `/metrics`, `/healthz` and `/readyz` are.
    pub ops_url: String,
    child: Child,
}

/// A tenant of the run: its id and, with the HTTP target, its API key.
pub(super) struct RunTenant {
    /// The tenant's id.
    pub id: String,
    /// Its API key (HTTP target only).
    pub key: Option<String>,
}

/// The running stack.
pub(super) struct Stack {
    /// The settings every process of the stack reads (and this one, to reach the store).
    pub settings: Settings,
    /// The admin API's base URL.
    pub admin_url: String,
    /// The processes, dispatcher first.
    pub processes: Vec<Process>,
    /// The provider simulator, when it stands in for Twilio and SES.
    pub simulator: Option<RunningSimulator>,
    /// The tenants, in the order the traffic ranks them.
    pub tenants: Vec<RunTenant>,
}

/// A free port on 127.0.0.1 (bound and released: another process could take it meanwhile, which
/// the stack's start would then report).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The binaries built beside this one (`cargo build --release` builds them all).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("where is this binary")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} is missing: build the workspace's binaries (cargo build --release) so that {name} sits beside load",
            path.display()
        );
    }
    Ok(path)
}

impl Stack {
    /// Writes the settings into `out`, starts the simulator if asked, seeds the tenants and
    /// starts the processes; answers once every process is ready.
    pub(super) async fn start(args: &RunArgs, run: &str, out: &Path, work: &Path) -> anyhow::Result<Self> {
        let admin_port = free_port()?;
        let ops_port = free_port()?;
        let admin_ops_port = free_port()?;
        let admin_ops_url = format!("http://127.0.0.1:{admin_ops_port}");
        let admin_url = format!("http://127.0.0.1:{admin_port}");
        let simulator = match args.provider {
            ProviderChoice::Demo => None,
            ProviderChoice::Simulator => Some(
                Simulator::start(SimulatorConfig {
                    rate_per_sender: args.sender_rate,
                    concurrency: 100_000,
                    ses: SesSimConfig {
                        sns_endpoint: Some(format!("{admin_url}/webhooks/ses").parse()?),
                        ..SesSimConfig::default()
                    },
                    ..SimulatorConfig::default()
                })
                .await
                .context("starting the provider simulator")?,
            ),
        };
        let key_file = work.join("credential-keys");
        std::fs::write(
            &key_file,
            format!("k1:{}\n", common::credentials::generate_key().expose_secret()),
        )?;
        let config = out.join("engageninja.toml");
        std::fs::write(
            &config,
            settings_toml(
                args,
                run,
                work,
                &key_file,
                [admin_port, admin_ops_port, ops_port],
                simulator.as_ref(),
            ),
        )?;
        let settings = Settings::load(Some(&config)).context("the run's settings")?;

        let keyring = Keyring::parse(&SecretString::from(
            std::fs::read_to_string(&key_file)?.trim().to_owned(),
        ))?;
        let store = common::backends::open_store(&settings)
            .await
            .context("opening the store to seed the tenants")?;
        let tenants = seed(args, store.as_ref(), &keyring).await?;
        drop(store);

        let mut processes = Vec::new();
        let binaries: &[(&'static str, String)] = match args.target {
            Target::Http => &[("engageninja", admin_ops_url)],
            Target::Kafka => &[
                ("dispatcher", format!("http://127.0.0.1:{ops_port}")),
                ("admin-api", admin_ops_url),
            ],
        };
        for (name, ops_url) in binaries {
            processes.push(Process::spawn(name, ops_url, &config, out).await?);
        }
        Ok(Self {
            settings,
            admin_url,
            processes,
            simulator,
            tenants,
        })
    }

    /// Stops every process (SIGTERM, as an operator would), waits for each, and answers the
    /// simulator's final statistics.
    pub(super) async fn stop(self) -> anyhow::Result<Option<load::simulator::SimulatorStats>> {
        for mut process in self.processes {
            process.stop().await?;
        }
        match self.simulator {
            Some(simulator) => Ok(Some(simulator.shutdown().await?)),
            None => Ok(None),
        }
    }
}

impl Process {
    async fn spawn(name: &'static str, ops_url: &str, config: &Path, out: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(out.join(format!("{name}.log")))?;
        let child = Command::new(sibling_binary(name)?)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("the process has a pid")?;
        let mut process = Self {
            name,
            pid,
            ops_url: ops_url.to_owned(),
            child,
        };
        process.wait_ready(out).await?;
        Ok(process)
    }

    async fn wait_ready(&mut self, out: &Path) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited while starting ({status}); its log: {}",
                    self.name,
                    out.join(format!("{}.log", self.name)).display()
                );
            }
            let ready = client
                .get(format!("{}/readyz", self.ops_url))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} was not ready after {START_TIMEOUT:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then waits for the process to finish what it holds and exit.
    async fn stop(&mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await?;
        if !status.success() {
            bail!("could not signal {} ({})", self.name, self.pid);
        }
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .with_context(|| format!("{} did not stop within 60 s", self.name))??;
        if !exit.success() {
            bail!("{} stopped with {exit}", self.name);
        }
        Ok(())
    }
}

/// The settings file of the run: every process of the stack and this one read it.
fn settings_toml(
    args: &RunArgs,
    run: &str,
    work: &Path,
    key_file: &Path,
    [admin_port, admin_ops_port, ops_port]: [u16; 3],
    simulator: Option<&RunningSimulator>,
) -> String {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let mut toml = format!(
        r#"# Written by `load run` for run {run}.
data_dir = "{data}"

[admin]
listen = "127.0.0.1:{admin_port}"
ops_listen = "127.0.0.1:{admin_ops_port}"
public_url = "http://127.0.0.1:{admin_port}"

[dispatcher]
ops_listen = "127.0.0.1:{ops_port}"

[telemetry]
filter = "warn"

[demo]
bootstrap = false

[onboarding]
background_runner = false

[credentials]
key_file = "{keys}"
"#,
        data = work.join("data").display(),
        keys = key_file.display(),
    );
    if args.target == Target::Kafka {
        toml.push_str(&format!(
            r#"
[log]
backend = "kafka"

[log.kafka]
bootstrap_servers = "{kafka}"
topic_prefix = "{run}."

[store]
backend = "cassandra"

[store.cassandra]
contact_points = ["{cassandra}"]
keyspace = "{keyspace}"
replication_factor = 1
"#,
            kafka = env("ENGAGENINJA_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            cassandra = env("ENGAGENINJA_CASSANDRA_CONTACT", "127.0.0.1:19042"),
            keyspace = run.replace('-', "_"),
        ));
    }
    if let Some(simulator) = simulator {
        let url = simulator.base_url();
        toml.push_str(&format!(
            r#"
[providers.twilio]
api_url = "{url}"
trusthub_url = "{url}"
messaging_url = "{url}"
content_url = "{url}"

[providers.ses]
endpoint = "{url}"
sns_topic_arns = ["{DEFAULT_TOPIC_ARN}"]
sns_cert_url = "{url}{CERT_PATH}"
"#
        ));
    }
    toml
}

/// The tenants' names, `t000`, `t001`, ... in the order the traffic ranks them.
pub(super) fn tenant_names(count: usize) -> Vec<String> {
    (0..count).map(|n| format!("t{n:03}")).collect()
}

/// Creates the tenants with their numbers (and, for live tenants, sealed credentials of the
/// simulator's accounts and an approved brand); with the HTTP target, an API key each.
async fn seed(args: &RunArgs, store: &dyn Store, keyring: &Keyring) -> anyhow::Result<Vec<RunTenant>> {
    let now = OffsetDateTime::now_utc();
    let mut tenants = Vec::new();
    for (index, name) in tenant_names(usize::from(args.tenants)).into_iter().enumerate() {
        let id = TenantId::parse(name.clone())?;
        let mut numbers = Vec::new();
        for n in 0..args.senders {
            numbers.push(number(
                &id,
                index,
                usize::from(n),
                SenderKind::LongCode,
                args.sender_rate,
            )?);
        }
        numbers.push(number(&id, index, 9_999, SenderKind::Whatsapp, args.sender_rate)?);
        match args.provider {
            ProviderChoice::Demo => {
                store
                    .create_tenant(&Tenant {
                        id: id.clone(),
                        name: name.clone(),
                        is_demo: true,
                        status: TenantStatus::Active,
                        plan_id: None,
                        created_by: Some("load".to_owned()),
                        created_at: now,
                    })
                    .await?;
                for number in &numbers {
                    store.put_sender_number(number).await?;
                }
            }
            ProviderChoice::Simulator => {
                load::fixtures::live_twilio_tenant(store, keyring, &id, &[Channel::Sms, Channel::Whatsapp], &numbers)
                    .await?;
                load::fixtures::live_ses_channel(store, keyring, &id).await?;
            }
        }
        let key = match args.target {
            Target::Http => Some(admin_api::auth::create_api_key(store, &id).await?.secret),
            Target::Kafka => None,
        };
        tenants.push(RunTenant { id: name, key });
    }
    Ok(tenants)
}

/// Sender `n` of tenant `index`: `+1 2XX 555 NNNN`, at `rate` messages (cells) per second.
fn number(tenant: &TenantId, index: usize, n: usize, kind: SenderKind, rate: f64) -> anyhow::Result<SenderNumber> {
    Ok(SenderNumber {
        tenant_id: tenant.clone(),
        number: PhoneNumber::parse(format!("+1{:03}555{n:04}", 200 + index))?,
        kind,
        status: NumberStatus::Active,
        twilio_sid: None,
        rate_per_second: Some(rate),
        created_at: OffsetDateTime::now_utc(),
        registration: None,
    })
}
