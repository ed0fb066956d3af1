//! Named email templates, rendered with minijinja from the request's variables.
//!
//! Layout (see `templates/README.md` at the repository root): a template NAME has up to three
//! files, `<name>.subject.txt.j2` (optional), `<name>.txt.j2` and/or `<name>.html.j2`. They are
//! compiled into the binary with `include_str!` (one line per file in [`EMBEDDED`]), so a Lambda
//! bundle is a single file and a missing template is a build error rather than a 3 a.m. one.
//!
//! - **Escaping** is chosen by the file name without `.j2`, set explicitly here rather than
//!   left to minijinja's defaults: `.html`/`.htm`/`.xml` → HTML escaping, anything else → none.
//! - **Undefined variables are errors** ([`UndefinedBehavior::Strict`]), naming the variable, so
//!   a request missing one is refused at accept time. Optional variables are written
//!   `{% if x is defined %}`.
//! - **The subject** renders to one line: it is trimmed, and a rendered subject holding a line
//!   break or another control character is refused (a variable must never add a header).

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use serde_json::Map;
use std::collections::{BTreeMap, BTreeSet};

/// Every shipped template file: (file name, source). Keep in step with `templates/`; the unit
/// test `every_file_in_templates_is_embedded` fails otherwise.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "welcome.subject.txt.j2",
        include_str!("../../../templates/welcome.subject.txt.j2"),
    ),
    (
        "welcome.txt.j2",
        include_str!("../../../templates/welcome.txt.j2"),
    ),
    (
        "welcome.html.j2",
        include_str!("../../../templates/welcome.html.j2"),
    ),
    (
        "order_update.subject.txt.j2",
        include_str!("../../../templates/order_update.subject.txt.j2"),
    ),
    (
        "order_update.txt.j2",
        include_str!("../../../templates/order_update.txt.j2"),
    ),
    (
        "order_update.html.j2",
        include_str!("../../../templates/order_update.html.j2"),
    ),
];

const SUBJECT_SUFFIX: &str = ".subject.txt.j2";
const TEXT_SUFFIX: &str = ".txt.j2";
const HTML_SUFFIX: &str = ".html.j2";

/// Why a template could not be rendered. Messages name the template, the part and, for a
/// missing variable, the variable; they never quote variable values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown email template {name:?}; known templates: {known}")]
    Unknown { name: String, known: String },
    #[error("email template {template:?} ({part}) needs variable(s) that were not given: {detail}")]
    MissingVariable {
        template: String,
        part: &'static str,
        detail: String,
    },
    #[error("email template {template:?} ({part}) failed to render: {detail}")]
    Render {
        template: String,
        part: &'static str,
        detail: String,
    },
    #[error(
        "email template {template:?} rendered a subject with a line break or control character"
    )]
    UnsafeSubject { template: String },
    #[error("email template {template:?} rendered an empty subject")]
    EmptySubject { template: String },
    /// A template file that does not compile or is misnamed (caught by unit tests for the
    /// shipped set).
    #[error("email template file {file:?} is invalid: {detail}")]
    Invalid { file: String, detail: String },
}

impl TemplateError {
    /// A stable code for API responses and delivery records.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "unknown_template",
            Self::MissingVariable { .. } => "missing_template_variable",
            Self::Render { .. } | Self::UnsafeSubject { .. } | Self::EmptySubject { .. } => {
                "template_render_failed"
            }
            Self::Invalid { .. } => "invalid_template",
        }
    }
}

/// What a template produced. At least one of `text` and `html` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// Overrides the request's subject when the template has a subject file.
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// The files one template name has.
#[derive(Debug, Clone, Default)]
struct Parts {
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
}

/// A set of compiled email templates.
pub struct EmailTemplates {
    env: Environment<'static>,
    templates: BTreeMap<String, Parts>,
    /// Files that failed to compile, by template name: rendering that name reports it.
    broken: BTreeMap<String, TemplateError>,
}

