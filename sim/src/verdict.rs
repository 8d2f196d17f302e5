//! What a forwarder delivered, compared with the tenant's ground truth: the
//! verdict both `auditfwd demo` and the integration tests give.
//!
//! The truth may hold an id more than once (an id reused with new content,
//! or a numeric id and a string id with the same digits): each must then
//! arrive as often as the truth holds it.

use std::collections::HashMap;

use super::{Expect, TruthEvent};

/// Delivered records compared with the ground truth.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Deliverable events the tenant holds.
    pub expected: usize,
    /// Ids delivered fewer times than the truth holds them.
    pub missing: Vec<String>,
    /// Ids delivered more often than the truth holds them, with the count.
    pub duplicates: Vec<(String, usize)>,
    /// Delivered ids the tenant never served as deliverable (forged).
    pub unexpected: Vec<String>,
}

impl Verdict {
    /// Compares `counts` (how often each id was delivered) with `truth`.
    pub fn of(truth: &[TruthEvent], counts: &HashMap<String, usize>) -> Self {
        let mut wanted: HashMap<&str, usize> = HashMap::new();
        for event in truth.iter().filter(|e| e.expect == Expect::Deliver) {
            if let Some(id) = event.id.as_deref() {
                *wanted.entry(id).or_default() += 1;
            }
        }
        let mut missing: Vec<String> = wanted
            .iter()
            .filter(|(id, n)| counts.get(**id).copied().unwrap_or(0) < **n)
            .map(|(id, _)| id.to_string())
            .collect();
        missing.sort();
        let mut duplicates: Vec<(String, usize)> = counts
            .iter()
            .filter(|(id, n)| wanted.get(id.as_str()).is_some_and(|w| *n > w))
            .map(|(id, n)| (id.clone(), *n))
            .collect();
        duplicates.sort();
        let mut unexpected: Vec<String> = counts
            .keys()
            .filter(|id| !wanted.contains_key(id.as_str()))
            .cloned()
            .collect();
        unexpected.sort();
        Self {
            expected: wanted.values().sum(),
            missing,
            duplicates,
            unexpected,
        }
    }

    /// Nothing missing, twice or forged.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.duplicates.is_empty() && self.unexpected.is_empty()
    }

    /// Panics with a summary unless [`Verdict::is_exact`].
    pub fn assert_exact(&self) {
        assert!(self.is_exact(), "{self}");
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expected {} events: {} missing {:?}, {} duplicated {:?}, {} unexpected {:?}",
            self.expected,
            self.missing.len(),
            &self.missing[..self.missing.len().min(10)],
            self.duplicates.len(),
            &self.duplicates[..self.duplicates.len().min(10)],
            self.unexpected.len(),
            &self.unexpected[..self.unexpected.len().min(10)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, expect: Expect) -> TruthEvent {
        TruthEvent {
            seq: 0,
            id: Some(id.into()),
            created_ms: 0,
            visible_ms: 0,
            expect,
            action: None,
            reused: false,
        }
    }

    #[test]
    fn an_id_the_truth_holds_twice_must_arrive_twice() {
        let truth = [
            event("a", Expect::Deliver),
            event("7", Expect::Deliver),
            event("7", Expect::Deliver),
            event("x", Expect::DeadLetter),
        ];
        let counts = |pairs: &[(&str, usize)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<HashMap<_, _>>()
        };
        assert!(Verdict::of(&truth, &counts(&[("a", 1), ("7", 2)])).is_exact());
        let v = Verdict::of(&truth, &counts(&[("a", 2), ("7", 1), ("x", 1)]));
        assert_eq!(v.missing, ["7"]);
        assert_eq!(v.duplicates, [("a".to_string(), 2)]);
        assert_eq!(v.unexpected, ["x"]);
        assert_eq!(v.expected, 3);
    }
}
