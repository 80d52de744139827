//! The client side: one request over a node's control socket, one answer.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Request, Response};

/// Why a request got no answer.
#[derive(Debug)]
pub struct CallError {
    /// The control socket.
    pub path: PathBuf,
    /// What went wrong.
    pub what: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.what)
    }
}

impl std::error::Error for CallError {}

/// One request over the control socket at `path`. A request that waits for
/// the backup (`configure --wait`, `save --wait`) is given its own time on
/// top of 30 s.
pub fn call(path: &Path, req: &Request) -> Result<Response, CallError> {
    let err = |what: String| CallError { path: path.to_path_buf(), what };
    let mut s = UnixStream::connect(path).map_err(|e| err(format!("connecting: {e}")))?;
    let waits = match req {
        Request::Configure { wait, .. } | Request::Save { wait, .. } => wait.unwrap_or(0),
        _ => 0,
    };
    s.set_read_timeout(Some(Duration::from_secs(30) + Duration::from_millis(waits)))
        .map_err(|e| err(e.to_string()))?;
    let mut line = serde_json::to_string(req).map_err(|e| err(e.to_string()))?;
    line.push('\n');
    // A node closes a client it does not admit without reading: the write
    // or the read sees the connection end (reset, if our request was unread).
    let closed = || {
        err("the node closed the connection without answering (it stopped, or this user may not use \
             its control socket: only the node's user, root and its --socket-group may)"
            .into())
    };
    let ended = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => closed(),
        _ => err(e.to_string()),
    };
    s.write_all(line.as_bytes()).map_err(ended)?;
    let mut resp = String::new();
    if BufReader::new(s).read_line(&mut resp).map_err(ended)? == 0 {
        return Err(closed());
    }
    serde_json::from_str(&resp).map_err(|e| err(format!("bad response {resp:?}: {e}")))
}
