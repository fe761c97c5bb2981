//! The `tgp` command: key generation, config checking, and bringing the
//! tunnel up, inspecting it and taking it down.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use tgp_adapters::{mss_for_mtu, IpVersion, RuleProtocol};
use tgp_proto::DeliveryClass;
use tgp_tunnel::config::{Config, Peer, RouteTable};
use tgp_tunnel::keys;
use tgp_units::format_duration;

/// tgp: an IP tunnel for lossy links.
///
/// `tgp up FILE` creates the interface, its routes (a full tunnel for
/// 0.0.0.0/0 and ::/0), DNS and NAT as the config says, and runs the
/// tunnel in the foreground; `tgp down` (or SIGTERM) undoes all of it.
/// `tgp reload` (or SIGHUP) applies an edited config without dropping
/// the sessions of unchanged peers. As a service: `systemctl start
/// tgp@NAME` runs `tgp up /etc/tgp/NAME.toml`.
#[derive(Parser)]
#[command(name = "tgp", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a new private key (base64 Ed25519 seed).
    Genkey {
        /// Write the key to this file (created with mode 0600; an existing
        /// file is never overwritten) instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the public key of a private key file ("-" reads standard input).
    Pubkey {
        /// The private key file.
        file: PathBuf,
    },
    /// Validate a config file and print what it sets up.
    Check {
        /// The config file.
        config: PathBuf,
    },
    /// Bring the tunnel up in the foreground (Ctrl-C or `tgp down` stops
    /// it and removes the interface). Log level from RUST_LOG (default
    /// info).
    Up {
        /// The config file.
        config: PathBuf,
        /// The control socket (default: /run/tgp/<interface>.sock, or
        /// /run/tgp/net-<inode>/<interface>.sock outside the host's
        /// network namespace).
        #[arg(long, value_name = "PATH")]
        control: Option<PathBuf>,
        /// The user to run as once the interface, socket and control socket
        /// are set up (when started as root).
        #[arg(long, value_name = "NAME", default_value = "nobody")]
        user: String,
        /// Stay root after set-up (for debugging only: every packet from
        /// the network is then parsed as root).
        #[arg(long)]
        keep_root: bool,
        /// Started by the root monitor of `tgp up` (internal).
        #[arg(long, hide = true)]
        monitored: bool,
    },
    /// Show each peer of a running tunnel: session, endpoint, round-trip
    /// time, loss each way, redundancy, rate, traffic and drops.
    Status {
        /// The interface (needed only when several tunnels run).
        #[arg(short, long)]
        interface: Option<String>,
        /// Print JSON (every counter, for scripts) instead of text.
        #[arg(long)]
        json: bool,
        /// The control socket, if `tgp up` was given one.
        #[arg(long, value_name = "PATH")]
        control: Option<PathBuf>,
    },
    /// Ask a running tunnel to re-read its config file and apply what
    /// changed (peers, allowed IPs, class rules, routes, DNS, NAT); the
    /// sessions of unchanged peers stay up. An invalid config, or a change
    /// only a restart can apply, changes nothing. Same as SIGHUP.
    Reload {
        /// The interface (needed only when several tunnels run).
        #[arg(short, long)]
        interface: Option<String>,
        /// The control socket, if `tgp up` was given one.
        #[arg(long, value_name = "PATH")]
        control: Option<PathBuf>,
    },
    /// Ask a running tunnel to stop (it removes its routes, rules, DNS
    /// and NAT). When its daemon is gone (it crashed), undo what it left.
    Down {
        /// The interface (needed only when several tunnels run).
        #[arg(short, long)]
        interface: Option<String>,
        /// The control socket, if `tgp up` was given one.
        #[arg(long, value_name = "PATH")]
        control: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (tgp.1 and one per subcommand) to a
    /// directory.
    #[command(hide = true)]
    Man {
        /// The directory (created if missing).
        directory: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tgp: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Genkey { output } => genkey(output.as_deref()),
        Command::Pubkey { file } => pubkey(&file),
        Command::Check { config } => check(&config),
        Command::Up {
            config,
            control,
            user,
            keep_root,
            monitored,
        } => up(
            &config,
            tgp_tunnel::daemon::RunOptions {
                control,
                user: (!keep_root).then_some(user),
                monitored,
            },
        ),
        Command::Status {
            interface,
            json,
            control,
        } => self::control(
            interface.as_deref(),
            control.as_deref(),
            if json { "status json" } else { "status" },
        ),
        Command::Reload { interface, control } => reload(interface.as_deref(), control.as_deref()),
        Command::Down { interface, control } => down(interface.as_deref(), control.as_deref()),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "tgp", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { directory } => man(&directory),
    }
}

fn man(directory: &Path) -> Result<()> {
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    clap_mangen::generate_to(Cli::command(), directory)
        .with_context(|| format!("writing manual pages to {}", directory.display()))?;
    Ok(())
}

fn reload(interface: Option<&str>, socket: Option<&Path>) -> Result<()> {
    let answer = runtime()?.block_on(tgp_tunnel::control::request(interface, socket, "reload"))?;
    if answer.starts_with("tgp: reload failed") {
        bail!("{}", answer.trim_end().trim_start_matches("tgp: "));
    }
    print!("{answer}");
    Ok(())
}

/// Stops the daemon; if there is none, undoes what a crashed one left.
fn down(interface: Option<&str>, socket: Option<&Path>) -> Result<()> {
    match runtime()?.block_on(tgp_tunnel::control::request(interface, socket, "down")) {
        Ok(answer) => {
            print!("{answer}");
            Ok(())
        }
        Err(error) => {
            let left = tgp_tunnel::system::interfaces_left_behind();
            let name = match (interface, left.as_slice()) {
                (Some(name), _) => name.to_owned(),
                (None, [one]) => one.clone(),
                _ => return Err(error),
            };
            if interface.is_none() || left.iter().any(|n| n == &name) {
                print!("{}", tgp_tunnel::system::cleanup_after_dead_daemon(&name)?);
                Ok(())
            } else {
                Err(error)
            }
        }
    }
}

fn genkey(output: Option<&Path>) -> Result<()> {
    match output {
        Some(path) => {
            let key = keys::write_new_private_key_file(path)?;
            eprintln!(
                "wrote a new private key to {}; its public key is {}",
                path.display(),
                keys::public_key_base64(&key)
            );
        }
        None => {
            let key = keys::generate_private_key();
            std::io::stdout()
                .write_all(keys::private_key_file_contents(&key).as_bytes())
                .context("cannot write to standard output")?;
        }
    }
    Ok(())
}

fn pubkey(file: &Path) -> Result<()> {
    let key = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the private key from standard input")?;
        keys::decode_private_key(&text).context("standard input: the private key")?
    } else {
        keys::read_private_key_file(file)?
    };
    println!("{}", keys::public_key_base64(&key));
    Ok(())
}

