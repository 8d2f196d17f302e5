//! Per-sink event filters: glob patterns on action and entity type.

use auditfwd_sink::Event;
use glob::Pattern;

/// Which events a sink receives. An empty list matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    actions: Vec<Pattern>,
    entity_types: Vec<Pattern>,
}

impl Filter {
    /// Compiles glob patterns (`USER_*`, `CANDIDATE_?ELETED`). On error,
    /// returns the offending key (`actions[1]`) and a message.
    pub fn new(actions: &[String], entity_types: &[String]) -> Result<Self, (String, String)> {
        let compile = |key: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    Pattern::new(p).map_err(|e| {
                        (
                            format!("{key}[{i}]"),
                            format!(
                                "`{p}` is not a glob pattern ({e}); use * and ? such as \"USER_*\""
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            actions: compile("actions", actions)?,
            entity_types: compile("entity_types", entity_types)?,
        })
    }

    /// Whether `event` passes. An event without an entity type passes only
    /// when no entity-type filter is set.
    pub fn matches(&self, event: &Event) -> bool {
        let action_ok =
            self.actions.is_empty() || self.actions.iter().any(|p| p.matches(&event.action));
        let entity_ok = self.entity_types.is_empty()
            || event
                .entity_type
                .as_deref()
                .is_some_and(|t| self.entity_types.iter().any(|p| p.matches(t)));
        action_ok && entity_ok
    }

    /// Whether the filter lets everything through.
    pub fn is_pass_all(&self) -> bool {
        self.actions.is_empty() && self.entity_types.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditfwd_sink::testing::sample_events;

    #[test]
    fn globs_on_action_and_entity_type() {
        let events = sample_events("acme", 2); // USER_LOGIN / CANDIDATE_DELETED, entity "user"
        let f = Filter::new(&["USER_*".into()], &[]).unwrap();
        assert!(f.matches(&events[0]));
        assert!(!f.matches(&events[1]));
        let f = Filter::new(&[], &["cand*".into()]).unwrap();
        assert!(!f.matches(&events[0]));
        let mut no_type = events[0].clone();
        no_type.entity_type = None;
        assert!(!f.matches(&no_type));
        assert!(Filter::default().matches(&no_type));
        assert_eq!(Filter::new(&["[".into()], &[]).unwrap_err().0, "actions[0]");
    }
}
