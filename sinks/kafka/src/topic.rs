//! Topic templates: `audit.{source}`, `audit.{source}.{entity_type}`.
//!
//! Values come from the API and may hold anything; Kafka topic names allow
//! only `[a-zA-Z0-9._-]` and 249 characters. Every other character becomes
//! `_` and an empty value becomes `unknown`, so a hostile action can neither
//! fail the send nor route into an unexpected topic outside the template.

use auditfwd_sink::Event;

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Source,
    Action,
    EntityType,
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    /// As written, for messages.
    template: String,
    parts: Vec<Part>,
}

fn legal(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl TopicTemplate {
    /// Parses a template; the error says what is wrong.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("`{template}` has an unclosed `{{`"))?;
            parts.push(match &rest[open + 1..open + close] {
                "source" => Part::Source,
                "action" => Part::Action,
                "entity_type" => Part::EntityType,
                other => {
                    return Err(format!(
                        "unknown placeholder `{{{other}}}`; use {{source}}, {{action}} or {{entity_type}}"
                    ));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        for part in &parts {
            if let Part::Literal(l) = part
                && let Some(bad) = l.chars().find(|c| !legal(*c))
            {
                return Err(format!(
                    "`{template}` contains `{bad}`; Kafka topic names allow letters, digits, `.`, `_` and `-`"
                ));
            }
        }
        if parts.is_empty() {
            return Err("is empty; use e.g. \"audit.{source}\"".into());
        }
        Ok(Self {
            template: template.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// Whether the topic depends only on the source (so the health check
    /// can name every topic in advance).
    pub fn per_source_only(&self) -> bool {
        !self
            .parts
            .iter()
            .any(|p| matches!(p, Part::Action | Part::EntityType))
    }

    /// The topic of `event`.
    pub fn render(&self, event: &Event) -> String {
        self.render_with(&event.source, &event.action, event.entity_type.as_deref())
    }

    /// The topic for these values.
    pub fn render_with(&self, source: &str, action: &str, entity_type: Option<&str>) -> String {
        let mut topic = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => topic.push_str(l),
                Part::Source => push_clean(&mut topic, source),
                Part::Action => push_clean(&mut topic, action),
                Part::EntityType => push_clean(&mut topic, entity_type.unwrap_or("")),
            }
        }
        // "." and ".." are not valid topic names either.
        if topic.chars().all(|c| c == '.') {
            topic = "unknown".into();
        }
        topic.truncate(MAX_TOPIC_LEN);
        topic
    }
}

fn push_clean(topic: &mut String, value: &str) {
    if value.is_empty() {
        topic.push_str("unknown");
        return;
    }
    topic.extend(value.chars().map(|c| if legal(c) { c } else { '_' }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_cleans_hostile_values() {
        let t = TopicTemplate::parse("audit.{source}.{entity_type}.{action}").unwrap();
        assert_eq!(
            t.render_with("acme", "USER_LOGIN", Some("user")),
            "audit.acme.user.USER_LOGIN"
        );
        assert_eq!(
            t.render_with("acme", "a\nb|c/../d", None),
            "audit.acme.unknown.a_b_c_.._d"
        );
        assert_eq!(
            t.render_with("acme", "日本", Some("")).len(),
            "audit.acme.unknown.__".len()
        );
        assert_eq!(
            t.render_with("acme", &"x".repeat(400), None).len(),
            MAX_TOPIC_LEN
        );
        assert!(!t.per_source_only());
        assert!(
            TopicTemplate::parse("audit.{source}")
                .unwrap()
                .per_source_only()
        );
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(
            TopicTemplate::parse("audit.{tenant}")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(
            TopicTemplate::parse("audit/{source}")
                .unwrap_err()
                .contains("contains `/`")
        );
        assert!(
            TopicTemplate::parse("audit.{source")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(TopicTemplate::parse("").is_err());
    }
}
