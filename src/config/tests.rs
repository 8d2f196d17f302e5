use std::path::{Path, PathBuf};
use std::time::Duration;

use auditfwd_sink::testing::problem_keys;

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "ACME_KEY" => Some("k-123-secret".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(
        text,
        Path::new("auditfwd.toml"),
        Path::new("/nonexistent"),
        &env,
    )
}

const GOOD: &str = r#"
[state]
dir = "/var/lib/auditfwd"

[telemetry]
listen = "127.0.0.1:9898"
log_format = "json"

[[source]]
name = "acme"
base_url = "https://acme.peoplelensai.com"
api_key = "${ACME_KEY}"
poll_interval = "15s"
lookback = "5m"
start_at = "24h ago"
actions = ["USER_LOGIN"]
rate_limit = { requests_per_second = 5, burst = 2 }

[[sink]]
name = "files"
type = "file"
format = "json"
path = "/var/log/auditfwd/{source}/%Y-%m-%d.jsonl"
max_bytes = 104857600
compression = "zstd"
actions = ["USER_*"]

[[sink]]
name = "pipe"
type = "stdout"
format = "raw"
sources = ["acme"]
"#;

#[test]
fn a_complete_config_parses_with_defaults_filled_in() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.sources.len(), 1);
    let s = &c.sources[0];
    assert_eq!(s.api_key.expose(), "k-123-secret");
    assert_eq!(s.page_size, 100);
    assert_eq!(s.poll_interval, std::time::Duration::from_secs(15));
    assert_eq!(s.burst.get(), 2);
    assert_eq!(s.request_timeout, std::time::Duration::from_secs(30));
    assert_eq!(c.sinks.len(), 2);
    let file = c.sinks[0]
        .kind
        .config::<auditfwd_sink_file::FileSinkFactory>();
    assert_eq!(file.unwrap().max_bytes.map(|n| n.get()), Some(104857600));
    assert_eq!(c.sinks[1].format, crate::format::Format::Raw);
    assert_eq!(c.telemetry.log_format, LogFormat::Json);
    assert_eq!(
        c.state.dead_letter_dir(),
        Path::new("/var/lib/auditfwd/dead-letter")
    );
}

#[test]
fn the_api_key_never_shows_in_debug_output() {
    let c = parse(GOOD).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("k-123-secret"), "{debug}");
    assert!(debug.contains("Secret(***)"));
}

#[test]
fn every_problem_is_reported_at_once_with_file_and_key() {
    let text = r#"
[[source]]
name = "acme corp"
base_url = "http://acme.example.com"
api_key = "${MISSING_KEY}"
page_size = 500
start_at = "yesterday"

[[source]]
name = "globex"
base_url = "https://globex.example.com"
api_key = "x"
pagesize = 10

[[sink]]
name = "k"
type = "kafak"

[[sink]]
name = "f"
type = "file"
path = "/x/{tenant}/out.jsonl"
format = "xml"
"#;
    let err = parse(text).unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("auditfwd.toml: "), "{shown}");
    assert_eq!(
        problem_keys(&err.problems),
        [
            "source[0].api_key",
            "source[0] (\"acme corp\").name",
            "source[0] (\"acme corp\").base_url",
            "source[0] (\"acme corp\").page_size",
            "source[0] (\"acme corp\").start_at",
            "source[1].pagesize",
            "sink[0] (\"k\").type",
            "sink[1] (\"f\").format",
            "sink[1] (\"f\").path",
        ],
        "{shown}"
    );
    assert!(
        shown.contains("environment variable `MISSING_KEY` is not set"),
        "{shown}"
    );
    assert!(shown.contains("allow_http = true"), "{shown}");
    assert!(shown.contains("use 2 to 100"), "{shown}");
    assert!(shown.contains("unknown field `pagesize`"), "{shown}");
    assert!(
        shown.contains("unknown sink type `kafak`; available: file, stdout"),
        "{shown}"
    );
    assert!(shown.contains("unknown format `xml`"), "{shown}");
    assert!(shown.contains("unknown placeholder `{tenant}`"), "{shown}");
}

