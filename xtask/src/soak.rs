//! `cargo xtask soak --rounds N --seed S`: a two-node chassis of real
//! `msm-node` processes (release build, 10 ms heartbeats), and in every round
//! the master killed with SIGKILL at a seeded random moment: during a bulk
//! (the backup just restarted), during churn, right after a `save`, or while a
//! `configure` burst is being applied. Each round waits for the takeover,
//! checks every change the dead master reported as checkpointed against the
//! new master (application rows and the running configuration, from the dead
//! master's change journal), restarts the dead node and waits until the pair
//! is in sync again with the same state on both. The roles alternate.
//!
//! Every wait is for a condition, with a deadline. The random delays before a
//! kill are the point of the soak, not waits. A round's choices come from the
//! seed and the round number alone, so `--rounds R --seed S` replays the
//! first R rounds of a run with the same choices (the timing of real
//! processes varies).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use msm_control::{AppTable, Configured, Request, Response, Saved};
use msm_runtime::config::RunningConfig;
use msm_testkit::chassis::Chassis;
use rand::seq::{IteratorRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::cmd;

/// Most VLANs the soak keeps in the configuration: bursts delete before they
/// create beyond it, so rounds cost the same at round 1 and round 1000.
const MAX_VLANS: usize = 300;

#[derive(Debug, Clone, Args)]
pub(crate) struct SoakArgs {
    /// Rounds: each kills the master once.
    #[arg(long, default_value_t = 10)]
    pub(crate) rounds: u32,
    /// Seed of every random choice (round kinds, delays, lines).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Heartbeat interval of the nodes (3 missed declare the peer lost).
    #[arg(long, default_value_t = 10)]
    pub(crate) heartbeat_ms: u64,
    /// Lines of the configure burst (applied in slices between heartbeats,
    /// so the kill can land anywhere inside it).
    #[arg(long, default_value_t = 5000)]
    pub(crate) lines: usize,
    /// MAC table entries a fresh master starts with (the size of a bulk).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) fdb: u32,
    /// Keep the chassis (flash images, logs, journals) in this directory
    /// (default: a new one in /dev/shm, kept only if a round fails).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
}

impl SoakArgs {
    /// What CI runs: a few seeded rounds, well within a minute.
    pub(crate) fn ci() -> Self {
        SoakArgs { rounds: 4, seed: 1, heartbeat_ms: 10, lines: 5000, fdb: 20_000, dir: None }
    }

    /// The command that replays the first `rounds` rounds of this run.
    fn replay(&self, rounds: u32) -> String {
        let d = SoakArgs::ci();
        let mut s = format!("cargo xtask soak --rounds {rounds} --seed {}", self.seed);
        if self.heartbeat_ms != d.heartbeat_ms {
            s += &format!(" --heartbeat-ms {}", self.heartbeat_ms);
        }
        if self.lines != d.lines {
            s += &format!(" --lines {}", self.lines);
        }
        if self.fdb != d.fdb {
            s += &format!(" --fdb {}", self.fdb);
        }
        s
    }
}

/// Where the master dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The backup was just restarted: kill the master during its bulk.
    Bulk,
    /// Churn on, config lines, a random delay.
    Churn,
    /// Right after a `save` answered.
    Save,
    /// While a `configure` burst is being applied.
    Configure,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Bulk, Kind::Churn, Kind::Save, Kind::Configure];

    fn name(self) -> &'static str {
        match self {
            Kind::Bulk => "bulk",
            Kind::Churn => "churn",
            Kind::Save => "save",
            Kind::Configure => "configure",
        }
    }
}

/// What one round found.
#[derive(Debug)]
struct Round {
    kind: Kind,
    takeover: Duration,
    changes: usize,
    config: usize,
    /// Bulk: the master died before In Sync; configure: before the burst was answered.
    in_progress: bool,
    note: String,
}

