//! Split brain with real `msm-node` processes: the backplane between A and B
//! is cut (its cables stop forwarding) for longer than the detection
//! time, so B takes over while A stays master; both make changes; the cut
//! heals. A, of the lower term, steps down and follows B, and tells the
//! operator: `show switch` (text and JSON) and the log say when, to whom,
//! with both terms and how many changes were discarded, and a file next to
//! A's flash image lists exactly those changes. Every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

mod common;

use common::{HB, chassis, log, pair, switch};
use msm_control::{Configured, FailoverHistory, Request};
use msm_testkit::chassis::CabledPath;

#[test]
fn the_lower_term_steps_down_and_writes_what_it_discarded() {
    let (_d, mut c) = chassis(HB);
    let (cable, taps) = CabledPath::lay(&c, 1).unwrap();
    c.taps = taps;
    // A's journal: every change it makes and what the engine reported checkpointed, to check the file against.
    c.journal = true;
    pair(&mut c, &["--churn", "200"]);
    let a_term = switch(&c, 'A').term;
    assert_eq!(switch(&c, 'A').split_brain, None);

    // The partition: longer than the detection time, so B takes over.
    cable.set_cut(true);
    c.wait("B master while A still is", Duration::from_secs(5), |c| {
        Ok(switch(c, 'B').role == "MASTER" && switch(c, 'A').role == "MASTER")
    })
    .unwrap();
    let b_term = switch(&c, 'B').term;
    assert_ne!(a_term, b_term);
    // Both sides take configuration; only A's is lost: its term is the lower one.
    let lines_a = vec!["create vlan lost1 tag 3001".to_string(), "create vlan lost2 tag 3002".to_string()];
    c.ask::<Configured>('A', &Request::Configure { lines: lines_a, wait: None }).unwrap();
    let lines_b = vec!["create vlan kept1 tag 3101".to_string()];
    c.ask::<Configured>('B', &Request::Configure { lines: lines_b, wait: None }).unwrap();
    cable.set_cut(false);

    c.wait("A follows B", Duration::from_secs(10), |c| {
        let a = switch(c, 'A');
        Ok(a.role == "BACKUP" && a.master.as_deref() == Some("B") && a.split_brain.is_some())
    })
    .unwrap_or_else(|e| panic!("{e}\nA log:\n{}\nB log:\n{}", log(&c, 'A'), log(&c, 'B')));
    c.wait("in sync again", Duration::from_secs(20), |c| Ok(c.in_sync('B'))).unwrap();

    let a = switch(&c, 'A');
    let Some(sb) = &a.split_brain else { panic!("{a:?}") };
    assert_eq!(
        (sb.winner.as_str(), sb.winner_term.as_str(), sb.our_term.as_str()),
        ("B", b_term.as_str(), a_term.as_str()),
        "{a:?}"
    );
    let discarded = sb.discarded;
    // A's failover history has it: lost to B, in B's term, what was discarded.
    let h: FailoverHistory = c.ask('A', &Request::ShowFailoverHistory).unwrap();
    let e = &h.entries[0];
    assert_eq!(
        (e.cause.as_str(), e.outcome.as_deref(), e.module.as_str(), e.term.as_str()),
        ("split-brain", Some("lost"), "B", b_term.as_str()),
        "{h:?}"
    );
    assert_eq!((u64::from(e.discarded), e.hitless), (discarded, false), "{h:?}");
    // B's: it took over while A was silent to it.
    let h: FailoverHistory = c.ask('B', &Request::ShowFailoverHistory).unwrap();
    assert_eq!((h.failovers, h.entries[0].cause.as_str()), (1, "peer-silent"), "{h:?}");
    // Two lines and the two vlan records they made, at least (and A's churn).
    assert!(discarded >= 4, "{a:?}");
    assert_eq!(sb.listed, discarded, "{a:?}");
    assert_eq!(switch(&c, 'B').split_brain, None, "the winner lost nothing");

    // The file: next to A's flash image, exactly the discarded changes.
    let file = sb.file.as_deref().unwrap();
    let img = c.path('A', "img").display().to_string();
    assert!(file.starts_with(&format!("{img}.split-brain-")) && file.ends_with(".txt"), "{file}");
    // Written off the loop: it appears under its name once whole.
    c.wait("the split-brain file", Duration::from_secs(10), |_| Ok(std::path::Path::new(file).exists()))
        .unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(body.len() as u64, discarded, "{text}");
    let config: Vec<&str> = body.iter().copied().filter(|l| l.starts_with("config ")).collect();
    assert_eq!(config.len(), 2, "{text}");
    assert!(config[0].ends_with(" create vlan lost1 tag 3001"), "{text}");
    assert!(config[1].ends_with(" create vlan lost2 tag 3002"), "{text}");
    assert!(
        body.iter().any(|l| l.starts_with("app vlan ") && l.contains("  # vlan lost2 tag 3002")),
        "{text}"
    );
    assert!(body.iter().all(|l| l.starts_with("config ") || l.starts_with("app ")), "{text}");
    assert!(text.contains(&format!("# discarded: {discarded} change(s)")), "{text}");
    assert!(!text.contains("kept1"), "B's changes are not A's to discard: {text}");
    // Exactly the changes A's journal shows it made above what its backup acknowledged.
    let j = c.journal('A').unwrap();
    let mut want: Vec<String> = j
        .config
        .iter()
        .filter(|l| l.id > j.config_checkpointed)
        .map(|l| format!("config {} {}", l.id, l.line))
        .collect();
    for (app, changes) in j.changes.iter().enumerate() {
        let name = msm_runtime::apps::APPS[app].0;
        for ch in changes.iter().filter(|ch| ch.id > j.checkpointed[app]) {
            want.push(match &ch.value {
                Some(v) => format!("app {name} {} set {} {v}", ch.id, ch.key),
                None => format!("app {name} {} delete {}", ch.id, ch.key),
            });
        }
    }
    let mut have: Vec<String> =
        body.iter().map(|l| l.split("  # ").next().unwrap().trim_end().to_string()).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want, "the file against A's journal");

    // A took B's state: its own lines are gone, B's are there.
    let running = c.running_config('A').unwrap();
    assert!(running.vlans.contains_key("kept1") && !running.vlans.contains_key("lost1"), "{running:?}");

    // show switch and the log say so.
    let shown = c.text('A', &Request::ShowSwitch).unwrap();
    let want = format!("Split brain:      stepped down to MSM-B (term {b_term} > {a_term})");
    assert!(shown.contains(&want), "{shown}");
    assert!(shown.contains(&format!("; {discarded} changes discarded")), "{shown}");
    assert!(shown.contains(file), "{shown}");
    let l = log(&c, 'A');
    assert!(
        l.lines().any(|x| x.contains("WARN") && x.contains("split brain") && x.contains(file)),
        "A log:\n{l}"
    );
}