impl std::fmt::Debug for EmailTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailTemplates")
            .field("names", &self.templates.keys().collect::<Vec<_>>())
            .field("broken", &self.broken.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `.html`/`.htm`/`.xml` (after dropping `.j2`) are HTML-escaped; everything else is not.
fn auto_escape_for(file: &str) -> AutoEscape {
    let name = file.strip_suffix(".j2").unwrap_or(file);
    match name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
    {
        Some(ext) if matches!(ext.as_str(), "html" | "htm" | "xml") => AutoEscape::Html,
        _ => AutoEscape::None,
    }
}

/// Template names: ASCII letters, digits, `_` and `-` (no dots, so a name can never reach
/// another template's subject file).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(auto_escape_for);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Debug info names the undefined variable in errors; it is off by default in release.
    env.set_debug(true);
    env
}

impl EmailTemplates {
    /// The templates compiled into the binary from `templates/`.
    pub fn embedded() -> Self {
        let (templates, _errors) = Self::build(
            EMBEDDED
                .iter()
                .map(|(file, source)| ((*file).to_owned(), (*source).to_owned())),
        );
        for (name, error) in &templates.broken {
            tracing::error!(template = %name, error = %error, "embedded email template is invalid");
        }
        templates
    }

    /// Templates from `(file name, source)` pairs following the `templates/` layout; for
    /// tests and custom deployments. Refuses any file that is misnamed or does not compile.
    pub fn from_sources(
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, TemplateError> {
        let (templates, mut errors) = Self::build(files);
        match errors.pop() {
            Some(error) => Err(error),
            None => Ok(templates),
        }
    }

    fn build(files: impl IntoIterator<Item = (String, String)>) -> (Self, Vec<TemplateError>) {
        let mut env = new_environment();
        let mut templates: BTreeMap<String, Parts> = BTreeMap::new();
        let mut broken = BTreeMap::new();
        let mut errors = Vec::new();
        for (file, source) in files {
            let split = [SUBJECT_SUFFIX, TEXT_SUFFIX, HTML_SUFFIX]
                .iter()
                .find_map(|suffix| {
                    file.strip_suffix(suffix)
                        .map(|name| (name.to_owned(), *suffix))
                });
            let Some((name, suffix)) = split.filter(|(name, _)| valid_name(name)) else {
                errors.push(TemplateError::Invalid {
                    file: file.clone(),
                    detail: "expected <name>.subject.txt.j2, <name>.txt.j2 or <name>.html.j2 \
                             with a name of letters, digits, _ and -"
                        .to_owned(),
                });
                continue;
            };
            if let Err(e) = env.add_template_owned(file.clone(), source) {
                let error = TemplateError::Invalid {
                    file: file.clone(),
                    detail: e.to_string(),
                };
                broken.insert(name, error.clone());
                errors.push(error);
                continue;
            }
            let parts = templates.entry(name).or_default();
            match suffix {
                SUBJECT_SUFFIX => parts.subject = Some(file),
                TEXT_SUFFIX => parts.text = Some(file),
                _ => parts.html = Some(file),
            }
        }
        // A subject alone is not a template.
        for (name, parts) in &templates {
            if parts.text.is_none() && parts.html.is_none() {
                let error = TemplateError::Invalid {
                    file: format!("{name}{SUBJECT_SUFFIX}"),
                    detail: "a template needs <name>.txt.j2 and/or <name>.html.j2".to_owned(),
                };
                broken.insert(name.clone(), error.clone());
                errors.push(error);
            }
        }
        templates.retain(|name, _| !broken.contains_key(name));
        (
            Self {
                env,
                templates,
                broken,
            },
            errors,
        )
    }

    /// The names that can be rendered, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.templates.keys().map(String::as_str).collect()
    }