/// Build the node binaries (release), then soak.
pub(crate) fn run(args: &SoakArgs) -> Result<()> {
    let bin = release_bins()?;
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let result = soak(args, &dir, &bin);
    if args.dir.is_none() && result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The target directory cargo builds into (`CARGO_TARGET_DIR`, else `target/`).
/// Build the chassis binaries in release mode (`msm-node`, `msm`,
/// `msm-chassis`, `msm-app`); their directory.
pub(crate) fn release_bins() -> Result<PathBuf> {
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-q",
        "-p",
        "msm-linux-emu",
        "-p",
        "msm-client",
        "--bins",
    ]))?;
    Ok(target_dir().join("release"))
}

/// An empty directory `name` under the target directory, for a benchmark's chassis.
pub(crate) fn fresh_dir(name: &str) -> Result<PathBuf> {
    let dir = target_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(crate) fn target_dir() -> PathBuf {
    let root = cmd::workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

/// A fresh directory on tmpfs (`/dev/shm`) if there is one, else under the
/// system's temporary directory. On a disk, the `fdatasync`s of a `save` run
/// in the node's loop and can stall it past failure detection at 10 ms
/// heartbeats (a premature failover, issue 10 point 1); the soak is about
/// checkpointing, so its flash images live in RAM unless `--dir` says where.
fn tempfile_dir() -> Result<PathBuf> {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    for n in 0..1000u32 {
        let d = base.join(format!("msm-soak-{}-{n}", std::process::id()));
        if std::fs::create_dir(&d).is_ok() {
            return Ok(d);
        }
    }
    bail!("cannot create a directory under {}", base.display())
}

fn other(slot: char) -> char {
    if slot == 'A' { 'B' } else { 'A' }
}

/// The random choices of round `round`, from the seed and the round alone.
fn round_rng(seed: u64, round: u32) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(round))
}

/// The kind of round `round` (from 1): every four rounds are the four kinds
/// in a seeded order, so even a short run has each.
fn kind_of(seed: u64, round: u32) -> Kind {
    let block = (round.saturating_sub(1) / 4) as usize;
    let mut rng = round_rng(seed, u32::MAX - block as u32);
    let mut kinds = Kind::ALL;
    kinds.shuffle(&mut rng);
    kinds[round.saturating_sub(1) as usize % 4]
}

fn soak(args: &SoakArgs, dir: &Path, bin: &Path) -> Result<()> {
    println!(
        "soak: {} rounds, seed {}, {} ms heartbeats, configure bursts of {} lines, chassis in {}",
        args.rounds,
        args.seed,
        args.heartbeat_ms,
        args.lines,
        dir.display()
    );
    let mut c = Chassis::new(dir, bin);
    c.common = vec![
        "--heartbeat-ms".into(),
        args.heartbeat_ms.to_string(),
        "--miss".into(),
        "3".into(),
        "--fdb".into(),
        args.fdb.to_string(),
    ];
    let fail = |round: u32, kind: &str, e: anyhow::Error| {
        println!("\nSOAK FAILED: seed {}, round {round} ({kind}): {e:#}", args.seed);
        println!("  chassis kept in {} (logs *.log, journals *.journal, flash images *.img)", dir.display());
        println!("  replay: {}", args.replay(round.max(1)));
        anyhow!("soak failed at round {round} of seed {}", args.seed)
    };
    let start = Instant::now();
    setup(&mut c, args).map_err(|e| fail(0, "start-up", e))?;
    let mut master = 'A';
    let mut rounds: Vec<Round> = Vec::new();
    for round in 1..=args.rounds {
        let kind = kind_of(args.seed, round);
        let mut rng = round_rng(args.seed, round);
        let t = Instant::now();
        let r = one_round(&mut c, args, round, kind, master, &mut rng)
            .map_err(|e| fail(round, kind.name(), e))?;
        println!(
            "round {round:>3}/{}: {:<9} MSM-{master} killed{}, MSM-{} MASTER in {:>5.1} ms; {} changes, {} config lines verified; {:.2} s",
            args.rounds,
            kind.name(),
            r.note,
            other(master),
            r.takeover.as_secs_f64() * 1000.0,
            r.changes,
            r.config,
            t.elapsed().as_secs_f64()
        );
        rounds.push(r);
        master = other(master);
    }
    summary(args, &rounds, start.elapsed());
    Ok(())
}

