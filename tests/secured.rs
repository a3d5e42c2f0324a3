//! weir against secured services: the secured local stack (`cargo xtask
//! stack up --secure`: Kafka with SASL_SSL and mutual-TLS listeners only,
//! PostgreSQL taking TLS connections with a password only, the registry on
//! HTTPS with basic authentication, certificates from a local CA).
//!
//! The stack is proved secured first (a plaintext Kafka client, a
//! PostgreSQL connection without TLS and a registry request without
//! credentials are each refused), then the stock demo runs through it and
//! its results are compared with the SQL oracle; wrong credentials and
//! untrusted certificates must each stop weir with one error naming the
//! service and the setting; no secret may show in weir's logs or `--help`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use weir_tests::Stack;
use weir_tests::oracle::check_run;
use weir_tests::pipeline::{Scenario, demo_pipeline, terminate, wait_caught_up, weir_binary};

/// The catalog every pipeline test writes (seed 42), so tests agree on it.
const SEED: &str = "42";

/// The secured stack's passwords, read from its credentials folder.
fn passwords(stack: &Stack) -> Result<Vec<String>> {
    let ca = stack
        .env_value("WEIR_REGISTRY_CA")
        .context("the stack's CA")?;
    let dir = Path::new(ca).parent().context("the credentials folder")?;
    ["kafka", "kafka-admin", "postgres", "registry"]
        .iter()
        .map(|who| {
            let file = dir.join(format!("{who}.password"));
            Ok(std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .trim()
                .to_owned())
        })
        .collect()
}

#[test]
fn the_secured_stack_refuses_plaintext_and_anonymous_clients() -> Result<()> {
    let stack = Stack::secured()?;

    // Kafka: a client speaking plaintext to the SASL_SSL listener gets no metadata.
    let plaintext: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("socket.timeout.ms", "2000")
        .create()?;
    let answer = plaintext.fetch_metadata(None, Duration::from_secs(5));
    ensure!(
        answer.is_err(),
        "a plaintext Kafka client got metadata from the secured broker"
    );
    println!("plaintext Kafka client: {}", answer.unwrap_err());

    // PostgreSQL: the same user and password without TLS.
    let password = &passwords(&stack)?[2];
    let plain_url = stack
        .database_url
        .replace("sslmode=verify-full", "sslmode=disable");
    let tokio = tokio::runtime::Runtime::new()?;
    let refused = tokio.block_on(async {
        let options: sqlx::postgres::PgConnectOptions = plain_url.parse()?;
        let connected = sqlx::PgPool::connect_with(options.password(password)).await;
        anyhow::Ok(connected)
    })?;
    match refused {
        Ok(_) => bail!("PostgreSQL took a connection without TLS"),
        Err(error) => {
            println!("PostgreSQL without TLS: {error}");
            ensure!(
                error.to_string().contains("no encryption"),
                "refused for another reason: {error}"
            );
        }
    }

    // The registry: HTTPS with its CA, but no credentials.
    let registry = &stack.services.registry;
    let anonymous = tokio.block_on(async {
        let client = registry.client()?;
        anyhow::Ok(
            client
                .get(format!("{}/subjects", registry.url()))
                .send()
                .await?,
        )
    })?;
    ensure!(
        anonymous.status() == reqwest::StatusCode::UNAUTHORIZED,
        "the registry answered {} to a request without credentials",
        anonymous.status()
    );
    // And its plain-HTTP port does not exist: HTTP to it fails.
    let http_url = registry.url().replace("https://", "http://");
    let over_http = tokio.block_on(reqwest::get(format!("{http_url}/subjects")));
    ensure!(
        !over_http.is_ok_and(|response| response.status().is_success()),
        "the registry answered plain HTTP"
    );
    Ok(())
}