#[test]
fn structure_errors_name_the_fix() {
    let err = parse("[source]\nname = \"a\"\n[[sinks]]\nname = \"b\"\n").unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("source: must be written as [[source]]"),
        "{shown}"
    );
    assert!(
        shown.contains("sinks: unknown section (write [[sink]])"),
        "{shown}"
    );
    let err = parse("[[source]\n").unwrap_err();
    assert!(err.to_string().contains("invalid TOML"), "{err}");
    let err = parse("").unwrap_err();
    assert_eq!(problem_keys(&err.problems), ["source", "sink"]);
}

#[test]
fn names_must_be_unique_and_references_must_exist() {
    let text = r#"
[[source]]
name = "a"
base_url = "https://a.example.com"
api_key = "k"
[[source]]
name = "a"
base_url = "https://b.example.com"
api_key = "k"
[[sink]]
name = "s"
type = "stdout"
sources = ["nope"]
"#;
    let err = parse(text).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("source[1].name: `a` is used by another source"),
        "{shown}"
    );
    assert!(
        shown.contains("sink[0].sources[0]: no source is named `nope`"),
        "{shown}"
    );
    assert!(
        shown.contains("no sink takes events from source `a`"),
        "{shown}"
    );
}

#[test]
fn api_key_file_is_read_relative_to_the_config_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "from-file\n").unwrap();
    let text = r#"
[[source]]
name = "a"
base_url = "https://a.example.com"
api_key_file = "key"
[[sink]]
name = "s"
type = "stdout"
"#;
    let c = Config::parse(text, &dir.path().join("auditfwd.toml"), dir.path(), &env).unwrap();
    assert_eq!(c.sources[0].api_key.expose(), "from-file");
    let missing = text.replace("\"key\"", "\"nope\"");
    let err = Config::parse(&missing, Path::new("auditfwd.toml"), dir.path(), &env).unwrap_err();
    assert!(
        err.to_string().contains("api_key_file: cannot read"),
        "{err}"
    );
}

#[test]
fn env_values_can_not_inject_structure() {
    let text = r#"
[[source]]
name = "a"
base_url = "https://a.example.com"
api_key = "${EVIL}"
[[sink]]
name = "s"
type = "stdout"
"#;
    let evil =
        |name: &str| (name == "EVIL").then(|| "x\"\n[[sink]]\nname = \"injected\"".to_string());
    // The value stays one string: no second sink appears; as an API key it
    // is refused (two lines can not be a Bearer token), without being shown.
    let err = Config::parse(text, Path::new("auditfwd.toml"), Path::new("."), &evil).unwrap_err();
    assert_eq!(problem_keys(&err.problems), ["source[0] (\"a\").api_key"]);
    assert!(!err.to_string().contains("injected"), "{err}");
    let in_a_path = text
        .replace("api_key = \"${EVIL}\"", "api_key = \"k\"")
        .replace(
            "type = \"stdout\"",
            "type = \"file\"\npath = \"/tmp/${EVIL}\"",
        );
    let c = Config::parse(
        &in_a_path,
        Path::new("auditfwd.toml"),
        Path::new("."),
        &evil,
    )
    .unwrap();
    assert_eq!(c.sinks.len(), 1);
    assert!(format!("{:?}", c.sinks[0]).contains("injected"));
}

#[test]
fn every_refused_key_of_a_table_is_reported_in_one_run() {
    let text = r#"
[[source]]
name = "acme"
base_url = "https://acme.example.com"
api_key = "k"
page_size = "many"
poll_interval = 30
lookback = "forever"
bogus = 1
retry = { initial_backoff = 5, max_backoff = "1s" }

[[sink]]
name = "f"
type = "file"
path = "/tmp/x.jsonl"
max_bytes = "lots"
fsync = 3

[telemetry]
listen = "nowhere"
log_formt = "json"
"#;
    let err = parse(text).unwrap_err();
    let mut found = problem_keys(&err.problems);
    found.sort();
    assert_eq!(
        found,
        [
            "sink[0] (\"f\").fsync",
            "sink[0] (\"f\").max_bytes",
            "source[0].bogus",
            "source[0].lookback",
            "source[0].page_size",
            "source[0].poll_interval",
            "source[0].retry.initial_backoff",
            "telemetry.listen",
            "telemetry.log_formt",
        ],
        "{err}"
    );
}