/// MSM-A alone as master, then MSM-B in sync.
fn setup(c: &mut Chassis, args: &SoakArgs) -> Result<()> {
    c.start('A', &["--seed", &node_seed(args.seed, 0, 'A')])?;
    c.wait("MSM-A to become MASTER", Duration::from_secs(10), |c| {
        Ok(c.role('A').as_deref() == Some("MASTER"))
    })?;
    c.start('B', &["--seed", &node_seed(args.seed, 0, 'B')])?;
    wait_in_sync(c, 'A')
}

fn node_seed(seed: u64, round: u32, slot: char) -> String {
    (seed.wrapping_mul(1000).wrapping_add(u64::from(round)) ^ u64::from(slot == 'B')).to_string()
}

/// The backup of `master` is in sync and both hold the same state.
fn wait_in_sync(c: &Chassis, master: char) -> Result<()> {
    let backup = other(master);
    c.wait(&format!("MSM-{backup} BACKUP (In Sync) of MSM-{master}"), Duration::from_secs(30), |c| {
        Ok(c.in_sync(master) && c.role(backup).as_deref() == Some("BACKUP"))
    })?;
    c.wait("the same configuration and application digests on both", Duration::from_secs(10), |c| {
        Ok(c.running_config(master)? == c.running_config(backup)?
            && digests(c, master)? == digests(c, backup)?)
    })
}

fn digests(c: &Chassis, slot: char) -> Result<Vec<String>> {
    msm_runtime::apps::APPS
        .iter()
        .map(|(name, _, _)| {
            let t: AppTable = c.ask(slot, &Request::ShowApp { app: (*name).into(), rows: false, from: 0 })?;
            Ok(format!("{name}:{}:{}", t.entries, t.digest))
        })
        .collect()
}

fn configure(c: &Chassis, slot: char, lines: Vec<String>) -> Result<()> {
    let n = lines.len();
    c.ask::<Configured>(slot, &Request::Configure { lines, wait: None })
        .with_context(|| format!("configure of {n} lines"))?;
    Ok(())
}