    /// Renders template `name` with `variables`. Errors name the template and, for a missing
    /// variable, the variable.
    pub fn render(
        &self,
        name: &str,
        variables: &Map<String, serde_json::Value>,
    ) -> Result<RenderedEmail, TemplateError> {
        if let Some(error) = self.broken.get(name) {
            return Err(error.clone());
        }
        let parts = self
            .templates
            .get(name)
            .ok_or_else(|| TemplateError::Unknown {
                name: name.to_owned(),
                known: self.names().join(", "),
            })?;
        let ctx = Value::from(minijinja::value::Serde(variables));
        let render =
            |file: &Option<String>, part: &'static str| -> Result<Option<String>, TemplateError> {
                let Some(file) = file else { return Ok(None) };
                let template = self
                    .env
                    .get_template(file)
                    .map_err(|e| TemplateError::Invalid {
                        file: file.clone(),
                        detail: e.to_string(),
                    })?;
                template.render(ctx.clone()).map(Some).map_err(|e| {
                    let detail = describe(&e);
                    if e.kind() == ErrorKind::UndefinedError {
                        TemplateError::MissingVariable {
                            template: name.to_owned(),
                            part,
                            detail,
                        }
                    } else {
                        TemplateError::Render {
                            template: name.to_owned(),
                            part,
                            detail,
                        }
                    }
                })
            };
        let subject = render(&parts.subject, "subject")?
            .map(|s| {
                let s = s.trim();
                if s.chars().any(char::is_control) {
                    Err(TemplateError::UnsafeSubject {
                        template: name.to_owned(),
                    })
                } else if s.is_empty() {
                    Err(TemplateError::EmptySubject {
                        template: name.to_owned(),
                    })
                } else {
                    Ok(s.to_owned())
                }
            })
            .transpose()?;
        Ok(RenderedEmail {
            subject,
            text: render(&parts.text, "text")?,
            html: render(&parts.html, "html")?,
        })
    }

    /// Every variable the template `name` reads from its context (required or optional),
    /// sorted; `None` for an unknown name. For documentation and API discovery.
    pub fn variables(&self, name: &str) -> Option<BTreeSet<String>> {
        let parts = self.templates.get(name)?;
        let mut vars = BTreeSet::new();
        for file in [&parts.subject, &parts.text, &parts.html]
            .into_iter()
            .flatten()
        {
            if let Ok(t) = self.env.get_template(file) {
                vars.extend(t.undeclared_variables(false));
            }
        }
        Some(vars)
    }
}

