//! The control socket between the `msm` CLI and a running node: one JSON
//! request per line, one JSON response per line, over a Unix stream socket.
//! A malformed request gets an error response and changes nothing.

use msm_flash::ConfigName;
use serde::{Deserialize, Serialize};

mod answers;
mod client;

pub use answers::{
    AlsoKey, Answer, AppRow, AppTable, CheckReason, CheckpointRow, Churning, Configuration, Configured,
    FailingOver, Failover, FailoverCheck, FailoverHistory, FrameErrors, KeyStep, Keys, LogLevel, Mismatch,
    NodeRow, OnBackup, Path, Peer, Rebooting, Saved, SavedFile, Selected, SlotErrors, SplitBrain, Switch,
    SyncedFile, Synchronized,
};
pub use client::{CallError, call};

/// Rows in one `show app --rows` answer: an answer is built and sent
/// without holding the node, and a million rows come as pages.
pub const MAX_ROWS: usize = 5000;

fn is_zero(v: &u64) -> bool {
    *v == 0
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
    /// `show failover history`: this module's failovers, newest first.
    ShowFailoverHistory,
    /// An application's table: row count and digest, and the rows if asked,
    /// at most [`MAX_ROWS`] of them from key `from` on (the answer's `next`
    /// is where the following page starts).
    ShowApp {
        app: String,
        rows: bool,
        #[serde(default, skip_serializing_if = "is_zero")]
        from: u64,
    },
    /// Apply configuration lines in order; the first bad line stops the rest.
    /// With `wait` (milliseconds), answer once the backup has every change,
    /// or when the time is up, saying how far behind it is.
    Configure {
        lines: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait: Option<u64>,
    },
    Save {
        #[serde(default, with = "config_name::option")]
        which: Option<ConfigName>,
        /// As for `Configure`: answer once the backup's flash has the save.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait: Option<u64>,
    },
    UseConfiguration {
        #[serde(with = "config_name")]
        which: ConfigName,
    },
    /// `synchronize`: the master copies both saved configurations and the
    /// selection to the backup's flash, and answers once the backup's flash
    /// acknowledged them (their digest checked) or `wait` ms are over.
    Synchronize {
        wait: u64,
    },
    Reboot {
        force: bool,
    },
    Failover {
        force: bool,
    },
    /// `run msm-failover check`: allow, allow with a named loss, or refuse,
    /// and what decides; nothing is started.
    FailoverCheck,
    /// Change the workload rate (changes per second) on this node.
    Churn {
        rate: u32,
    },
    /// Key rotation step 1: accept frames under the key in this file (read by the node).
    KeyInstall {
        path: String,
    },
    /// Step 2: send under the installed key; the previous one is still accepted.
    KeySwitch,
    /// Step 3: stop accepting the previous key.
    KeyRetire,
    /// `debug LEVEL`: the node's log level from now on (error, warn, info,
    /// debug, trace); answered with the level before.
    Debug {
        level: String,
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

    /// An answer: `text` for the operator, `answer` as its data.
    pub fn ok(text: impl Into<String>, answer: &impl Answer) -> Response {
        match serde_json::to_value(answer) {
            Ok(json) => Response::Ok { text: text.into(), json },
            Err(e) => Response::error(format!("encoding the answer: {e}")),
        }
    }

    /// The answer's data as `A`, or why not: the node's error message, or
    /// data of another shape (a request answered by another version).
    pub fn answer<A: Answer>(self) -> Result<A, String> {
        match self {
            Response::Ok { json, .. } => {
                serde_json::from_value(json).map_err(|e| format!("an answer of another shape: {e}"))
            }
            Response::Error { message } => Err(message),
        }
    }

    /// The operator's text, or the node's error message.
    pub fn text(self) -> Result<String, String> {
        match self {
            Response::Ok { text, .. } => Ok(text),
            Response::Error { message } => Err(message),
        }
    }
}

/// The word for a saved configuration on the control protocol and the `msm`
/// command line ("primary", "secondary"). `ConfigName` is the flash's type,
/// `no_std` without serde: its words live here, at the protocol edge.
pub fn config_word(name: ConfigName) -> &'static str {
    match name {
        ConfigName::Primary => "primary",
        ConfigName::Secondary => "secondary",
    }
}

/// Every [`config_word`], in the order the operator sees them.
pub const CONFIG_WORDS: [&str; 2] = ["primary", "secondary"];

/// The configuration a [`config_word`] names.
pub fn parse_config_word(word: &str) -> Option<ConfigName> {
    [ConfigName::Primary, ConfigName::Secondary].into_iter().find(|n| config_word(*n) == word)
}

/// serde for a [`ConfigName`] field of the protocol, as its [`config_word`]
/// (`#[serde(with = "config_name")]`).
mod config_name {
    use msm_flash::ConfigName;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{CONFIG_WORDS, config_word, parse_config_word};

