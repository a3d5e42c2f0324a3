//! PostgreSQL 15 from the machine's Debian binaries: a throwaway cluster in
//! the state folder, a `weir` role, a `weir` database and the registry's database.
//! Secured, it takes TCP connections over TLS with a password only (its
//! `pg_hba.conf` rejects any other), and the `weir` role's password is the
//! secured stack's.

use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::unistd::{Uid, User, chown};

use super::process::ProcessSlot;
use super::tools;
use super::{Dirs, Profile, Service};

pub const USER: &str = "weir";
pub const PASSWORD: &str = "weir";
pub const DATABASE: &str = "weir";
/// The schema registry keeps its schemas here.
pub const REGISTRY_DATABASE: &str = "registry";
/// The major version the stack looks for first.
const PREFERRED_MAJOR: &str = "15";

pub struct Postgres {
    slot: ProcessSlot,
    /// Holds the cluster's data and socket folders.
    cluster_dir: PathBuf,
    profile: Profile,
}

impl Postgres {
    pub fn new(dirs: &Dirs) -> Self {
        let slot_dir = dirs.state.join("postgres");
        let cluster_dir = if reachable_by_cluster_owner(&dirs.state) {
            slot_dir
        } else {
            // Running as root in a folder the `postgres` account cannot enter
            // (under /root, or a private temporary folder): the cluster goes
            // to a world-traversable place, one per state folder.
            let mut hasher = std::hash::DefaultHasher::new();
            dirs.state.hash(&mut hasher);
            PathBuf::from(format!("/var/tmp/weir-postgres-{:016x}", hasher.finish()))
        };
        Self {
            // The data folder is on the server's command line: it tells our
            // postmaster from any other process that might reuse its PID.
            slot: ProcessSlot::with_marker(
                "postgres",
                &dirs.state,
                cluster_dir.join("data").display().to_string(),
            ),
            cluster_dir,
            profile: dirs.profile.clone(),
        }
    }

    fn port(&self) -> u16 {
        self.profile.postgres_port()
    }

    /// The secured cluster's certificate, key and `pg_hba.conf`, copied where
    /// the server's account owns them (PostgreSQL refuses a key others can read).
    fn tls_dir(&self) -> PathBuf {
        self.cluster_dir.join("tls")
    }

    fn write_tls_files(&self, credentials: &super::secured::Credentials) -> Result<()> {
        let dir = self.tls_dir();
        fs::create_dir_all(&dir)?;
        fs::copy(credentials.server_cert(), dir.join("server.pem"))?;
        fs::copy(credentials.server_key(), dir.join("server.key"))?;
        fs::set_permissions(dir.join("server.key"), fs::Permissions::from_mode(0o600))?;
        fs::write(
            dir.join("pg_hba.conf"),
            "# Written by `cargo xtask stack up --secure`.\n\
             # The administrator, on the cluster's own socket.\n\
             local all postgres trust\n\
             # Everyone else: TCP, TLS, a password.\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             host all all 0.0.0.0/0 reject\n",
        )?;
        if let Some(owner) = cluster_owner()? {
            for file in ["", "server.pem", "server.key", "pg_hba.conf"] {
                chown(&dir.join(file), Some(owner.uid), Some(owner.gid))?;
            }
        }
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.cluster_dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.cluster_dir.join("socket")
    }

    /// A command that runs one of PostgreSQL's programs as the account that
    /// owns the cluster: PostgreSQL refuses to run as root, so when we are
    /// root the server and its tools run as the `postgres` account.
    fn pg_command(&self, program: &str) -> Result<Command> {
        let mut command = Command::new(bin_dir()?.join(program));
        if let Some(owner) = cluster_owner()? {
            command.uid(owner.uid.as_raw()).gid(owner.gid.as_raw());
        }
        Ok(command)
    }