/// Split brain decided by what each side holds: B takes over A's whole
/// state during a partition and changes nothing (no churn), while A takes
/// configuration. When the cut heals, A, of the lower term, stays: B would
/// discard nothing, A would have discarded its lines. B steps down, says
/// which rule decided, and receives A's lines.
#[test]
fn a_master_that_changed_nothing_gives_way_to_the_one_that_did() {
    let (_d, mut c) = chassis(HB);
    let (cable, taps) = CabledPath::lay(&c, 1).unwrap();
    c.taps = taps;
    pair(&mut c, &[]);
    cable.set_cut(true);
    c.wait("B master while A still is", Duration::from_secs(5), |c| {
        Ok(switch(c, 'B').role == "MASTER" && switch(c, 'A').role == "MASTER")
    })
    .unwrap();
    let b_term = switch(&c, 'B').term;
    let lines = vec!["create vlan during1 tag 3201".to_string(), "create vlan during2 tag 3202".to_string()];
    c.ask::<Configured>('A', &Request::Configure { lines, wait: None }).unwrap();
    cable.set_cut(false);
    c.wait("B follows A", Duration::from_secs(10), |c| {
        let b = switch(c, 'B');
        Ok(b.role == "BACKUP" && b.master.as_deref() == Some("A") && b.split_brain.is_some())
    })
    .unwrap_or_else(|e| panic!("{e}\nA log:\n{}\nB log:\n{}", log(&c, 'A'), log(&c, 'B')));
    c.wait("in sync again", Duration::from_secs(20), |c| Ok(c.in_sync('A'))).unwrap();
    let a = switch(&c, 'A');
    assert_eq!(a.role, "MASTER");
    assert_eq!(a.split_brain, None, "A discarded nothing: {a:?}");
    let sb = switch(&c, 'B').split_brain;
    assert_eq!(
        sb.as_ref().map(|sb| (sb.our_term.as_str(), sb.discarded)),
        Some((b_term.as_str(), 0)),
        "{sb:?}"
    );
    let running = c.running_config('B').unwrap();
    assert!(running.vlans.contains_key("during1") && running.vlans.contains_key("during2"), "{running:?}");
    // Both histories say so: A stayed master by the rule, B stepped down losing nothing.
    let h: FailoverHistory = c.ask('A', &Request::ShowFailoverHistory).unwrap();
    let e = &h.entries[0];
    assert_eq!(
        (e.cause.as_str(), e.outcome.as_deref(), e.module.as_str()),
        ("split-brain", Some("won"), "A")
    );
    assert!(e.detail.contains("took over this state whole and changed nothing"), "{h:?}");
    assert_eq!(e.term, a.term, "A's new term, above B's: {h:?}");
    let h: FailoverHistory = c.ask('B', &Request::ShowFailoverHistory).unwrap();
    let e = &h.entries[0];
    assert_eq!((e.outcome.as_deref(), e.module.as_str(), e.hitless), (Some("lost"), "A", true), "{h:?}");
    let shown = c.text('A', &Request::ShowSwitch).unwrap();
    assert!(shown.contains("stayed master over MSM-B"), "{shown}");
    assert!(shown.contains("took over this state whole and changed nothing"), "{shown}");
}