#[test]
fn the_demo_pipeline_through_the_secured_stack_equals_the_oracle() -> Result<()> {
    let run = Scenario::on(Stack::secured()?, "secured", 2)?;
    run.write_catalog(SEED)?;
    let pipeline = demo_pipeline(&run.dir, &run.names, "")?;
    let events = 20_000;
    let generator = run.start_generator(SEED, events, 0, 200);
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &[])?;
    let counts = generator.join().expect("the generator thread")?;
    ensure!(counts.events == events);
    let caught_up = wait_caught_up(
        &run.stack,
        &run.names.group(),
        &run.names.events,
        &mut weir,
        Duration::from_secs(180),
    )?;
    println!("{events} events over SASL_SSL, caught up {caught_up:.1?} after the generator");
    ensure!(terminate(&mut weir)?.success(), "weir stops cleanly");
    let sessions = check_run(&run.stack, &run.tokio, &run.names)?;
    ensure!(sessions as u64 == counts.sessions);
    println!(
        "{sessions} sessions in PostgreSQL (TLS) and on Kafka (Avro, HTTPS registry) = oracle"
    );

    // No password shows in what weir logged.
    let log = std::fs::read_to_string(run.dir.join("weir.log"))?;
    for password in passwords(&run.stack)? {
        ensure!(
            !log.contains(&password),
            "weir's log holds a password of the stack"
        );
    }
    Ok(())
}