#[test]
fn secrets_never_appear_in_errors() {
    let secret = "sk_live_0123456789abcdef";
    let env = |name: &str| (name == "PS" || name == "KEY").then(|| secret.to_string());
    // A type error on an interpolated value, and on a literal one.
    for text in [
        "[[source]]\nname = \"a\"\nbase_url = \"https://a.example.com\"\napi_key = \"k\"\npage_size = \"${PS}\"\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n",
        "[[source]]\nname = \"a\"\nbase_url = \"https://a.example.com\"\napi_key = [\"${KEY}\"]\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n",
        "[[source]]\nname = \"a\"\napi_key = \"sk_live_0123456789abcdef\" oops\n",
        "[[source]]\nname = \"a\"\napi_key = \"sk_live_0123456789abcdef\nmore\"\n",
        "[[source]]\nname = \"a\"\nbase_url = \"https://a.example.com\"\napi_key = \"${KEY} x\"\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n",
    ] {
        let err = Config::parse(text, Path::new("t.toml"), Path::new("."), &env).unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(!err.problems.is_empty());
    }
    let err = Config::parse(
        "[[source]]\nname = \"a\"\napi_key = \"sk_live_0123456789abcdef\" oops\n",
        Path::new("t.toml"),
        Path::new("."),
        &env,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("invalid TOML at line 3, column"),
        "{err}"
    );
}

#[test]
fn a_base_url_with_credentials_is_refused_without_showing_them() {
    let text = "[[source]]\nname = \"a\"\nbase_url = \"https://user:hunter2@a.example.com\"\napi_key = \"k\"\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n";
    let err = parse(text).unwrap_err();
    assert_eq!(problem_keys(&err.problems), ["source[0] (\"a\").base_url"]);
    assert!(
        err.to_string()
            .contains("must not carry a user or password"),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn an_api_key_file_must_hold_one_line_and_should_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let text = "[[source]]\nname = \"a\"\nbase_url = \"https://a.example.com\"\napi_key_file = \"key\"\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n";
    let key = dir.path().join("key");
    let load = || Config::parse(text, Path::new("t.toml"), dir.path(), &|_| None);
    std::fs::write(&key, "sk_live_first\nsk_live_second\n").unwrap();
    let err = load().unwrap_err();
    assert!(
        err.to_string().contains("holds more than one line"),
        "{err}"
    );
    assert!(!err.to_string().contains("sk_live"), "{err}");
    std::fs::write(&key, "sk_live_only\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = load().unwrap();
    assert_eq!(c.sources[0].api_key.expose(), "sk_live_only");
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].message.contains("mode 0644"),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings[0].message.contains("chmod 600"),
        "{:?}",
        c.warnings
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load().unwrap().warnings.is_empty());
}

