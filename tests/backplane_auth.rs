//! The authenticated backplane with real `msm-node` processes: a module
//! with another key never joins, captured datagrams replayed are refused,
//! forged frames of every kind the first wave found change nothing, and the
//! chassis key rotates under churn with no failover and no re-bulk. Every
//! wait has a deadline.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;
use std::time::Duration;

use msm_checkpoint::Key;
use msm_checkpoint::wire::{self, Body, FrameWriter, Heartbeat};
mod common;

use common::{HB, by_slot, chassis, no_failover, pair, rebulks, switch, tapped_pair};
use msm_control::{FailingOver, KeyStep, Request};
use msm_testkit::chassis::Chassis;

/// One chassis at a time: timing under two debug chassis on two cores is noise.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn a_module_with_another_key_never_joins_and_both_sides_say_so() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    c.start('A', &[]).unwrap();
    c.wait("A master", Duration::from_secs(5), |c| Ok(c.role('A').as_deref() == Some("MASTER"))).unwrap();
    let other = c.dir.join("other.key");
    msm_runtime::key_file::generate(&other).unwrap();
    let other = other.display().to_string();
    c.start('B', &["--key-file", &other, "--require-auth"]).unwrap();
    c.wait("both refuse the other", Duration::from_secs(5), |c| {
        Ok(by_slot(&switch(c, 'A'), "B", |r| r.auth) >= 10 && by_slot(&switch(c, 'B'), "A", |r| r.auth) >= 10)
    })
    .unwrap();
    let a = switch(&c, 'A');
    assert!(!a.in_sync, "{a:?}");
    assert!(a.peers.is_empty(), "B is no member of A's chassis: {a:?}");
    let text = c.text('A', &Request::ShowSwitch).unwrap();
    assert!(text.contains("frames from MSM-B failed authentication"), "{text}");
    let text = c.text('B', &Request::ShowSwitch).unwrap();
    assert!(text.contains("frames from MSM-A failed authentication"), "{text}");
    // Without a key at all, a node with --require-auth does not start.
    let out = std::process::Command::new(c.bin.join("msm-node"))
        .args(["--slot", "B", "--require-auth", "--flash"])
        .arg(c.dir.join("x.img"))
        .arg("--control")
        .arg(c.dir.join("x.ctl"))
        .args(["--backplane", "unix:/nonexistent/x:/nonexistent/y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--require-auth: no --key-file"), "{out:?}");
}

#[test]
fn captured_datagrams_replayed_are_refused_and_change_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    let tap = tapped_pair(&mut c, &["--churn", "2000"]);
    let term = switch(&c, 'A').term;
    let before = rebulks(&c);
    c.wait("a second of traffic captured", Duration::from_secs(10), |_| {
        Ok(tap.frames.lock().unwrap().len() > 200)
    })
    .unwrap();
    let captured: Vec<Vec<u8>> = tap.frames.lock().unwrap().clone();
    let sock = UnixDatagram::unbound().unwrap();
    for f in &captured {
        let _ = sock.send_to(f, c.path('B', "sock"));
    }
    c.wait("B refuses every replay", Duration::from_secs(5), |c| {
        Ok(by_slot(&switch(c, 'B'), "A", |r| r.replay) >= captured.len() as u64 * 9 / 10)
    })
    .unwrap();
    no_failover(&c, &term);
    assert_eq!(rebulks(&c), before, "no re-bulk");
    c.wait("in sync", Duration::from_secs(5), |c| Ok(c.in_sync('A'))).unwrap();
    let text = c.text('B', &Request::ShowSwitch).unwrap();
    assert!(text.contains("frames from MSM-A refused as replays"), "{text}");
}

/// The frames the first wave forged, each without the chassis key.
fn forged(term: u64) -> Vec<(&'static str, char, Vec<u8>)> {
    let wrong = Key::new([0x42; 32]);
    let hb = |role: u8, incarnation: u32| Heartbeat {
        role,
        priority: 0,
        health: 255,
        backup: wire::NO_SLOT,
        in_sync: true,
        session: 0,
        incarnation,
        config: wire::DigestMark::default(),
        ..Heartbeat::default()
    };
    let frame = |from: u8, to: u8, term: u64, body: Body, key: Option<&Key>, counter: u64| {
        let mut buf = [0u8; wire::MAX_HEARTBEAT];
        let mut w = FrameWriter::new(&mut buf, from, to, term, &body).unwrap();
        if matches!(body, Body::Heartbeat(_)) {
            w.push(&wire::HeartbeatExt { newest: wire::PROTOCOL_VERSION, release: 0 }).unwrap();
        }
        let n = w.finish();
        wire::seal(&mut buf[..n], key, u32::MAX, counter);
        buf[..n].to_vec()
    };
    let mut out = Vec::new();
    for i in 0..20u64 {
        out.push((
            "phantom MASTER in slot C, higher term",
            'A',
            frame(2, 0xFF, term + 0x100, Body::Heartbeat(hb(1, 7)), Some(&wrong), i),
        ));
        out.push((
            "STANDBY heartbeat 'from A'",
            'B',
            frame(0, 0xFF, term, Body::Heartbeat(hb(3, 7)), None, i),
        ));
        out.push((
            "Handover 'from A'",
            'B',
            frame(0, 1, term + (i << 8), Body::Handover { force: true }, Some(&wrong), i),
        ));
        out.push((
            "heartbeat 'from B', another incarnation",
            'A',
            frame(1, 0xFF, term, Body::Heartbeat(hb(2, 99)), None, i),
        ));
        out.push((
            "term u64::MAX",
            'B',
            frame(0, 0xFF, u64::MAX, Body::Heartbeat(hb(1, 7)), Some(&wrong), i),
        ));
    }
    // Version 1 frames from a phantom slot: named, counted, nothing else.
    let mut v1 = vec![wire::MAGIC, 1, 3, 0xFF, 0x00, 0x00, 0x01, 0x00];
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&v1);
    v1.extend_from_slice(&crc.to_le_bytes());
    for _ in 0..20 {
        out.push(("v1 frames from phantom slot D", 'A', v1.clone()));
    }
    out
}

