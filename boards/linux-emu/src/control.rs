//! The control socket between the `msm` CLI and a running node: one JSON
//! request per line, one JSON response per line, over a Unix stream socket.
//! A malformed request gets an error response and changes nothing.

use serde::{Deserialize, Serialize};

/// Which saved configuration (XOS `primary.cfg` / `secondary.cfg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    Primary,
    Secondary,
}

impl Which {
    pub fn file_name(self) -> &'static str {
        match self {
            Which::Primary => "primary.cfg",
            Which::Secondary => "secondary.cfg",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    ShowSwitch,
    ShowCheckpointData {
        process: Option<String>,
    },
    ShowNode,
    ShowConfiguration,
    /// An application's table: row count and digest, and the rows if asked.
    ShowApp {
        app: String,
        rows: bool,
    },
    /// Apply configuration lines in order; the first bad line stops the rest.
    Configure {
        lines: Vec<String>,
    },
    Save {
        which: Option<Which>,
    },
    UseConfiguration {
        which: Which,
    },
    Reboot {
        force: bool,
    },
    Failover {
        force: bool,
    },
    /// Change the workload rate (changes per second) on this node.
    Churn {
        rate: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Response {
    /// `text` is what the operator reads; `json` the same as data.
    Ok {
        text: String,
        json: serde_json::Value,
    },
    Error {
        message: String,
    },
}

impl Response {
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error { message: message.into() }
    }
    pub fn ok(text: impl Into<String>, json: serde_json::Value) -> Response {
        Response::Ok { text: text.into(), json }
    }
}

/// Decode one request line, naming what is wrong with it.
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim()).map_err(|e| format!("malformed request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_named() {
        let r = Request::Configure { lines: vec!["create vlan v1".into()] };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"op":"configure","lines":["create vlan v1"]}"#);
        assert_eq!(parse_request(&s), Ok(r));
        assert!(parse_request("{\"op\":\"launch-missiles\"}").unwrap_err().starts_with("malformed request"));
        assert!(parse_request("not json").is_err());
    }
}