#[test]
fn far_away_start_points_and_durations_are_refused_not_panicked_on() {
    let text = |start_at: &str, lookback: &str| {
        format!(
            "[[source]]\nname = \"a\"\nbase_url = \"https://a.example.com\"\napi_key = \"k\"\nstart_at = \"{start_at}\"\nlookback = \"{lookback}\"\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n"
        )
    };
    let err = parse(&text("300000y ago", "10m")).unwrap_err();
    assert!(err.to_string().contains("longer than ten years"), "{err}");
    let err = parse(&text("now", "1000000y")).unwrap_err();
    assert_eq!(problem_keys(&err.problems), ["source[0].lookback"]);
    let c = parse(&text("9y ago", "10m")).unwrap();
    let _ = c.sources[0].start_at.resolve(chrono::Utc::now());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

    /// Any text: an error or a config, never a panic.
    #[test]
    fn no_text_panics_the_parser(text in "\\PC{0,400}") {
        let _ = parse(&text);
    }

    /// Any value in any key of a valid config: an error or a config, never
    /// a panic; and a config's start point resolves.
    #[test]
    fn no_value_panics_the_parser(
        key in proptest::sample::select(vec![
            "start_at", "lookback", "poll_interval", "late_sweep", "request_timeout",
            "page_size", "max_body", "prefetch", "max_batches_in_flight", "base_url", "name",
            "api_key", "actions",
            "rate_limit", "retry", "proxy",
        ]),
        value in proptest::prop_oneof![
            "\"[0-9]{1,10}(ms|s|m|h|d|w|y)( ago)?\"",
            "\"[0-9]{1,25}[a-z]{0,3}( ago)?\"",
            "-?[0-9]{1,25}",
            "\"\\PC{0,40}\"",
            proptest::strategy::Just("{ requests_per_second = 0, burst = 0 }".to_string()),
            proptest::strategy::Just("{ initial_backoff = \"0s\", max_backoff = \"99999y\" }".to_string()),
            proptest::strategy::Just("[\"A\", 1]".to_string()),
        ],
    ) {
        let text = format!(
            "[[source]]\nname = \"a\"\nbase_url = \"https://a.example.com\"\napi_key = \"k\"\n{key} = {value}\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n"
        );
        if let Ok(c) = parse(&text) {
            let _ = c.sources[0].start_at.resolve(chrono::Utc::now());
        }
    }
}

