//! The `exec` trainer's schema: run any command per trial (a user's own
//! PyTorch script, say). The command is an argv template, never a shell
//! line, so a hyperparameter value cannot inject a command.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{FieldError, ParamSpec};

/// `{"kind": "exec", "argv": ["python3", "train.py", "--lr", "{lr}"], ...}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    /// Program and arguments. Each element may hold `{placeholders}`:
    /// a hyperparameter name, or one of [`BUILTINS`]. `{{` and `}}` are
    /// literal braces. Each element stays one argument whatever it expands to.
    pub argv: Vec<String>,
    /// Kill the command (its whole process group) after this many seconds;
    /// the trial is then `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// Extra environment variables (values may hold placeholders too).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the study directory (default: the
    /// study directory). Placeholders allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
}

/// Why the exec trainer killed a running command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppedBy {
    /// The worker was asked to stop: the trial goes back to the queue.
    Preemption,
    /// The master's pruner stopped the trial: it ends `pruned`.
    Pruner,
    /// `trainer.timeout_s` passed: the trial ends `failed`.
    Timeout,
}

impl StoppedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            StoppedBy::Preemption => "preemption",
            StoppedBy::Pruner => "pruner",
            StoppedBy::Timeout => "timeout",
        }
    }
}

/// Placeholders every trial defines.
pub const BUILTINS: &[&str] = &[
    "trial_id",
    "seed",
    "epochs",
    "attempt",
    "trial_dir",
    "params_file",
    "result_file",
    "report_file",
    "study_dir",
];

/// A command template that cannot be expanded; each names the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{` in `{template}`")]
    Unclosed { template: String },
    #[error("unknown placeholder `{{{name}}}` in `{template}`")]
    Unknown { name: String, template: String },
    #[error("unmatched `}}` in `{template}` (write `}}}}` for a literal brace)")]
    Unmatched { template: String },
}

/// The `{name}`s in `template`, in order.
pub fn placeholders(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    render_with(template, &mut |name| {
        out.push(name.to_string());
        Some(String::new())
    })?;
    Ok(out)
}

/// Expand `template` with `vars`. An unknown placeholder is an error.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, TemplateError> {
    render_with(template, &mut |name| vars.get(name).cloned())
}

fn render_with(
    template: &str,
    lookup: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => name.push(ch),
                        None => {
                            return Err(TemplateError::Unclosed {
                                template: template.into(),
                            })
                        }
                    }
                }
                match lookup(&name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err(TemplateError::Unknown {
                            name,
                            template: template.into(),
                        })
                    }
                }
            }
            '}' => {
                return Err(TemplateError::Unmatched {
                    template: template.into(),
                })
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl ExecSpec {
    /// Check the templates against the space's parameter names.
    pub fn validate<'a>(
        &self,
        params: impl Iterator<Item = &'a String> + Clone,
    ) -> Result<(), FieldError> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(FieldError::new(
                "trainer.argv",
                "must name a program to run",
            ));
        }
        if let Some(t) = self.timeout_s {
            if !t.is_finite() || t <= 0.0 {
                return Err(FieldError::new(
                    "trainer.timeout_s",
                    format!("must be a positive number of seconds, got {t}"),
                ));
            }
        }
        let known = |n: &str| BUILTINS.contains(&n) || params.clone().any(|p| p == n);
        let check = |field: String, t: &str| -> Result<(), FieldError> {
            for name in
                placeholders(t).map_err(|m| FieldError::new(field.clone(), m.to_string()))?
            {
                if !known(&name) {
                    return Err(FieldError::new(
                        field,
                        format!(
                            "unknown placeholder `{{{name}}}`: use a parameter of the space or one of {}",
                            BUILTINS.join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        };
        for (i, a) in self.argv.iter().enumerate() {
            check(format!("trainer.argv[{i}]"), a)?;
        }
        let mut vars: BTreeMap<String, &String> = BTreeMap::new();
        for p in params.clone() {
            if let Some(first) = vars.insert(param_env_var(p), p) {
                return Err(FieldError::new(
                    format!("space.{p}"),
                    format!(
                        "parameters `{first}` and `{p}` would both be passed as the environment \
                         variable {}, and one value would be lost; rename one of them",
                        param_env_var(p)
                    ),
                ));
            }
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(FieldError::new(
                    format!("trainer.env.{k}"),
                    "not a valid environment variable name",
                ));
            }
            check(format!("trainer.env.{k}"), v)?;
        }
        if let Some(w) = &self.workdir {
            check("trainer.workdir".into(), w)?;
        }
        Ok(())
    }
}

impl ExecSpec {
    /// The parameters `trainer.workdir` puts a value of, in order.
    pub fn workdir_params<'a>(&'a self, params: &'a [&'a str]) -> Vec<&'a str> {
        let names = self
            .workdir
            .as_deref()
            .and_then(|w| placeholders(w).ok())
            .unwrap_or_default();
        params
            .iter()
            .copied()
            .filter(|p| names.iter().any(|n| n == p))
            .collect()
    }

    /// Refuse, when the study is created, a value that a parameter used in
    /// `trainer.workdir` can take (a categorical choice, a fixed value) and
    /// that would move the working directory out of the study directory.
    /// The worker checks every trial's values again before starting it.
    pub fn validate_workdir_values(
        &self,
        space: &BTreeMap<String, ParamSpec>,
    ) -> Result<(), FieldError> {
        let names: Vec<&str> = space.keys().map(String::as_str).collect();
        for name in self.workdir_params(&names) {
            let values: &[Value] = match &space[name] {
                ParamSpec::Categorical { choices } => choices,
                ParamSpec::Fixed { value } => std::slice::from_ref(value),
                // Numbers: no `/`, no `..`.
                _ => &[],
            };
            for v in values {
                if let Value::String(text) = v {
                    check_workdir_value(name, text)?;
                }
            }
        }
        Ok(())
    }
}