#[test]
fn forged_frames_of_every_kind_cause_no_failover_and_are_counted_by_slot() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &["--churn", "1000"]);
    let term = switch(&c, 'A').term;
    // "3.A": count 3, claimed by slot A; on the wire count << 8 | (0xFF - slot).
    let (count, owner) = term.split_once('.').unwrap();
    let slot = u64::from(owner.as_bytes()[0] - b'A');
    let term_raw = count.parse::<u64>().unwrap() << 8 | (0xFF - slot);
    let before = rebulks(&c);
    let sock = UnixDatagram::unbound().unwrap();
    let frames = forged(term_raw);
    for (what, to, f) in &frames {
        sock.send_to(f, c.path(*to, "sock")).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    c.wait("all counted", Duration::from_secs(5), |c| {
        let (a, b) = (switch(c, 'A'), switch(c, 'B'));
        Ok(by_slot(&a, "C", |r| r.auth) >= 20
            && by_slot(&a, "B", |r| r.auth) >= 20
            && by_slot(&b, "A", |r| r.auth) >= 60
            && by_slot(&a, "D", |r| r.version) >= 20)
    })
    .unwrap();
    // A normal failover is still possible afterwards: the phantom v1 peer blocks nothing.
    no_failover(&c, &term);
    assert_eq!(rebulks(&c), before, "no re-bulk");
    let text = c.text('A', &Request::ShowSwitch).unwrap();
    assert!(text.contains("frames from MSM-D in protocol v1"), "{text}");
    c.wait("in sync", Duration::from_secs(5), |c| Ok(c.in_sync('A'))).unwrap();
    c.ask::<FailingOver>('A', &Request::Failover { force: false }).unwrap();
    c.wait("B took over", Duration::from_secs(5), |c| Ok(c.role('B').as_deref() == Some("MASTER"))).unwrap();
    let b = switch(&c, 'B');
    assert!(!b.term.starts_with("0."), "terms did not wrap: {b:?}");
}

#[test]
fn the_chassis_key_rotates_under_churn_with_no_failover_and_no_rebulk() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_d, mut c) = chassis(HB);
    pair(&mut c, &["--churn", "3000"]);
    let term = switch(&c, 'A').term;
    let before = rebulks(&c);
    let fp_old = switch(&c, 'A').keys.sending;
    let next = c.dir.join("next.key");
    msm_runtime::key_file::generate(&next).unwrap();
    let next = next.display().to_string();
    let checkpointed =
        |c: &Chassis| c.checkpoint('A', Some("fdb")).unwrap().first().map_or(0, |r| r.checkpointed);
    // Each step on A, some traffic, then on B: the nodes are a step apart a while.
    let steps = [Request::KeyInstall { path: next.clone() }, Request::KeySwitch, Request::KeyRetire];
    for step in &steps {
        for slot in ['A', 'B'] {
            c.ask::<KeyStep>(slot, step).unwrap();
            let seen = checkpointed(&c);
            c.wait("changes flow between the steps", Duration::from_secs(5), |c| {
                Ok(checkpointed(c) > seen + 100)
            })
            .unwrap();
            no_failover(&c, &term);
        }
    }
    let (a, b) = (switch(&c, 'A'), switch(&c, 'B'));
    assert_ne!(a.keys.sending, fp_old, "{a:?}");
    assert_eq!(a.keys.sending, b.keys.sending);
    assert!(a.keys.also.is_none() && a.keys.authenticated, "{a:?}");
    assert_eq!(a.frame_errors.auth, 0, "no frame was refused during the rotation: {a:?}");
    assert_eq!(b.frame_errors.auth, 0, "{b:?}");
    assert_eq!(rebulks(&c), before, "no re-bulk");
    c.wait("in sync", Duration::from_secs(5), |c| Ok(c.in_sync('A'))).unwrap();
    // The retired key is refused now; a step out of order is refused by name.
    match c.call('A', &Request::KeySwitch).unwrap() {
        msm_control::Response::Error { message } => {
            assert!(message.contains("no next key"), "{message}")
        }
        r => panic!("{r:?}"),
    }
}
