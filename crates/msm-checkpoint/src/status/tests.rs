//! Tests of `status`, beside it.

use super::*;

#[test]
fn a_standby_shows_the_backup_and_itself_as_they_are() {
    let t = Term::NONE.next(Slot::A).unwrap();
    let peer = |slot: Slot, role: Role| PeerStatus {
        slot,
        alive: true,
        role,
        term: t,
        priority: 0,
        health: 100,
        max_heartbeat_gap: core::time::Duration::ZERO,
        keys: [0; 2],
        holds: Term::NONE,
    };
    let mut peers = [None; MAX_NODES];
    peers[0] = Some(peer(Slot::A, Role::Master));
    peers[1] = Some(peer(Slot::B, Role::Backup));
    let s = SwitchStatus {
        slot: Slot::new(2).unwrap(),
        role: Role::Standby,
        term: t,
        priority: 0,
        health: 100,
        master: Some(Slot::A),
        backup: None,
        sync: SyncState::Standby,
        peers,
        errors: FrameErrors::default(),
        slot_conflict: None,
        last_split_brain: None,
        split_brain_won: None,
        standby_config: [None; MAX_NODES],
        apps: None,
        protocol: crate::wire::PROTOCOL_VERSION,
        protocols: [PeerProtocol::default(); MAX_NODES],
    };
    let mut out: String<1024> = String::new();
    render_switch(&s, &mut out).unwrap();
    assert!(!out.contains("no master"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("MSM-B") && l.contains("BACKUP ") && !l.contains('(')),
        "{out}"
    );
    assert!(out.contains("Checkpoint: standby: the configuration, no application state"), "{out}");
}

#[test]
fn a_split_brain_is_one_line_of_show_switch() {
    let t5 = Term::NONE.next(Slot::A).and_then(|t| t.next(Slot::A)).unwrap();
    let t7 = t5.next(Slot::B).unwrap();
    let sb = SplitBrain {
        at: Instant::from_millis(12_345),
        winner: Slot::B,
        winner_term: t7,
        our_term: t5,
        discarded: 37,
        rule: SplitRule::NewerLineage,
    };
    let mut s = SwitchStatus {
        slot: Slot::A,
        role: Role::Standby,
        term: t7,
        priority: 0,
        health: 0,
        master: Some(Slot::B),
        backup: None,
        sync: SyncState::NoMaster,
        peers: [None; MAX_NODES],
        errors: FrameErrors::default(),
        slot_conflict: None,
        last_split_brain: None,
        split_brain_won: None,
        standby_config: [None; MAX_NODES],
        apps: None,
        protocol: crate::wire::PROTOCOL_VERSION,
        protocols: [PeerProtocol::default(); MAX_NODES],
    };
    let mut out: String<1024> = String::new();
    render_switch(&s, &mut out).unwrap();
    assert!(!out.contains("Split brain"));
    s.last_split_brain = Some(sb);
    out.clear();
    render_switch(&s, &mut out).unwrap();
    assert!(
        out.contains(
            "Split brain:      stepped down to MSM-B (term 3.B > 2.A) at 12.3 s; 37 changes discarded \
             (the other master took over this state whole and changed it since)\n"
        ),
        "{out}"
    );
}