    pub fn serialize<S: Serializer>(name: &ConfigName, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(config_word(*name))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ConfigName, D::Error> {
        let word = String::deserialize(d)?;
        parse_config_word(&word).ok_or_else(|| D::Error::unknown_variant(&word, &CONFIG_WORDS))
    }

    /// The same for an optional field (`null` or absent: `None`).
    pub mod option {
        use msm_flash::ConfigName;
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        /// One name, through the functions above.
        #[derive(Serialize, Deserialize)]
        struct Name(#[serde(with = "super")] ConfigName);

        pub fn serialize<S: Serializer>(name: &Option<ConfigName>, s: S) -> Result<S::Ok, S::Error> {
            name.map(Name).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ConfigName>, D::Error> {
            Ok(Option::<Name>::deserialize(d)?.map(|Name(n)| n))
        }
    }
}

/// Decode one request line, naming what is wrong with it.
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim()).map_err(|e| format!("malformed request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/control-protocol.md lists every request: one of each variant
    /// (a new one fails to compile here until it is added) names its op there.
    #[test]
    fn the_document_lists_every_request() {
        let doc = include_str!("../../../docs/control-protocol.md");
        let every = |r: &Request| match r {
            Request::ShowSwitch
            | Request::ShowCheckpointData { .. }
            | Request::ShowNode
            | Request::ShowConfiguration
            | Request::ShowFailoverHistory
            | Request::ShowApp { .. }
            | Request::Configure { .. }
            | Request::Save { .. }
            | Request::UseConfiguration { .. }
            | Request::Synchronize { .. }
            | Request::Reboot { .. }
            | Request::Failover { .. }
            | Request::FailoverCheck
            | Request::Churn { .. }
            | Request::KeyInstall { .. }
            | Request::KeySwitch
            | Request::KeyRetire
            | Request::Debug { .. } => (),
        };
        let all = [
            Request::ShowSwitch,
            Request::ShowCheckpointData { process: None },
            Request::ShowNode,
            Request::ShowConfiguration,
            Request::ShowFailoverHistory,
            Request::ShowApp { app: "fdb".into(), rows: false, from: 0 },
            Request::Configure { lines: vec![], wait: None },
            Request::Save { which: None, wait: None },
            Request::UseConfiguration { which: ConfigName::Primary },
            Request::Synchronize { wait: 10_000 },
            Request::Reboot { force: false },
            Request::Failover { force: false },
            Request::FailoverCheck,
            Request::Churn { rate: 0 },
            Request::KeyInstall { path: String::new() },
            Request::KeySwitch,
            Request::KeyRetire,
            Request::Debug { level: "debug".into() },
        ];
        for r in &all {
            every(r);
            let j = serde_json::to_value(r).unwrap();
            let op = j["op"].as_str().unwrap();
            assert!(doc.contains(&format!("| `{op}` |")), "docs/control-protocol.md does not list `{op}`");
        }
    }

    #[test]
    fn requests_round_trip_and_garbage_is_named() {
        let r = Request::Configure { lines: vec!["create vlan v1".into()], wait: None };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"op":"configure","lines":["create vlan v1"]}"#);
        assert_eq!(parse_request(&s), Ok(r));
        assert!(parse_request("{\"op\":\"launch-missiles\"}").unwrap_err().starts_with("malformed request"));
        assert!(parse_request("not json").is_err());
    }

    #[test]
    fn an_answer_reads_back_as_its_type_and_anything_else_is_named() {
        let sent = Selected { selected: "secondary".into() };
        let r = Response::ok("selected", &sent);
        let line = serde_json::to_string(&r).unwrap();
        let back: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(back.clone().answer::<Selected>(), Ok(sent));
        let other = back.answer::<Configured>().unwrap_err();
        assert!(other.starts_with("an answer of another shape"), "{other}");
        let refused = Response::error("the master is MSM-B").answer::<Selected>();
        assert_eq!(refused, Err("the master is MSM-B".to_string()));
        assert_eq!(Response::error("no").text(), Err("no".to_string()));
    }

    #[test]
    fn config_names_travel_as_words() {
        for which in [None, Some(ConfigName::Primary), Some(ConfigName::Secondary)] {
            for wait in [None, Some(250)] {
                let r = Request::Save { which, wait };
                assert_eq!(parse_request(&serde_json::to_string(&r).unwrap()), Ok(r));
            }
        }
        let r = Request::UseConfiguration { which: ConfigName::Secondary };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"op":"use-configuration","which":"secondary"}"#);
        assert_eq!(parse_request(r#"{"op":"save"}"#), Ok(Request::Save { which: None, wait: None }));
        let e = parse_request(r#"{"op":"save","which":"tertiary"}"#).unwrap_err();
        assert!(e.contains("unknown variant `tertiary`, expected `primary` or `secondary`"), "{e}");
    }
}
