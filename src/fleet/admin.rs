//! `auditfwd state show|reset|set-since` in fleet mode: the same commands
//! against the state topic. `show` reads without claiming (safe while the
//! fleet runs). `reset` and `set-since` claim the source with a new epoch,
//! so no replica can write over the new cursor: a replica that still runs
//! the source yields to the claim at its next pass and loads the new cursor
//! when it claims the source again (after `session_timeout`). They still
//! refuse while the group lists members, to change cursors only in a
//! stopped fleet; some brokers (tansu) list none.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::store::{KafkaStore, KafkaStoreConfig, StateTopic};
use crate::config::FleetConfig;
use crate::cursor::CursorState;
use crate::cursor::store::StoreError;

/// Why a fleet state command can not go on.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The state topic failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Replicas are running.
    #[error(
        "{members} replica(s) of fleet group `{group}` are running ({names}); stop every replica before changing a cursor (a running owner would not see the change until its next handover)"
    )]
    Running {
        /// The group.
        group: String,
        /// How many members.
        members: usize,
        /// Their client ids and hosts.
        names: String,
    },
    /// The group could not be described.
    #[error(
        "cannot tell whether fleet group `{group}` has running replicas: {reason}; check fleet.brokers"
    )]
    Group {
        /// The group.
        group: String,
        /// Why.
        reason: String,
    },
}

/// The state topic, for the commands (as replica `auditfwd-admin`).
pub fn connect(config: &FleetConfig) -> Result<Arc<StateTopic>, StoreError> {
    StateTopic::connect(KafkaStoreConfig {
        client: config.client().into_iter().collect(),
        topic: config.state_topic.clone(),
        replica: "auditfwd-admin".into(),
        timeout: config.store_timeout,
    })
}

/// The cursor of `source` as its next owner would load it.
pub fn peek(topic: &Arc<StateTopic>, source: &str) -> Result<Option<CursorState>, StoreError> {
    Ok(KafkaStore::on(source, Arc::clone(topic)).peek()?.0)
}

/// Makes `state` the cursor of `source`, whatever was there: returns the
/// previous one.
pub fn replace(
    topic: &Arc<StateTopic>,
    source: &str,
    state: &CursorState,
) -> Result<Option<CursorState>, StoreError> {
    let mut store = KafkaStore::on(source, Arc::clone(topic));
    let (previous, _) = store.peek()?;
    store.replace(state)?;
    Ok(previous)
}

/// Refuses while any replica is a member of the group.
pub fn ensure_stopped(config: &FleetConfig) -> Result<(), AdminError> {
    let fail = |reason: String| AdminError::Group {
        group: config.group.clone(),
        reason,
    };
    let mut client = ClientConfig::new();
    for (k, v) in config.client() {
        client.set(k, v);
    }
    let consumer: BaseConsumer = client.create().map_err(|e| fail(e.to_string()))?;
    let groups = consumer
        .fetch_group_list(Some(&config.group), Duration::from_secs(30))
        .map_err(|e| fail(e.to_string()))?;
    let members: Vec<String> = groups
        .groups()
        .iter()
        .filter(|g| g.name() == config.group)
        .flat_map(|g| g.members())
        .map(|m| format!("{} on {}", m.client_id(), m.client_host()))
        .collect();
    if members.is_empty() {
        Ok(())
    } else {
        Err(AdminError::Running {
            group: config.group.clone(),
            members: members.len(),
            names: members.join(", "),
        })
    }
}