fn one_round(
    c: &mut Chassis,
    args: &SoakArgs,
    round: u32,
    kind: Kind,
    master: char,
    rng: &mut Pcg64Mcg,
) -> Result<Round> {
    let backup = other(master);
    // What the master runs now, and how far its journal's configuration lines go:
    // the lines after it are replayed on this to check the new master.
    let base = c.running_config(master)?;
    let base_after = c.journal(master)?.config.last().map_or(0, |l| l.id);
    let mut model = base.clone();
    let mut in_progress = false;
    let mut burst = None;
    let note = match kind {
        Kind::Bulk => {
            // Restart the backup: a new incarnation, a new session, a full bulk.
            let journal = c.path(master, "journal");
            let offset = std::fs::metadata(&journal).map_or(0, |m| m.len());
            let held = c.journal(master)?.checkpointed.iter().any(|id| *id > 0);
            c.kill(backup)?;
            c.start(backup, &["--seed", &node_seed(args.seed, round, backup)])?;
            // Until the master has heard of the new incarnation, its reports are
            // about the old one, which this soak just killed: wait for the reset.
            if held {
                c.wait(
                    &format!("MSM-{master} to start a session with the restarted MSM-{backup}"),
                    Duration::from_secs(5),
                    |_| session_reset(&journal, offset),
                )?;
            }
            let n = rng.random_range(0..=20);
            configure(c, master, lines(rng, &mut model, round, n))?;
            std::thread::sleep(Duration::from_micros(rng.random_range(0..=8_000)));
            in_progress = !c.in_sync(master);
            format!(" {} In Sync", if in_progress { "before" } else { "after" })
        }
        Kind::Churn => {
            let rate = rng.random_range(1_000..=10_000u32);
            c.text(master, &Request::Churn { rate })?;
            let n = rng.random_range(1..=50);
            configure(c, master, lines(rng, &mut model, round, n))?;
            let delay = rng.random_range(0..=300u64);
            std::thread::sleep(Duration::from_millis(delay));
            format!(" ({rate}/s, {delay} ms)")
        }
        Kind::Save => {
            let n = rng.random_range(1..=200);
            configure(c, master, lines(rng, &mut model, round, n))?;
            c.ask::<Saved>(master, &Request::Save { which: None, wait: None }).context("save")?;
            format!(" after a save of {n} new lines")
        }
        Kind::Configure => {
            let burst_lines = lines(rng, &mut model, round, args.lines);
            let ctl = c.path(master, "ctl");
            let delay = Duration::from_micros(rng.random_range(0..=(args.lines as u64 * 30)));
            let sent = Instant::now();
            burst = Some(std::thread::spawn(move || {
                msm_control::call(&ctl, &Request::Configure { lines: burst_lines, wait: None })
                    .map_err(anyhow::Error::from)
            }));
            std::thread::sleep(delay.saturating_sub(sent.elapsed()));
            in_progress = burst.as_ref().is_some_and(|b| !b.is_finished());
            format!(
                " {:.1} ms into a burst of {} lines{}",
                delay.as_secs_f64() * 1000.0,
                args.lines,
                if in_progress { "" } else { " (already answered)" }
            )
        }
    };
    // The master must still be the master when it is killed: a backup that took
    // over by itself means the master's loop stalled past failure detection.
    if c.role(backup).as_deref() == Some("MASTER") {
        bail!(
            "MSM-{backup} took over before MSM-{master} was killed{note}: the master's loop stalled past failure \
             detection (a long configure or save in the loop, issue 10 point 1; see the gap in MSM-{master}.log)"
        );
    }
    let killed = Instant::now();
    c.kill(master)?;
    c.wait(&format!("MSM-{backup} to answer MASTER"), Duration::from_secs(5), |c| {
        Ok(c.role(backup).as_deref() == Some("MASTER"))
    })?;
    let takeover = killed.elapsed();
    if let Some(b) = burst {
        match b.join() {
            Ok(Ok(Response::Error { message })) => bail!("the configure burst was refused: {message}"),
            Ok(_) => {}
            Err(_) => bail!("the configure thread panicked"),
        }
    }
    // Everything the dead master reported as checkpointed is on the new master.
    let journal = c.journal(master)?;
    if journal.peer.is_some_and(|p| p != backup) {
        bail!("MSM-{master}'s last checkpoint report was about MSM-{:?}", journal.peer);
    }
    let changes =
        journal.verify(&c.app_state(backup)?).map_err(|e| anyhow!("MSM-{backup} after takeover: {e}"))?;
    let config = journal
        .verify_config(&base, base_after, &c.running_config(backup)?)
        .map_err(|e| anyhow!("MSM-{backup} after takeover: {e}"))?;
    // The dead node comes back as backup and resynchronises.
    c.start(master, &["--seed", &node_seed(args.seed, round, master)])?;
    wait_in_sync(c, backup)?;
    Ok(Round { kind, takeover, changes, config, in_progress, note })
}

/// Whether the journal at `path` has, after byte `offset`, a report that
/// dropped an application's checkpoint to 0: the master started a new session.
fn session_reset(path: &Path, offset: u64) -> Result<bool> {
    let text = std::fs::read(path)?;
    let tail = String::from_utf8_lossy(text.get(offset as usize..).unwrap_or_default());
    Ok(tail.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        matches!(w.as_slice(), ["checkpointed", _, "0", _])
    }))
}

