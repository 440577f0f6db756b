//! `svcops up`: all four offices in one process, SQLite stores and the embedded bus under
//! one data directory, one gRPC port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use svcops_bus::{Bus, EmbeddedBus};
use svcops_eventstore::read_model::ReadModels;
use svcops_eventstore::{EventStore, PersonalDataKeys, PersonalDataSecret, SqliteStore};
use svcops_kit::auth::Authenticator;
use svcops_kit::server::{BusDependency, Dependency, StoreDependency};
use svcops_kit::service::{Office, Ports};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;

/// File holding the embedded cluster's token secret.
const SECRET_FILE: &str = "token-secret";
/// File holding the secret the front office's personal-data keys are protected with
/// (cluster mode: `SVCOPS_PERSONAL_DATA_SECRET`). Outside the database on purpose: a copy of
/// `front-office.db` alone reveals no phone, not even of customers erased later.
pub const PERSONAL_DATA_SECRET_FILE: &str = "personal-data-secret";

/// Where `svcops up` keeps its data, and where the CLI looks for it, unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./svcops-data";
/// Where `svcops up` serves, and where the CLI calls, unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7400";

/// The global CLI options a command needs to reach this embedded svcops: none with the
/// defaults, else `--data-dir` (absolute, so it works from any directory) and/or `--addr`.
fn cli_options(data_dir: &Path, address: SocketAddr) -> String {
    let mut options = String::new();
    if data_dir != Path::new(DEFAULT_DATA_DIR) {
        let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        options.push_str(" --data-dir ");
        options.push_str(&shell_quoted(&absolute.to_string_lossy()));
    }
    if address.to_string() != DEFAULT_LISTEN {
        options.push_str(&format!(" --addr http://{address}"));
    }
    options
}

/// `text` as one shell word.
fn shell_quoted(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-:+=,@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Reads the data directory's token secret, creating it (owner-only) on first use.
pub fn secret(data_dir: &Path, create: bool) -> anyhow::Result<String> {
    read_or_create_secret(data_dir, SECRET_FILE, create)
}

fn read_or_create_secret(data_dir: &Path, file: &str, create: bool) -> anyhow::Result<String> {
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(secret) => Ok(secret.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
            // 32 random bytes, hex: 64 characters.
            let secret: String = svcops_kit::personal_data::new_key()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            write_private(&path, &secret)?;
            Ok(secret)
        }
        Err(error) => Err(error).with_context(|| {
            format!(
                "cannot read {} (is an embedded svcops using this data directory? `svcops up --data-dir {}`)",
                path.display(),
                data_dir.display()
            )
        }),
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

async fn start<O: Office>(
    data_dir: &Path,
    bus: Arc<dyn Bus>,
    backpressure: svcops_bus::lag::Backpressure,
    shutdown: &CancellationToken,
    stores: &mut Vec<Arc<dyn EventStore>>,
) -> anyhow::Result<O> {
    let path: PathBuf = data_dir.join(format!("{}.db", O::NAME));
    let sqlite = SqliteStore::open(&path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let keys: Option<Arc<dyn PersonalDataKeys>> = if O::HOLDS_PERSONAL_DATA {
        let secret_path = data_dir.join(PERSONAL_DATA_SECRET_FILE);
        let secret = read_or_create_secret(data_dir, PERSONAL_DATA_SECRET_FILE, true)?;
        let secret = PersonalDataSecret::new(secret.as_bytes())
            .with_context(|| secret_path.display().to_string())?;
        Some(Arc::new(
            sqlite.personal_data_keys(secret).await.with_context(|| {
                format!(
                    "cannot open the personal data keys in {} with {}",
                    path.display(),
                    secret_path.display()
                )
            })?,
        ))
    } else {
        None
    };
    let read_models: Arc<dyn ReadModels> = Arc::new(sqlite.clone());
    let store: Arc<dyn EventStore> = Arc::new(sqlite);
    stores.push(store.clone());
    O::start(
        Ports {
            store,
            read_models,
            keys,
            bus,
            backpressure,
        },
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("cannot start {}", O::NAME))
}

/// Runs the embedded cluster until `shutdown`, with Prometheus metrics on `metrics_listen`
/// if given.
pub async fn run(
    data_dir: &Path,
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    backpressure: svcops_bus::lag::Backpressure,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let secret = secret(data_dir, true)?;
    let authenticator = Authenticator::new(secret.as_bytes())?;
    // First, so the offices' relays and consumers record from their first event on.
    let metrics = match metrics_listen {
        Some(address) => Some(svcops_kit::metrics::spawn(address, shutdown.clone()).await?),
        None => None,
    };
    let bus_path = data_dir.join("bus.db");
    let bus: Arc<dyn Bus> = Arc::new(
        EmbeddedBus::open(&bus_path)
            .await
            .with_context(|| format!("cannot open {}", bus_path.display()))?,
    );
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let mut stores = Vec::new();
    let front: front_office::FrontOffice =
        start(data_dir, bus.clone(), backpressure, &shutdown, &mut stores).await?;
    let middle: middle_office::MiddleOffice =
        start(data_dir, bus.clone(), backpressure, &shutdown, &mut stores).await?;
    let back: back_office::BackOfficeOffice =
        start(data_dir, bus.clone(), backpressure, &shutdown, &mut stores).await?;
    let listen_in: listen_in::ListenIn =
        start(data_dir, bus.clone(), backpressure, &shutdown, &mut stores).await?;
    let mut routes = RoutesBuilder::default();
    front.add_routes(&mut routes, &authenticator);
    middle.add_routes(&mut routes, &authenticator);
    back.add_routes(&mut routes, &authenticator);
    listen_in.add_routes(&mut routes, &authenticator);
    let services = [
        front_office::FrontOffice::service_names(),
        middle_office::MiddleOffice::service_names(),
        back_office::BackOfficeOffice::service_names(),
        listen_in::ListenIn::service_names(),
    ]
    .concat();
    let mut dependencies: Vec<Arc<dyn Dependency>> = stores
        .into_iter()
        .map(|store| Arc::new(StoreDependency(store)) as Arc<dyn Dependency>)
        .collect();
    dependencies.push(Arc::new(BusDependency(bus)));
    let address = listener.local_addr()?;
    println!(
        "svcops is running on http://{address} (data in {})",
        data_dir.display()
    );
    if let Some(metrics) = &metrics {
        println!("metrics on http://{}/metrics", metrics.address);
    }
    println!(
        "try: svcops{} case open --phone +8613800001234 --category repair --summary \"lamp flickers\"",
        cli_options(data_dir, address)
    );
    let served = svcops_kit::server::serve(
        routes.routes(),
        services,
        dependencies,
        &authenticator,
        listener,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    front.stopped().await;
    middle.stopped().await;
    back.stopped().await;
    listen_in.stopped().await;
    if let Some(metrics) = metrics {
        metrics.stopped().await;
    }
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_try_line_names_what_is_not_the_default() {
        let default: SocketAddr = DEFAULT_LISTEN.parse().expect("address");
        assert_eq!(cli_options(Path::new(DEFAULT_DATA_DIR), default), "");
        let other: SocketAddr = "127.0.0.1:9999".parse().expect("address");
        assert_eq!(
            cli_options(Path::new("/srv/svc ops"), other),
            " --data-dir '/srv/svc ops' --addr http://127.0.0.1:9999"
        );
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
    }
}
