//! The `palisade` command: run a border instance, or check a configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade::service::ConfigSource;

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Inter-operator border element (IBCF + TrGW)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a border instance (without --config: the embedded loopback lab of operator A).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print the effective settings.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show how a call from the home core to a number, SIP URI or domain would be routed: the
    /// ENUM and RFC 3263 queries and records, the rules applied, the partner matched and the
    /// targets in order. Asks the configured name servers; changes nothing.
    Resolve {
        #[arg(long)]
        config: Option<PathBuf>,
        /// `+E164`, a SIP URI (`sip:+4930123456@operator-a.example;user=phone`) or a domain.
        target: String,
    },
    /// Ask a running instance (its admin listener) for its calls per partner, media paths and
    /// last reload.
    Status {
        /// The instance's configuration: its `[admin]` listen address and token are used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The admin listener's address, instead of the one the configuration names.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// Bearer token for an admin listener that requires one.
        #[arg(long)]
        token: Option<String>,
        /// Print the JSON document instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Certificates for TLS peering: make a key and certificate, a CA, or show one.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// A private key (PREFIX.key) and certificate (PREFIX.crt) for SIP domain D: the domain in
    /// subjectAltName as dNSName and sip: URI, server and client key usage.
    New {
        #[arg(long)]
        domain: String,
        #[arg(long)]
        out: PathBuf,
        /// Write a certificate request (PREFIX.csr) for your CA instead of a certificate.
        #[arg(long)]
        csr: bool,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// First day of validity, YYYY-MM-DD (default: now).
        #[arg(long)]
        valid_from: Option<String>,
        /// Sign with this CA certificate (with --issuer-key) instead of self-signing.
        #[arg(long, requires = "issuer_key")]
        issuer_cert: Option<PathBuf>,
        #[arg(long, requires = "issuer_cert")]
        issuer_key: Option<PathBuf>,
    },
    /// A CA key and certificate (PREFIX.key, PREFIX.crt) named NAME.
    Ca {
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Subject, identities, validity and the SHA-256 fingerprint a partner pins.
    Show { file: PathBuf },
}

fn cert(cmd: CertCommand) -> anyhow::Result<()> {
    use palisade::peering::cert;
    let written = match cmd {
        CertCommand::Show { file } => {
            print!("{}", cert::show(&file)?);
            return Ok(());
        }
        CertCommand::Ca { name, out, days } => cert::new_ca(&name, &out, days)?,
        CertCommand::New {
            domain,
            out,
            csr,
            days,
            valid_from,
            issuer_cert,
            issuer_key,
        } => cert::new_cert(&cert::NewCert {
            domain,
            out,
            csr,
            days,
            valid_from,
            issuer: issuer_cert.zip(issuer_key),
        })?,
    };
    for w in written {
        println!("wrote {}", w.display());
    }
    Ok(())
}

fn source(path: Option<&PathBuf>) -> ConfigSource {
    match path {
        Some(p) => ConfigSource::File(p.clone()),
        None => ConfigSource::Embedded,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Cert { command } => match cert(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("palisade cert: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Check { config } => match source(config.as_ref()).load() {
            Ok(cfg) => {
                print!("{}", cfg.describe());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Status {
            config,
            admin,
            token,
            json,
        } => {
            let cfg = match source(config.as_ref()).load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let addr = admin.unwrap_or(cfg.admin.listen);
            let token = token.or(cfg.admin.token.clone());
            match palisade::service::status::fetch(addr, token.as_deref()) {
                Ok(s) if json => {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(s) => {
                    print!("{}", palisade::service::status::describe(&s));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("palisade status: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Resolve { config, target } => {
            let cfg = match source(config.as_ref()).load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            match palisade::service::dns::explain(&cfg, &target) {
                Ok((text, found)) => {
                    print!("{text}");
                    if found {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("palisade resolve: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run { config } => {
            let source = source(config.as_ref());
            let cfg = match source.load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = palisade::service::logging::init(&cfg) {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(palisade::service::shard::count(&cfg).max(2))
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(palisade::service::run(cfg, source)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("palisade: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