#[test]
fn leef_delimiter_is_checked_and_applies_to_leef_only() {
    let sink = |extra: &str| {
        format!(
            "[[source]]\nname = \"a\"\nbase_url = \"https://a.example.com\"\napi_key = \"k\"\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n{extra}\n"
        )
    };
    let c = parse(&sink("format = \"leef\"\nleef_delimiter = \"x09\"")).unwrap();
    assert_eq!(
        c.sinks[0].format,
        crate::format::Format::Leef { delimiter: '\t' }
    );
    let err = parse(&sink("format = \"leef\"\nleef_delimiter = \"|\""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sink[0] (\"s\").leef_delimiter: '|' can not delimit"),
        "{err}"
    );
    let err = parse(&sink("format = \"cef\"\nleef_delimiter = \"^\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("applies to format = \"leef\" only"), "{err}");
}

#[test]
fn enrichment_settings_are_checked() {
    let source = |enrich: &str| {
        format!(
            "[[source]]\nname = \"a\"\nbase_url = \"https://a.example.com\"\napi_key = \"k\"\n[source.enrich]\n{enrich}\n[[sink]]\nname = \"s\"\ntype = \"stdout\"\n"
        )
    };
    let c = parse(&source("preset = \"peoplelens-legacy\"\nttl = \"1h\"")).unwrap();
    let e = c.sources[0].enrich.as_ref().unwrap();
    assert_eq!(e.preset.url, "/api/users/{id}");
    assert_eq!(e.ttl, std::time::Duration::from_secs(3600));
    let err = parse(&source("preset = \"okta\"")).unwrap_err().to_string();
    assert!(
        err.contains(
            "source[0] (\"a\").enrich.preset: unknown preset `okta`; available: peoplelens-v1"
        ),
        "{err}"
    );
    let err = parse(&source("preset = \"customer-scoped\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("enrich.customer_id: is required"), "{err}");
    let err = parse(&source(
        "url = \"/u/{user}\"\n[source.enrich.fields]\nemail = \"email\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("enrich.url: `/u/{user}` must be a path starting with / and containing {id}"),
        "{err}"
    );
    assert!(
        err.contains("enrich.fields.email: `email` is not a JSON pointer"),
        "{err}"
    );
    let err = parse(&source(
        "preset = \"jsonapi\"\nbase_url = \"http://users.internal\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("enrich.base_url: must be https"), "{err}");
}

/// A CA, a client certificate it issued with its key, and an unrelated key,
/// as PEM files in `dir`.
fn write_pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();
    let other = KeyPair::generate().unwrap();
    std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
    std::fs::write(dir.join("garbage.pem"), "not a certificate\n").unwrap();
}

fn parse_in(dir: &Path, sources: &str) -> Result<Config, ConfigError> {
    let text = format!("[[sink]]\nname = \"out\"\ntype = \"stdout\"\n\n{sources}");
    Config::parse(&text, Path::new("auditfwd.toml"), dir, &env)
}

fn tls_source(name: &str, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nbase_url = \"https://a.example.com\"\napi_key = \"k\"\n{extra}\n"
    )
}

#[test]
fn tls_files_are_read_checked_and_every_problem_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());

    let good = parse_in(
        dir.path(),
        &tls_source(
            "a",
            "proxy = \"http://proxy.internal:3128\"\n[source.tls]\nca_file = \"ca.pem\"\ncert_file = \"client.pem\"\nkey_file = \"client.key\"",
        ),
    )
    .unwrap();
    let source = &good.sources[0];
    assert_eq!(source.tls.extra_roots.len(), 1);
    assert!(source.tls.identity.is_some());
    assert_eq!(
        source.proxy.as_ref().unwrap().expose().as_str(),
        "http://proxy.internal:3128/"
    );
    let defaults = parse_in(dir.path(), &tls_source("a", "")).unwrap();
    assert!(defaults.sources[0].tls.extra_roots.is_empty());
    assert!(defaults.sources[0].tls.identity.is_none());
    assert!(defaults.sources[0].proxy.is_none());

    let text = [
        tls_source("missing", "tls = { ca_file = \"nope.pem\" }"),
        tls_source("garbage", "tls = { ca_file = \"garbage.pem\" }"),
        tls_source(
            "mismatch",
            "tls = { cert_file = \"client.pem\", key_file = \"other.key\" }",
        ),
        tls_source("alone", "tls = { cert_file = \"client.pem\" }"),
        tls_source(
            "key-as-cert",
            "tls = { cert_file = \"client.key\", key_file = \"client.pem\" }",
        ),
        tls_source("socks", "proxy = \"socks5://user:hunter2@proxy:1080\""),
    ]
    .concat();
    let err = parse_in(dir.path(), &text).unwrap_err();
    assert_eq!(
        problem_keys(&err.problems),
        [
            "source[0] (\"missing\").tls.ca_file",
            "source[1] (\"garbage\").tls.ca_file",
            "source[2] (\"mismatch\").tls.key_file",
            "source[3] (\"alone\").tls.key_file",
            "source[4] (\"key-as-cert\").tls.cert_file",
            "source[4] (\"key-as-cert\").tls.key_file",
            "source[5] (\"socks\").proxy",
        ],
        "{err}"
    );
    let text = err.to_string();
    let d = dir.path().display();
    for expected in [
        format!("cannot read {d}/nope.pem ("),
        format!("{d}/garbage.pem holds no `-----BEGIN CERTIFICATE-----` block"),
        format!(
            "the key in {d}/other.key does not belong to the certificate in {d}/client.pem; use the key the certificate was issued for"
        ),
        "is missing; a client certificate (tls.cert_file) needs its private key in tls.key_file"
            .to_string(),
        format!("{d}/client.key holds no `-----BEGIN CERTIFICATE-----` block"),
        format!("{d}/client.pem holds no `-----BEGIN PRIVATE KEY-----` block"),
        "scheme `socks5` is not supported; use an http:// or https:// proxy URL".to_string(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
    // No key material in any message.
    let key = std::fs::read_to_string(dir.path().join("client.key")).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    assert!(!text.contains(key_body), "{text}");
}

/// A main file with `[source_defaults]` and `sources_dir = "sources.d"`,
/// and one tenant file per `(name, text)`.
fn mssp(defaults: &str, inline: &str, tenants: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("auditfwd.toml");
    std::fs::write(
        &main,
        format!(
            "sources_dir = \"sources.d\"\n\n[source_defaults]\n{defaults}\n\n{inline}\n\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("sources.d")).unwrap();
    for (file, text) in tenants {
        std::fs::write(dir.path().join("sources.d").join(file), text).unwrap();
    }
    (dir, main)
}

fn tenant(name: &str, extra: &str) -> String {
    format!("[source]\nname = \"{name}\"\napi_key = \"k-{name}\"\n{extra}\n")
}

#[test]
fn sources_inherit_source_defaults_and_their_own_values_win() {
    let (_dir, main) = mssp(
        "base_url = \"https://audit.example.com\"\npoll_interval = \"2m\"\nrate_limit = { requests_per_second = 3, burst = 6 }\nactions = [\"USER_LOGIN\"]",
        "[[source]]\nname = \"inline\"\napi_key = \"k\"\npoll_interval = \"5s\"",
        &[
            ("acme.toml", &tenant("acme", "rate_limit = { burst = 9 }")),
            (
                "globex.toml",
                &tenant(
                    "globex",
                    "base_url = \"https://globex.example.com\"\nactions = []",
                ),
            ),
            // Not tenants: a switched-off one, an editor's files.
            ("off.toml.disabled", &tenant("off", "")),
            (".acme.toml.swp", "garbage"),
            ("acme.toml~", "garbage"),
        ],
    );
    let config = Config::load_with_env(&main, &env).unwrap();
    let by_name = |n: &str| config.sources.iter().find(|s| s.name == n).unwrap();
    assert_eq!(config.sources.len(), 3, "{:?}", config.sources);

    let inline = by_name("inline");
    assert_eq!(inline.base_url.as_str(), "https://audit.example.com/");
    assert_eq!(
        inline.poll_interval,
        Duration::from_secs(5),
        "own value wins"
    );
    assert_eq!(inline.requests_per_second.get(), 3);
    assert_eq!(inline.defined_in, None);

    let acme = by_name("acme");
    assert_eq!(acme.poll_interval, Duration::from_secs(120), "inherited");
    assert_eq!(acme.actions, ["USER_LOGIN"]);
    // Tables merge key by key.
    assert_eq!((acme.requests_per_second.get(), acme.burst.get()), (3, 9));
    assert_eq!(
        acme.defined_in.as_deref(),
        Some(main.parent().unwrap().join("sources.d/acme.toml").as_path())
    );

    let globex = by_name("globex");
    assert_eq!(globex.base_url.as_str(), "https://globex.example.com/");
    assert!(globex.actions.is_empty(), "arrays are replaced, not merged");
    assert_eq!(
        config.sources_dir,
        Some(main.parent().unwrap().join("sources.d"))
    );
}

#[test]
fn problems_name_the_file_and_key_the_bad_value_came_from() {
    let (dir, main) = mssp(
        "base_url = \"https://audit.example.com\"\npage_size = 500\nlookback = 600",
        "[[source]]\nname = \"inline\"\napi_key = \"k\"\nlookback = \"5m\"",
        &[
            (
                "acme.toml",
                &tenant("acme", "poll_interval = \"1ms\"\nsecret_knob = 1"),
            ),
            ("broken.toml", "[source\nname = \"x\""),
            (
                "two.toml",
                "[[source]]\nname = \"a\"\n[[source]]\nname = \"b\"",
            ),
            (
                "dup.toml",
                &tenant("inline", "lookback = \"5m\"\npage_size = 10"),
            ),
            (
                "typo.toml",
                "[source]\nname = \"typo\"\napi_key = \"s3cret key\"\n",
            ),
        ],
    );
    let err = Config::load_with_env(&main, &env).unwrap_err();
    let d = dir.path().join("sources.d");
    let found: Vec<(Option<PathBuf>, &str)> = err
        .problems
        .iter()
        .map(|p| (p.file.clone(), p.key.as_str()))
        .collect();
    let file = |f: &str| Some(d.join(f));
    for expected in [
        // An inherited mistake: reported once, at [source_defaults].
        (None, "source_defaults.page_size"),
        (None, "source_defaults.lookback"),
        (file("acme.toml"), "source.secret_knob"),
        (file("acme.toml"), "source (\"acme\").poll_interval"),
        (file("broken.toml"), ""),
        (file("two.toml"), "source"),
        (file("dup.toml"), "source.name"),
        (file("typo.toml"), "source (\"typo\").api_key"),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in\n{err}");
    }
    assert_eq!(
        found
            .iter()
            .filter(|(_, k)| *k == "source_defaults.page_size")
            .count(),
        1,
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("{}: ", main.display())), "{text}");
    assert!(
        text.contains(&format!(
            "{}: 2 configuration problems",
            d.join("acme.toml").display()
        )),
        "{text}"
    );
    // The duplicate names both places.
    assert!(
        text.contains(&format!(
            "source.name: `inline` is also the name of source[0] in {}",
            main.display()
        )),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn tenant_files_with_the_same_name_are_refused_naming_both() {
    let (dir, main) = mssp(
        "base_url = \"https://audit.example.com\"",
        "",
        &[
            ("acme.toml", &tenant("acme", "")),
            ("acme-copy.toml", &tenant("acme", "")),
        ],
    );
    let err = Config::load_with_env(&main, &env).unwrap_err();
    let d = dir.path().join("sources.d");
    assert_eq!(err.problems.len(), 1, "{err}");
    let p = &err.problems[0];
    // Files are read in name order: acme-copy.toml comes first.
    assert_eq!(p.file.as_deref(), Some(d.join("acme.toml").as_path()));
    assert!(
        p.message
            .contains(&d.join("acme-copy.toml").display().to_string()),
        "{err}"
    );
}

#[test]
fn a_missing_sources_dir_and_defaults_that_name_a_source_are_refused() {
    let text = "sources_dir = \"/nonexistent/sources.d\"\n[source_defaults]\nname = \"x\"\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\n";
    let err = parse(text).unwrap_err();
    assert_eq!(
        problem_keys(&err.problems),
        ["source_defaults.name", "sources_dir"],
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("cannot read the directory /nonexistent/sources.d")
    );
}

#[test]
fn fleet_is_off_by_default_and_validated_when_set() {
    assert!(parse(GOOD).unwrap().fleet.is_none());

    let fleet = parse(&format!(
        "{GOOD}\n[fleet]\nbrokers = \"k1:9092,k2:9092\"\nreplica = \"r-1\"\n[fleet.librdkafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"hunter2\"\n"
    ))
    .unwrap()
    .fleet
    .unwrap();
    assert_eq!(fleet.group, "auditfwd");
    assert_eq!(fleet.topic, "auditfwd.fleet");
    assert_eq!(fleet.state_topic, "auditfwd.state");
    assert_eq!(fleet.partitions, 64);
    assert_eq!(fleet.replica, "r-1");
    assert_eq!(fleet.session_timeout, Duration::from_secs(10));
    assert_eq!(fleet.drain_timeout, Duration::from_secs(30));
    assert_eq!(
        fleet.client()[0],
        (
            "bootstrap.servers".to_string(),
            "k1:9092,k2:9092".to_string()
        )
    );
    let debug = format!("{fleet:?}");
    assert!(
        !debug.contains("hunter2") && debug.contains("SASL_SSL"),
        "{debug}"
    );

    // Without a replica id, one per process: hostname-pid.
    let fleet = parse(&format!("{GOOD}\n[fleet]\nbrokers = \"k:9092\"\n"))
        .unwrap()
        .fleet
        .unwrap();
    assert!(
        fleet.replica.ends_with(&format!("-{}", std::process::id())),
        "{}",
        fleet.replica
    );

    let err = parse(&format!(
        "{GOOD}\n[fleet]\nbrokers = \"\"\nreplica = \"a/b\"\ntopic = \"same\"\nstate_topic = \"same\"\npartitions = 0\nsession_timeout = \"10m\"\n[fleet.librdkafka]\n\"group.id\" = \"x\"\n"
    ))
    .unwrap_err();
    assert_eq!(
        problem_keys(&err.problems),
        [
            "fleet.brokers",
            "fleet.state_topic",
            "fleet.partitions",
            "fleet.replica",
            "fleet.session_timeout",
            "fleet.librdkafka.\"group.id\"",
        ]
    );
    let text = err.to_string();
    assert!(text.contains("set by auditfwd from fleet.group"), "{text}");
    assert!(text.contains("letters, digits"), "{text}");
}