    fn init_cluster(&self) -> Result<()> {
        if self.data_dir().join("PG_VERSION").exists() {
            return Ok(());
        }
        println!(
            "postgres: creating a cluster in {}",
            self.data_dir().display()
        );
        if self.cluster_dir != self.slot.dir() {
            println!(
                "postgres: the `postgres` account cannot enter the state folder, so the \
                 cluster lives in {} (its PID file and log stay in the state folder)",
                self.cluster_dir.display()
            );
        }
        for dir in [
            self.slot.dir().to_path_buf(),
            self.data_dir(),
            self.socket_dir(),
        ] {
            fs::create_dir_all(&dir)?;
        }
        fs::set_permissions(self.data_dir(), fs::Permissions::from_mode(0o700))?;
        if let Some(owner) = cluster_owner()? {
            for dir in [self.data_dir(), self.socket_dir()] {
                chown(&dir, Some(owner.uid), Some(owner.gid))
                    .with_context(|| format!("cannot give {} to `postgres`", dir.display()))?;
            }
        }
        let password_file = self.cluster_dir.join("initdb-password");
        fs::write(&password_file, PASSWORD)?;
        fs::set_permissions(&password_file, fs::Permissions::from_mode(0o644))?;
        let result = tools::run(
            self.pg_command("initdb")?
                .arg("--pgdata")
                .arg(self.data_dir())
                .args(["--username=postgres", "--encoding=UTF8", "--no-locale"])
                // Local socket connections are the administrator's; TCP needs a password.
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", password_file.display())),
            "initdb",
        );
        fs::remove_file(&password_file).ok();
        result.map(drop)
    }

    /// Creates the `weir` role and databases if they do not exist yet, and
    /// sets the role's password.
    fn create_role_and_databases(&self) -> Result<()> {
        let password = password(&self.profile)?;
        let script = format!(
            "SELECT 'CREATE ROLE {USER} LOGIN PASSWORD ''{PASSWORD}'''\n\
               WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{USER}')\\gexec\n\
             SELECT 'CREATE DATABASE {DATABASE} OWNER {USER}'\n\
               WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n\
             SELECT 'CREATE DATABASE {REGISTRY_DATABASE} OWNER {USER}'\n\
               WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{REGISTRY_DATABASE}')\\gexec\n\
             -- Reading row changes from the log (the freshness benchmark does).\n\
             ALTER ROLE {USER} REPLICATION PASSWORD '{password}';\n"
        );
        let script_file = self.cluster_dir.join("setup.sql");
        super::secured::write_private(&script_file, &script)?;
        if let Some(owner) = cluster_owner()? {
            chown(&script_file, Some(owner.uid), Some(owner.gid))?;
        }
        let result = tools::run(
            self.pg_command("psql")?
                .arg("--host")
                .arg(self.socket_dir())
                .args([
                    "--port",
                    &self.port().to_string(),
                    "--username=postgres",
                    "--dbname=postgres",
                ])
                .args(["--quiet", "--no-psqlrc", "--set=ON_ERROR_STOP=1"])
                .arg("--file")
                .arg(&script_file),
            "creating the weir role and databases",
        );
        fs::remove_file(&script_file).ok();
        result.map(drop)
    }
}

impl Service for Postgres {
    fn slot(&self) -> &ProcessSlot {
        &self.slot
    }

    fn ports(&self) -> Vec<u16> {
        vec![self.port()]
    }

    fn endpoint(&self) -> String {
        let port = self.port();
        match self.profile.credentials() {
            None => format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"),
            // The password is apart (WEIR_DATABASE_PASSWORD_FILE).
            Some(credentials) => format!(
                "postgres://{USER}@127.0.0.1:{port}/{DATABASE}?sslmode=verify-full&sslrootcert={}",
                credentials.ca().display()
            ),
        }
    }