/// `n` valid configuration lines for `model` (applied to it as generated):
/// VLANs created (some tagged), given and relieved of ports, retagged and
/// deleted, ports disabled and enabled, the sysName changed. The VLAN count
/// stays at most [`MAX_VLANS`].
fn lines(rng: &mut Pcg64Mcg, model: &mut RunningConfig, round: u32, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u32;
    while out.len() < n {
        i += 1;
        let ours = || model.vlans.keys().filter(|v| v.as_str() != "Default");
        let count = ours().count();
        let pick = ours().choose(rng).cloned();
        let free_tag = |rng: &mut Pcg64Mcg| {
            let used: BTreeSet<u16> = model.vlans.values().filter_map(|v| v.tag).collect();
            (0..20).map(|_| rng.random_range(2..=4094u16)).find(|t| !used.contains(t))
        };
        let ports = |rng: &mut Pcg64Mcg| {
            let a = rng.random_range(1..=64u16);
            let b = rng.random_range(a..=64u16.min(a + 8));
            if a == b { a.to_string() } else { format!("{a}-{b}") }
        };
        let roll = rng.random_range(0..100);
        let line = match (roll, pick) {
            (_, Some(v)) if count >= MAX_VLANS => format!("delete vlan {v}"),
            (0..15, Some(v)) => format!("delete vlan {v}"),
            (15..35, Some(v)) => format!("configure vlan {v} add ports {}", ports(rng)),
            (35..42, Some(v)) => format!("configure vlan {v} delete ports {}", ports(rng)),
            (42..47, Some(v)) => match free_tag(rng) {
                Some(t) => format!("configure vlan {v} tag {t}"),
                None => continue,
            },
            (47..50, _) => format!("disable ports {}", ports(rng)),
            (50..53, _) => format!("enable ports {}", ports(rng)),
            (53..55, _) => format!("configure snmp sysName soak-{round}-{i}"),
            _ => match rng.random_bool(0.5).then(|| free_tag(rng)).flatten() {
                Some(t) => format!("create vlan r{round}v{i} tag {t}"),
                None => format!("create vlan r{round}v{i}"),
            },
        };
        // Every line is valid for the model, so a burst is never cut short by a refusal.
        if model.apply(&line).is_ok() {
            out.push(line);
        }
    }
    out
}

fn summary(args: &SoakArgs, rounds: &[Round], total: Duration) {
    let mut times: Vec<Duration> = rounds.iter().map(|r| r.takeover).collect();
    times.sort();
    let ms =
        |d: Option<&Duration>| d.map_or("-".to_string(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0));
    let count = |k: Kind| rounds.iter().filter(|r| r.kind == k).count();
    let in_progress = |k: Kind| rounds.iter().filter(|r| r.kind == k && r.in_progress).count();
    println!("\nsoak summary (seed {}, {:.1} s)", args.seed, total.as_secs_f64());
    println!(
        "  rounds: {} passed (bulk {}, {} before In Sync; churn {}; save {}; configure {}, {} while the burst was in progress)",
        rounds.len(),
        count(Kind::Bulk),
        in_progress(Kind::Bulk),
        count(Kind::Churn),
        count(Kind::Save),
        count(Kind::Configure),
        in_progress(Kind::Configure)
    );
    println!("  application changes verified: {}", rounds.iter().map(|r| r.changes).sum::<usize>());
    let config: usize = rounds.iter().map(|r| r.config).sum();
    println!(
        "  config changes verified: {config}{}",
        if config == 0 { " (the journals hold no checkpointed configuration lines)" } else { "" }
    );
    println!(
        "  takeover, SIGKILL to the other node answering MASTER: min {}, median {}, max {}",
        ms(times.first()),
        ms(times.get(times.len() / 2)),
        ms(times.last())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_lines_are_valid_and_bounded() {
        let mut rng = round_rng(7, 3);
        let mut model = msm_runtime::config::factory_default();
        for round in 0..20 {
            let mut check = model.clone();
            let ls = lines(&mut rng, &mut model, round, 500);
            assert_eq!(ls.len(), 500);
            for l in &ls {
                assert!(check.apply(l).is_ok(), "{l}");
            }
            assert_eq!(check, model);
            assert!(model.vlans.len() <= MAX_VLANS + 1);
        }
    }

    #[test]
    fn every_four_rounds_have_every_kind() {
        for seed in 0..10 {
            for block in 0..3 {
                let kinds: Vec<Kind> = (1..=4).map(|r| kind_of(seed, block * 4 + r)).collect();
                assert!(Kind::ALL.iter().all(|k| kinds.contains(k)), "seed {seed}: {kinds:?}");
            }
        }
    }

    #[test]
    fn replay_command_names_what_differs_from_the_defaults() {
        let mut a = SoakArgs::ci();
        a.seed = 9;
        assert_eq!(a.replay(3), "cargo xtask soak --rounds 3 --seed 9");
        a.lines = 20_000;
        assert_eq!(a.replay(3), "cargo xtask soak --rounds 3 --seed 9 --lines 20000");
    }
}