/// minijinja's message with its location (`... (in welcome.txt.j2:3)`), without the debug
/// dump of the context (which would quote the request's variables).
fn describe(e: &minijinja::Error) -> String {
    let mut detail = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    if let (Some(file), Some(line)) = (e.name(), e.line()) {
        detail.push_str(&format!(" (in {file} line {line})"));
    }
    detail
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: serde_json::Value) -> Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap()
    }

    fn sources(files: &[(&str, &str)]) -> EmailTemplates {
        EmailTemplates::from_sources(
            files
                .iter()
                .map(|(f, s)| ((*f).to_owned(), (*s).to_owned())),
        )
        .unwrap()
    }

    #[test]
    fn every_embedded_template_compiles() {
        let (t, errors) = EmailTemplates::build(
            EMBEDDED
                .iter()
                .map(|(f, s)| ((*f).to_owned(), (*s).to_owned())),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(t.names(), vec!["order_update", "welcome"]);
    }

    #[test]
    fn every_file_in_templates_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.ends_with(".j2"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED.iter().map(|(f, _)| (*f).to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "templates/ and EMBEDDED differ");
    }

    #[test]
    fn welcome_renders_all_parts() {
        let t = EmailTemplates::embedded();
        let r = t
            .render("welcome", &vars(json!({"name": "Ana", "app_name": "Loja"})))
            .unwrap();
        assert_eq!(r.subject.as_deref(), Some("Bem-vindo(a) ao Loja, Ana!"));
        assert!(r.text.unwrap().contains("Olá, Ana!"));
        let html = r.html.unwrap();
        assert!(html.contains("<strong>Ana</strong>"));
        assert!(
            !html.contains("Começar agora"),
            "optional action_url absent"
        );
    }

    #[test]
    fn order_update_renders_optional_parts() {
        let t = EmailTemplates::embedded();
        let r = t
            .render(
                "order_update",
                &vars(json!({
                    "name": "Ana", "order_id": "A-1", "status": "enviado",
                    "items": [{"name": "Caneca", "quantity": 2}],
                    "tracking_url": "https://track.example.com/A-1?x=1&y=2"
                })),
            )
            .unwrap();
        assert_eq!(r.subject.as_deref(), Some("Pedido A-1: enviado"));
        let text = r.text.unwrap();
        assert!(text.contains("  - 2 x Caneca"), "{text}");
        assert!(text.contains("https://track.example.com/A-1?x=1&y=2"));
        let html = r.html.unwrap();
        assert!(
            html.contains("<td style=\"padding: 4px 8px;\">Caneca</td>"),
            "{html}"
        );
        // Attribute values are escaped too.
        assert!(html.contains("x=1&amp;y=2"), "{html}");
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let t = EmailTemplates::embedded();
        let r = t
            .render(
                "welcome",
                &vars(json!({"name": "<script>alert(1)</script>", "app_name": "A & B"})),
            )
            .unwrap();
        let html = r.html.unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("A &amp; B"));
        assert!(r.text.unwrap().contains("Olá, <script>alert(1)</script>!"));
        assert_eq!(
            r.subject.as_deref(),
            Some("Bem-vindo(a) ao A & B, <script>alert(1)</script>!")
        );
    }

    #[test]
    fn escaping_follows_the_file_name_explicitly() {
        assert_eq!(auto_escape_for("a.html.j2"), AutoEscape::Html);
        assert_eq!(auto_escape_for("a.HTM.j2"), AutoEscape::Html);
        assert_eq!(auto_escape_for("a.xml.j2"), AutoEscape::Html);
        assert_eq!(auto_escape_for("a.txt.j2"), AutoEscape::None);
        assert_eq!(auto_escape_for("a.subject.txt.j2"), AutoEscape::None);
        assert_eq!(auto_escape_for("a.json.j2"), AutoEscape::None);
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_it() {
        let t = EmailTemplates::embedded();
        let err = t
            .render("welcome", &vars(json!({"name": "Ana"})))
            .unwrap_err();
        assert!(
            matches!(err, TemplateError::MissingVariable { .. }),
            "{err:?}"
        );
        assert_eq!(err.code(), "missing_template_variable");
        assert!(err.to_string().contains("app_name"), "{err}");
    }

    #[test]
    fn a_missing_attribute_is_an_error_naming_it() {
        let t = EmailTemplates::embedded();
        let err = t
            .render(
                "order_update",
                &vars(json!({"name": "Ana", "order_id": "1", "status": "ok", "items": [{"name": "x"}]})),
            )
            .unwrap_err();
        assert!(
            matches!(err, TemplateError::MissingVariable { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("quantity"), "{err}");
    }

    #[test]
    fn errors_never_quote_variable_values() {
        let t = sources(&[("t.txt.j2", "{{ secret_value ~ missing }}")]);
        let err = t
            .render("t", &vars(json!({"secret_value": "hunter2"})))
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        let t = EmailTemplates::embedded();
        for name in ["nope", "welcome.subject", "../welcome", ""] {
            let err = t.render(name, &Map::new()).unwrap_err();
            assert!(
                matches!(err, TemplateError::Unknown { .. }),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
        }
    }

    #[test]
    fn a_subject_may_not_break_the_header() {
        let t = sources(&[("t.subject.txt.j2", "Oi {{ name }}"), ("t.txt.j2", "x")]);
        let err = t
            .render("t", &vars(json!({"name": "x\r\nBcc: evil@example.com"})))
            .unwrap_err();
        assert!(
            matches!(err, TemplateError::UnsafeSubject { .. }),
            "{err:?}"
        );
        let ok = t.render("t", &vars(json!({"name": "Ana"}))).unwrap();
        assert_eq!(ok.subject.as_deref(), Some("Oi Ana"));
    }

    #[test]
    fn misnamed_or_broken_files_are_refused() {
        for (file, src) in [
            ("t.j2", "x"),
            ("t.md.j2", "x"),
            ("a.b.txt.j2", "x"),
            ("t.txt.j2", "{% if %}"),
            ("t.subject.txt.j2", "only a subject"),
        ] {
            let r = EmailTemplates::from_sources([(file.to_owned(), src.to_owned())]);
            assert!(
                matches!(r, Err(TemplateError::Invalid { .. })),
                "{file}: {r:?}"
            );
        }
    }

    #[test]
    fn variables_lists_what_a_template_reads() {
        let t = EmailTemplates::embedded();
        let v = t.variables("welcome").unwrap();
        assert_eq!(
            v.into_iter().collect::<Vec<_>>(),
            vec!["action_url", "app_name", "name"]
        );
        assert!(t.variables("nope").is_none());
    }
}