fn check(path: &Path) -> Result<()> {
    let config =
        Config::load(path).with_context(|| format!("{} is not a valid config", path.display()))?;
    let key_file = &config.interface.private_key_file;
    let key = keys::read_private_key_file(key_file)
        .context("interface.private_key_file: cannot use the private key")?;
    if keys::is_readable_by_others(key_file).unwrap_or(false) {
        eprintln!(
            "tgp: warning: {} is readable by other users; chmod 600 it",
            key_file.display()
        );
    }
    let own_public = key.verifying_key();
    if let Some(index) = config.peers.iter().position(|p| p.public_key == own_public) {
        bail!("peer[{index}].public_key is this interface's own public key");
    }
    print_summary(path, &config, &keys::public_key_base64(&key));
    Ok(())
}

fn print_summary(path: &Path, config: &Config, public_key: &str) {
    let i = &config.interface;
    println!("{}: valid", path.display());
    println!("interface {}", i.name);
    println!("  public key    {public_key}");
    println!("  private key   {}", i.private_key_file.display());
    println!("  addresses     {}", join(&i.addresses));
    println!(
        "  mtu           {} (TCP MSS clamped to {} over IPv4, {} over IPv6)",
        i.mtu,
        mss_for_mtu(i.mtu, IpVersion::V4),
        mss_for_mtu(i.mtu, IpVersion::V6)
    );
    match i.listen_port {
        Some(port) => println!("  listen port   {port}"),
        None => println!("  listen port   random"),
    }
    match i.rate_ceiling {
        Some(ceiling) => println!("  rate ceiling  {ceiling}"),
        None => println!("  rate ceiling  none (the path's rate is measured)"),
    }
    let full = tgp_tunnel::routes::full_tunnel_families(config);
    match i.table {
        RouteTable::Off => println!("  routes        none (table = \"off\")"),
        RouteTable::Table(n) => println!("  routes        in table {n}"),
        RouteTable::Auto if full.is_empty() => {
            println!("  routes        one per allowed prefix outside the interface subnet")
        }
        RouteTable::Auto => println!(
            "  routes        full tunnel ({}): default routes in their own table, fwmark policy rules",
            full.iter()
                .map(|f| format!("{f:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    }
    if !i.dns.is_empty() {
        let entries: Vec<String> = i
            .dns
            .servers
            .iter()
            .map(ToString::to_string)
            .chain(i.dns.search.iter().cloned())
            .collect();
        println!("  dns           {}", entries.join(", "));
    }
    if let Some(out) = &i.masquerade {
        println!("  masquerade    the peers' traffic leaving through {out} (IP forwarding on)");
    }
    if let Some(address) = i.metrics_listen {
        println!("  metrics       http://{address}/metrics");
    }
    for (index, peer) in config.peers.iter().enumerate() {
        print_peer(index, peer);
    }
    if config.peers.is_empty() {
        println!("no peers");
    }
}

fn print_peer(index: usize, peer: &Peer) {
    println!(
        "peer[{index}] {}",
        keys::encode_key(peer.public_key.as_bytes())
    );
    match peer.endpoint {
        Some(endpoint) => println!("  endpoint      {endpoint}"),
        None => println!("  endpoint      learned when the peer connects"),
    }
    println!("  allowed ips   {}", join(&peer.allowed_ips));
    for rule in &peer.class_rules.rules {
        let ports = if rule.ports.is_empty() {
            String::new()
        } else {
            format!(" ports {}", join(&rule.ports))
        };
        println!(
            "  class         {}{ports} -> {}",
            rule.protocol,
            class_name(rule.class)
        );
    }
    let d = &peer.class_rules.defaults;
    println!(
        "  defaults      {} {}, {} {}, {} {}, other {}",
        RuleProtocol::Tcp,
        class_name(d.tcp),
        RuleProtocol::Udp,
        class_name(d.udp),
        RuleProtocol::Icmp,
        class_name(d.icmp),
        class_name(d.other)
    );
}

fn class_name(class: DeliveryClass) -> String {
    match class {
        DeliveryClass::Reliable => "reliable".to_owned(),
        DeliveryClass::Segment => "segment (reliable, brief reorder hold)".to_owned(),
        DeliveryClass::Deadline(d) => format!("deadline {}", format_duration(d)),
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn up(path: &Path, options: tgp_tunnel::daemon::RunOptions) -> Result<()> {
    let config = Config::load(path).map_err(|error| anyhow::anyhow!("{error}"))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.interface.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let identity =
        keys::read_private_key_file(&config.interface.private_key_file).with_context(|| {
            format!(
                "reading the private key {}",
                config.interface.private_key_file.display()
            )
        })?;
    // Giving up root: this process stays root as the daemon's monitor, to
    // undo when the daemon ends what only root can undo.
    if options.monitored {
        tgp_tunnel::monitor::follow_monitor()?;
    } else if options.user.is_some() && nix::unistd::getuid().is_root() {
        let control_socket = options
            .control
            .clone()
            .unwrap_or_else(|| tgp_tunnel::control::socket_path(&config.interface.name));
        let mut daemon = std::process::Command::new(
            std::env::current_exe().context("finding the tgp binary to run the daemon")?,
        );
        daemon
            .args(std::env::args_os().skip(1))
            .arg(tgp_tunnel::monitor::MONITORED_FLAG);
        let code = tgp_tunnel::monitor::run(daemon, &config.interface.name, control_socket)?;
        if code != 0 {
            std::process::exit(i32::from(code));
        }
        return Ok(());
    }
    runtime()?.block_on(tgp_tunnel::daemon::run(config, identity, options))
}

fn control(interface: Option<&str>, socket: Option<&Path>, command: &str) -> Result<()> {
    let answer = runtime()?.block_on(tgp_tunnel::control::request(interface, socket, command))?;
    print!("{answer}");
    Ok(())
}
