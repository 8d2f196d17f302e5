//! `${VAR}` interpolation in configuration strings.
//!
//! Interpolation runs on parsed string values, never on the raw text, so an
//! environment variable can not inject TOML structure. `$${` writes a literal
//! `${`.

use std::collections::BTreeSet;

use super::Problem;

/// Replaces `${VAR}` in every string value of `value`, recording a problem
/// (with its key path) for each variable that is not set.
pub(crate) fn interpolate(
    value: &mut toml::Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        toml::Value::String(s) => match expand(s, lookup) {
            Ok(expanded) => *s = expanded,
            Err(missing) => {
                for var in missing {
                    problems.push(Problem::new(
                        path,
                        format!("environment variable `{var}` is not set; export it or write the value in the file"),
                    ));
                }
            }
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), lookup, problems);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                interpolate(item, &child, lookup, problems);
            }
        }
        _ => {}
    }
}

/// Expands one string; returns the names of unset variables on failure.
fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, BTreeSet<String>> {
    let mut out = String::with_capacity(s.len());
    let mut missing = BTreeSet::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            missing.insert(name.to_string());
                        }
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(tail);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_escapes_and_reports_missing() {
        assert_eq!(expand("Bearer ${KEY}!", &env).unwrap(), "Bearer s3cret!");
        assert_eq!(expand("a${EMPTY}b", &env).unwrap(), "ab");
        assert_eq!(expand("cost $5, $${KEY}", &env).unwrap(), "cost $5, ${KEY}");
        assert_eq!(
            expand("unterminated ${KEY", &env).unwrap(),
            "unterminated ${KEY"
        );
        let missing = expand("${NOPE} ${KEY} ${ALSO}", &env).unwrap_err();
        assert_eq!(missing.into_iter().collect::<Vec<_>>(), ["ALSO", "NOPE"]);
    }

    #[test]
    fn reports_the_key_path() {
        let mut v: toml::Value = toml::from_str("[[source]]\napi_key = \"${NOPE}\"").unwrap();
        let mut problems = Vec::new();
        interpolate(&mut v, "", &env, &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "source[0].api_key");
    }
}