/// A parameter's value as part of `trainer.workdir` must be a relative
/// path that stays where the template puts it: not absolute, no `..`
/// component. Otherwise a value such as `../../../../etc` would run the
/// command in `/etc`. The error names the parameter.
pub fn check_workdir_value(param: &str, value: &str) -> Result<(), FieldError> {
    let escapes = value.starts_with('/') || value.split('/').any(|part| part == "..");
    if escapes || value.contains('\0') {
        return Err(FieldError::new(
            "trainer.workdir",
            format!(
                "parameter `{param}` has the value `{value}`, which would move the working \
                 directory out of the study directory (an absolute path or a `..` component); \
                 a value used in trainer.workdir must be a plain relative name"
            ),
        ));
    }
    Ok(())
}

/// The environment variable that carries parameter `name` to an exec
/// trainer's command: `HPS_PARAM_` and the name in upper case, with every
/// character other than an ASCII letter or digit turned into `_`.
pub fn param_env_var(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("HPS_PARAM_{upper}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_that_share_an_environment_variable_are_refused() {
        let spec: ExecSpec = serde_json::from_str(r#"{"argv":["python3","train.py"]}"#).unwrap();
        let names: Vec<String> = ["LR_X", "lr-x", "momentum"].map(String::from).into();
        let e = spec.validate(names.iter()).unwrap_err();
        assert_eq!(e.field, "space.lr-x");
        assert!(e.message.contains("HPS_PARAM_LR_X"), "{e}");
        assert!(e.message.contains("`LR_X`"), "{e}");
        let fine: Vec<String> = ["lr", "lr_x", "momentum"].map(String::from).into();
        spec.validate(fine.iter()).unwrap();
        assert_eq!(param_env_var("lr.x"), "HPS_PARAM_LR_X");
    }

    #[test]
    fn a_workdir_value_that_escapes_the_study_directory_is_refused_at_init() {
        let spec: ExecSpec =
            serde_json::from_str(r#"{"argv":["./run"],"workdir":"runs/{dir}"}"#).unwrap();
        let space: BTreeMap<String, ParamSpec> = serde_json::from_str(
            r#"{"dir":{"type":"categorical","choices":["a","b/c","../../../../etc"]},
                "lr":{"type":"float","low":0.1,"high":1}}"#,
        )
        .unwrap();
        let e = spec.validate_workdir_values(&space).unwrap_err();
        assert_eq!(e.field, "trainer.workdir");
        assert!(
            e.message.contains("`dir`") && e.message.contains("../../../../etc"),
            "{e}"
        );
        for bad in ["/etc", "..", "a/../..", "x/.."] {
            assert!(check_workdir_value("dir", bad).is_err(), "{bad}");
        }
        for fine in ["a", "b/c", "...", "a..b", "./x"] {
            check_workdir_value("dir", fine).unwrap();
        }
        // A parameter not in the workdir may hold anything.
        let other: ExecSpec = serde_json::from_str(r#"{"argv":["./run","{dir}"]}"#).unwrap();
        other.validate_workdir_values(&space).unwrap();
    }

    #[test]
    fn renders_placeholders_and_escapes() {
        let vars: BTreeMap<String, String> = [
            ("lr".to_string(), "0.1".to_string()),
            ("trial_id".to_string(), "t000001".to_string()),
        ]
        .into();
        assert_eq!(render("--lr={lr}", &vars).unwrap(), "--lr=0.1");
        assert_eq!(
            render("{{literal}} {trial_id}", &vars).unwrap(),
            "{literal} t000001"
        );
        let e = |t: &str| render(t, &vars).unwrap_err().to_string();
        assert!(e("{nope}").contains("unknown placeholder `{nope}`"));
        assert!(e("{lr").contains("unclosed"));
        assert!(e("a}b").contains("unmatched `}` in `a}b`"));
    }

    #[test]
    fn a_value_is_never_split_or_interpreted() {
        let vars: BTreeMap<String, String> =
            [("x".to_string(), "\"; touch /tmp/pwned; {y}".to_string())].into();
        // The value is inserted verbatim, once; braces in values are not re-expanded.
        assert_eq!(render("{x}", &vars).unwrap(), "\"; touch /tmp/pwned; {y}");
    }

    #[test]
    fn validation_names_the_argument() {
        let spec = ExecSpec {
            argv: vec!["python3".into(), "--lr={lrr}".into()],
            timeout_s: None,
            env: Default::default(),
            workdir: None,
        };
        let names = ["lr".to_string()];
        let e = spec.validate(names.iter()).unwrap_err();
        assert_eq!(e.field, "trainer.argv[1]");
        assert!(e.message.contains("lrr"), "{e}");
        let ok = ExecSpec {
            argv: vec!["python3".into(), "{lr}".into(), "{result_file}".into()],
            ..spec
        };
        ok.validate(names.iter()).unwrap();
    }
}