    fn describe(&self) -> String {
        let version = bin_dir()
            .ok()
            .and_then(|dir| Some(dir.parent()?.file_name()?.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "?".to_owned());
        let tls = match self.profile.credentials() {
            None => "",
            Some(_) => ", TLS and a password only",
        };
        format!("PostgreSQL {version}, role and database `{DATABASE}`{tls}")
    }

    fn prepare(&self) -> Result<()> {
        self.init_cluster()?;
        match self.profile.credentials() {
            Some(credentials) => self.write_tls_files(credentials),
            None => Ok(()),
        }
    }

    fn command(&self) -> Result<Command> {
        let mut command = self.pg_command("postgres")?;
        command
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                &self.port().to_string(),
            ])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.socket_dir().display()
            ))
            .args(["-c", "max_connections=200"])
            // Room for a pipeline's working set: with the default 128 MB a
            // steady stream of upserts has backends evicting dirty pages
            // themselves.
            .args(["-c", "shared_buffers=1GB"])
            // Row changes can be read from the log (the freshness benchmark
            // reads each row version's commit time so, measuring without
            // adding work to the statements it measures).
            .args(["-c", "wal_level=logical"]);
        if self.profile.credentials().is_some() {
            let tls = self.tls_dir();
            command
                .args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    tls.join("server.pem").display()
                ))
                .arg("-c")
                .arg(format!("ssl_key_file={}", tls.join("server.key").display()))
                .arg("-c")
                .arg(format!("hba_file={}", tls.join("pg_hba.conf").display()));
        }
        Ok(command)
    }

    fn probe(&self) -> std::result::Result<String, String> {
        let output = Command::new(bin_dir().map_err(|e| e.to_string())?.join("pg_isready"))
            .args([
                "--host=127.0.0.1",
                &format!("--port={}", self.port()),
                "--timeout=1",
            ])
            .output()
            .map_err(|error| error.to_string())?;
        if output.status.success() {
            Ok("accepting connections".to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
    }

    fn on_ready(&self) -> Result<()> {
        self.create_role_and_databases()
    }

    /// SIGINT is PostgreSQL's "fast" shutdown: sessions end, data is flushed.
    fn stop_signal(&self) -> Signal {
        Signal::SIGINT
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// The `weir` role's password in the stack `profile` picks.
pub fn password(profile: &Profile) -> Result<String> {
    match profile.credentials() {
        None => Ok(PASSWORD.to_owned()),
        Some(credentials) => credentials.password("postgres"),
    }
}

/// The JDBC URL of `database` in the stack `profile` picks (for the registry).
pub fn jdbc_url(profile: &Profile, database: &str) -> String {
    let url = format!(
        "jdbc:postgresql://127.0.0.1:{}/{database}",
        profile.postgres_port()
    );
    match profile.credentials() {
        None => url,
        Some(credentials) => format!(
            "{url}?sslmode=verify-full&sslrootcert={}",
            credentials.ca().display()
        ),
    }
}

/// `psql`, for the demo's summary.
pub fn psql() -> Result<PathBuf> {
    Ok(bin_dir()?.join("psql"))
}

/// PostgreSQL's server programs: `$WEIR_PG_BIN`, else Debian's
/// `/usr/lib/postgresql/<major>/bin`, version 15 first, else the newest.
fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = PathBuf::from("/usr/lib/postgresql");
    let preferred = root.join(PREFERRED_MAJOR).join("bin");
    if preferred.join("initdb").is_file() {
        return Ok(preferred);
    }
    let mut majors: Vec<(u32, PathBuf)> = fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    majors.sort();
    match majors.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL's server programs were not found in /usr/lib/postgresql/*/bin. Install \
             them (on Debian: `apt-get install postgresql-15`) or set WEIR_PG_BIN to the folder \
             holding initdb and postgres."
        ),
    }
}

/// True unless we are root and the `postgres` account cannot enter `dir`
/// (every folder above it needs search permission for that account).
fn reachable_by_cluster_owner(dir: &std::path::Path) -> bool {
    let Ok(Some(owner)) = cluster_owner() else {
        return true;
    };
    Command::new("test")
        .arg("-x")
        .arg(dir)
        .uid(owner.uid.as_raw())
        .gid(owner.gid.as_raw())
        .status()
        .is_ok_and(|status| status.success())
}

/// The account the cluster runs as when we are root (`postgres`); `None`
/// when we are not root and run it as ourselves.
fn cluster_owner() -> Result<Option<User>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres")? {
        Some(user) => Ok(Some(user)),
        None => bail!(
            "running as root, but there is no `postgres` account to run PostgreSQL as \
             (PostgreSQL refuses to run as root). Create one (`useradd --system postgres`) \
             or run the stack as an ordinary user."
        ),
    }
}