#[test]
fn every_sasl_mechanism_and_mutual_tls_reach_the_broker() -> Result<()> {
    let stack = Stack::secured()?;
    let kafka_config = PathBuf::from(stack.env_value("WEIR_KAFKA_CONFIG").context("config")?);
    let mtls_config = kafka_config.with_file_name("client-mtls.properties");
    let weir_password = passwords(&stack)?[0].clone();
    let cases: [(&str, Vec<(&str, String)>); 4] = [
        ("SCRAM-SHA-512", vec![]),
        (
            "SCRAM-SHA-256",
            vec![("WEIR_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256".to_owned())],
        ),
        (
            "PLAIN",
            vec![
                ("WEIR_KAFKA_SASL_MECHANISM", "PLAIN".to_owned()),
                ("WEIR_KAFKA_SASL_PASSWORD", weir_password),
            ],
        ),
        (
            "mutual TLS",
            vec![("WEIR_KAFKA_CONFIG", mtls_config.display().to_string())],
        ),
    ];
    for (what, env) in cases {
        let topic = weir_tests::unique("secured_generate");
        let mut command = weir_command(&stack, &["generate", "--rate", "0", "--count", "100"]);
        command.args(["--topic", &topic]);
        if what == "mutual TLS" {
            // The listener is named by the mutual-TLS file's `bootstrap.servers`.
            command.env_remove("WEIR_BOOTSTRAP");
        }
        let output = command.envs(env).output()?;
        ensure!(
            output.status.success(),
            "{what}: weir generate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        println!("{what}: 100 events written");
    }
    Ok(())
}

/// The weir binary with the secured stack's environment and `args`.
fn weir_command(stack: &Stack, args: &[&str]) -> Command {
    let mut command = Command::new(weir_binary().expect("the weir binary"));
    command
        .args(args)
        .envs(stack.env.iter().map(|(name, value)| (name, value)))
        .env("WEIR_LOG_FORMAT", "json")
        .stdin(Stdio::null());
    command
}

#[test]
fn wrong_credentials_and_untrusted_certificates_stop_weir_with_one_clear_error() -> Result<()> {
    let stack = Stack::secured()?;
    let dir = std::env::temp_dir().join(weir_tests::unique("secured_refusals"));
    std::fs::create_dir_all(&dir)?;
    let names = weir_tests::pipeline::Names::fresh("refused");
    let pipeline = demo_pipeline(&dir, &names, "")?;
    // Distinctive wrong secrets: none may show in what weir prints.
    let wrong_kafka = "wrong-kafka-secret-7f3a9c";
    let wrong_file_secret = "wrong-file-secret-2b8d41";
    let wrong = dir.join("wrong.password");
    std::fs::write(&wrong, format!("{wrong_file_secret}\n"))?;
    let mut secrets = passwords(&stack)?;
    secrets.extend([wrong_kafka.to_owned(), wrong_file_secret.to_owned()]);
    let wrong = wrong.display().to_string();
    // A certificate, but not of the CA that signed the services'.
    let ca = stack.env_value("WEIR_REGISTRY_CA").context("the CA")?;
    let not_the_ca = Path::new(ca)
        .with_file_name("client.pem")
        .display()
        .to_string();
    let untrusting_url = stack.database_url.replace(ca, &not_the_ca);
    let cases = [
        (
            "Kafka password",
            vec![("WEIR_KAFKA_SASL_PASSWORD", wrong_kafka.to_owned())],
            "Kafka refused weir",
            "sasl.password",
        ),
        (
            "Kafka CA",
            vec![("WEIR_KAFKA_SSL_CA_LOCATION", not_the_ca.clone())],
            "Kafka refused weir",
            "ssl.ca.location",
        ),
        (
            "PostgreSQL password",
            vec![("WEIR_DATABASE_PASSWORD_FILE", wrong.clone())],
            "PostgreSQL refused weir",
            "WEIR_DATABASE_PASSWORD",
        ),
        (
            "PostgreSQL CA",
            vec![("WEIR_DATABASE_URL", untrusting_url)],
            "PostgreSQL refused weir",
            "sslrootcert",
        ),
        (
            "registry password",
            vec![("WEIR_REGISTRY_PASSWORD_FILE", wrong.clone())],
            "the schema registry refused weir",
            "WEIR_REGISTRY_USER",
        ),
        (
            "registry CA",
            vec![("WEIR_REGISTRY_CA", not_the_ca.clone())],
            "the schema registry refused weir",
            "WEIR_REGISTRY_CA",
        ),
    ];
    for (what, env, refusal, setting) in cases {
        let started = Instant::now();
        let mut child = weir_command(&stack, &["run"])
            .arg(&pipeline)
            .args(["--admin-addr", "127.0.0.1:0"])
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                terminate(&mut child)?;
                bail!("{what}: weir was still running after 60 s (a retry loop?)");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().context("stderr")?, &mut stderr)?;
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|line| {
                line.contains(r#""level":"ERROR""#) && line.contains(r#""target":"weir""#)
            })
            .collect();
        ensure!(!status.success(), "{what}: weir exited {status}");
        for secret in &secrets {
            ensure!(
                !stderr.contains(secret.as_str()),
                "{what}: weir printed a secret it was given"
            );
        }
        ensure!(
            errors.len() == 1 && errors[0].contains(refusal) && errors[0].contains(setting),
            "{what}: expected one error naming `{refusal}` and `{setting}`, got: {errors:#?}"
        );
        println!(
            "{what}: exit {status} after {:.1?}: {}",
            started.elapsed(),
            errors[0]
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn help_and_logs_show_no_secret() -> Result<()> {
    let stack = Stack::secured()?;
    let secrets = [
        ("WEIR_KAFKA_SASL_PASSWORD", "kafka-secret-in-env"),
        ("WEIR_DATABASE_PASSWORD", "database-secret-in-env"),
        ("WEIR_REGISTRY_PASSWORD", "registry-secret-in-env"),
        ("WEIR_ADMIN_TOKEN", "admin-token-in-env"),
    ];
    let url_secret = "url-secret-in-env";
    for command in [&["run", "--help"][..], &["generate", "--help"][..]] {
        let output = weir_command(&stack, command)
            .envs(secrets)
            .env(
                "WEIR_DATABASE_URL",
                format!("postgres://weir:{url_secret}@127.0.0.1:5433/weir"),
            )
            .output()?;
        ensure!(
            output.status.success(),
            "`weir {}` failed",
            command.join(" ")
        );
        let text = String::from_utf8_lossy(&output.stdout);
        for secret in secrets.iter().map(|(_, value)| *value).chain([url_secret]) {
            ensure!(
                !text.contains(secret),
                "`weir {}` prints a secret of the environment",
                command.join(" ")
            );
        }
    }
    Ok(())
}
