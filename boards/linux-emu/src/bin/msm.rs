//! `msm`: the operator CLI, shaped like ExtremeXOS. Talks to a running node
//! over its control socket.
//!
//! ```text
//! msm --node /tmp/chassis/A.ctl show switch
//! msm --node A.ctl configure "create vlan v10 tag 10" "configure vlan v10 add ports 1-4"
//! msm --node A.ctl save primary
//! msm --node A.ctl run msm-failover force
//! msm keygen /etc/msm/chassis.key
//! msm --node A.ctl key install /etc/msm/next.key     # then: key switch, key retire
//! ```
//!
//! Exit codes: 0 done, 1 the node refused (the reason on stderr), 2 the
//! node could not be reached or the command not parsed, 3 `--wait` timed
//! out: applied on the master, not yet on the backup.
// The argument docs below are clap's --help text, where `<peer>` and `[force]` are meant
// literally, not HTML or intra-doc links.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use msm_control::{CONFIG_WORDS, OnBackup, Request, Response, parse_config_word};
use msm_flash::ConfigName;

#[derive(Parser)]
#[command(name = "msm", about = "Operator CLI of an emulated MSM")]
struct Cli {
    /// The node's control socket (every command but keygen).
    #[arg(long, env = "MSM_NODE")]
    node: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// show switch | checkpoint-data [process] | node | configuration | failover history | app <name> [--rows]
    Show {
        #[command(subcommand)]
        what: Show,
    },
    /// Apply configuration lines, e.g. "create vlan v10 tag 10"; `-` reads them from stdin.
    Configure {
        #[arg(required = true)]
        lines: Vec<String>,
        /// Answer only once the backup has every change (as Redis WAIT).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in milliseconds.
        #[arg(long, default_value_t = 5000, requires = "wait")]
        timeout: u64,
    },
    /// Save the active configuration (to the selected file by default).
    Save {
        #[arg(value_parser = config_arg())]
        which: Option<ConfigName>,
        /// Answer only once the backup's flash has the saved configuration.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in milliseconds.
        #[arg(long, default_value_t = 5000, requires = "wait")]
        timeout: u64,
    },
    /// Select the configuration used at the next boot: use configuration primary|secondary.
    Use {
        #[arg(value_parser = ["configuration"])]
        _configuration: String,
        #[arg(value_parser = config_arg())]
        which: ConfigName,
    },
    /// Master: copy both saved configurations and the selection to the
    /// backup's flash; answers once the backup's flash holds them, digest checked.
    Synchronize {
        /// How long to wait for the backup's flash, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout: u64,
    },
    /// Reboot the node; refused while there are unsaved changes unless --force.
    Reboot {
        #[arg(long)]
        force: bool,
    },
    /// run msm-failover [force | check]: `check` only says whether it would
    /// be allowed, allowed with a named loss (then only with `force`), or refused.
    Run {
        #[arg(value_parser = ["msm-failover"])]
        _what: String,
        #[arg(value_parser = ["force", "check"])]
        how: Option<String>,
    },
    /// Set the state-change workload (changes per second).
    Churn { rate: u32 },
    /// Create a new chassis key file (mode 0600, never overwrites); prints its fingerprint.
    Keygen { path: PathBuf },
    /// The node's log level from now on: error, warn, info, debug or trace.
    Debug {
        #[arg(value_parser = ["error", "warn", "info", "debug", "trace"])]
        level: String,
    },
    /// Rotate the chassis key with no outage: on every node `key install PATH`,
    /// then on every node `key switch`, then on every node `key retire`.
    Key {
        #[command(subcommand)]
        step: KeyStep,
    },
}

#[derive(Subcommand)]
enum KeyStep {
    /// Accept frames under the key in PATH too (the node reads the file).
    Install { path: PathBuf },
    /// Send under the installed key; the previous one is still accepted.
    Switch,
    /// Stop accepting the previous key.
    Retire,
}

