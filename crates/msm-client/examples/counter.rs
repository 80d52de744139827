//! The intended use in a few lines: a process whose state (one counter)
//! survives the loss of its management module.
//!
//! ```sh
//! msm-node ... --process counter:1 --app-socket /run/msm/app.sock
//! cargo run -p msm-client --example counter -- /run/msm/app.sock
//! ```
//! Run one on each MSM. The one on the master counts, and each step is on
//! the backup before it is printed; the one on the backup follows, and
//! when its node takes over it counts on from where the master was.

use std::time::Duration;

use msm_client::{Change, Client, Error, Event, Role};

const KEY: u64 = 0;

fn main() -> Result<(), Error> {
    let socket = std::env::args().nth(1).unwrap_or_else(|| "/run/msm/app.sock".into());
    let mut app = Client::connect(socket, "counter", 1, &[])?;
    let mut count: u64 = 0;
    loop {
        if app.role() == Role::Master {
            count += 1;
            let seq = app.set(KEY, &count.to_le_bytes())?;
            // The Redis WAIT of this system: on the backup, or say so.
            let safe = app.wait(seq, Duration::from_secs(1))?;
            println!("count {count}{}", if safe { "" } else { " (not yet on the backup)" });
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        // Backup: apply what the master's process wrote.
        match app.next_event(None)? {
            Some(Event::Record(Change::Set(KEY, v))) => {
                count = v.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
                println!("following: count {count}");
            }
            Some(Event::Role(r)) => println!("node is now {r:?}; counting on from {count}"),
            _ => {}
        }
    }
}