#[derive(Subcommand)]
enum Show {
    Switch,
    CheckpointData {
        process: Option<String>,
    },
    Node,
    Configuration,
    /// show failover history: this module's failovers, newest first.
    Failover {
        #[arg(value_parser = ["history"])]
        _history: String,
    },
    App {
        name: String,
        #[arg(long)]
        rows: bool,
        /// With --rows: the page starting at this key (an answer names the next).
        #[arg(long, default_value_t = 0, requires = "rows")]
        from: u64,
    },
}

/// "primary" | "secondary", the control protocol's words.
fn config_arg() -> impl TypedValueParser<Value = ConfigName> {
    PossibleValuesParser::new(CONFIG_WORDS).try_map(|w| parse_config_word(&w).ok_or("not a configuration"))
}

fn request(cmd: Cmd) -> Request {
    match cmd {
        Cmd::Show { what } => match what {
            Show::Switch => Request::ShowSwitch,
            Show::CheckpointData { process } => Request::ShowCheckpointData { process },
            Show::Node => Request::ShowNode,
            Show::Configuration => Request::ShowConfiguration,
            Show::Failover { .. } => Request::ShowFailoverHistory,
            Show::App { name, rows, from } => Request::ShowApp { app: name, rows, from },
        },
        Cmd::Configure { lines, wait, timeout } => {
            let lines =
                if lines == ["-"] { std::io::stdin().lines().map_while(Result::ok).collect() } else { lines };
            Request::Configure { lines, wait: wait.then_some(timeout) }
        }
        Cmd::Save { which, wait, timeout } => Request::Save { which, wait: wait.then_some(timeout) },
        Cmd::Use { which, .. } => Request::UseConfiguration { which },
        Cmd::Synchronize { timeout } => Request::Synchronize { wait: timeout },
        Cmd::Reboot { force } => Request::Reboot { force },
        Cmd::Run { how, .. } if how.as_deref() == Some("check") => Request::FailoverCheck,
        Cmd::Run { how, .. } => Request::Failover { force: how.is_some() },
        Cmd::Churn { rate } => Request::Churn { rate },
        Cmd::Key { step: KeyStep::Install { path } } => {
            // The node resolves the path: make it absolute from here.
            let path = std::path::absolute(&path).unwrap_or(path);
            Request::KeyInstall { path: path.display().to_string() }
        }
        Cmd::Key { step: KeyStep::Switch } => Request::KeySwitch,
        Cmd::Key { step: KeyStep::Retire } => Request::KeyRetire,
        Cmd::Debug { level } => Request::Debug { level },
        Cmd::Keygen { .. } => unreachable!("keygen is local"),
    }
}

/// Exit code of a `--wait` that timed out: applied on the master, not yet on the backup.
const EXIT_NOT_ON_BACKUP: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Keygen { path } = &cli.cmd {
        return match msm_runtime::key_file::generate(path) {
            Ok(fp) => {
                println!("chassis key {fp:08x} written to {} (mode 0600)", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("msm keygen: {e}");
                ExitCode::from(1)
            }
        };
    }
    let Some(node) = cli.node else {
        eprintln!("msm: --node <control socket> (or MSM_NODE) is required for this command");
        return ExitCode::from(2);
    };
    let req = request(cli.cmd);
    let waited =
        matches!(req, Request::Configure { wait: Some(_), .. } | Request::Save { wait: Some(_), .. });
    match msm_control::call(&node, &req) {
        Ok(Response::Ok { text, json }) => {
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
            } else {
                print!("{text}");
                if !text.ends_with('\n') && !text.is_empty() {
                    println!();
                }
            }
            // `configure` and `save` answer how far they got toward the backup.
            if waited && serde_json::from_value::<OnBackup>(json).is_ok_and(|b| !b.checkpointed) {
                return ExitCode::from(EXIT_NOT_ON_BACKUP);
            }
            ExitCode::SUCCESS
        }
        Ok(Response::Error { message }) => {
            eprintln!("Error: {message}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("msm: {e:#}");
            ExitCode::from(2)
        }
    }
}
