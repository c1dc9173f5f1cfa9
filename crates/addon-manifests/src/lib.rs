//! Checks the cluster addon manifests in `manifests/`: every YAML document must be a kind we
//! ship, must deserialise into its `k8s-openapi` type, and must contain no field that type does
//! not know.
//!
//! `k8s-openapi`'s serde impls skip unknown fields silently, so a misspelt `hostNetwrok: true`
//! would deserialise fine and be dropped (as the API server drops it, with only a warning). The
//! check is therefore a round trip: YAML → `serde_json::Value` → typed object → `Value` again,
//! and every field of the original that did not survive, or came back different, is reported
//! with its path.

pub mod promql;

use std::fmt;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One checked object, typed (boxed: the API types are large and of very different sizes).
#[derive(Debug, Clone)]
pub enum Object {
    ServiceAccount(Box<ServiceAccount>),
    Service(Box<Service>),
    ConfigMap(Box<ConfigMap>),
    DaemonSet(Box<DaemonSet>),
    Role(Box<Role>),
    RoleBinding(Box<RoleBinding>),
}

impl Object {
    /// `Kind/name`, as kubectl prints it.
    pub fn id(&self) -> String {
        let (kind, meta) = match self {
            Object::ServiceAccount(o) => (ServiceAccount::KIND, &o.metadata),
            Object::Service(o) => (Service::KIND, &o.metadata),
            Object::ConfigMap(o) => (ConfigMap::KIND, &o.metadata),
            Object::DaemonSet(o) => (DaemonSet::KIND, &o.metadata),
            Object::Role(o) => (Role::KIND, &o.metadata),
            Object::RoleBinding(o) => (RoleBinding::KIND, &o.metadata),
        };
        format!("{kind}/{}", meta.name.as_deref().unwrap_or("<unnamed>"))
    }
}

impl Object {
    /// The capabilities a DaemonSet's first container adds (its `securityContext`), if this is
    /// a DaemonSet that sets any.
    pub fn added_capabilities(&self) -> Option<Vec<String>> {
        let Object::DaemonSet(ds) = self else {
            return None;
        };
        ds.spec
            .as_ref()?
            .template
            .spec
            .as_ref()?
            .containers
            .first()?
            .security_context
            .as_ref()?
            .capabilities
            .as_ref()?
            .add
            .clone()
    }
}

/// What the round trip found wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    /// The field is not part of the type: misspelt, misplaced or from a newer API version.
    Unknown { path: String },
    /// The field exists but its value did not survive the round trip unchanged.
    Changed {
        path: String,
        written: String,
        typed: String,
    },
    /// The typed object has a field the document did not (a list shorter or longer after the
    /// round trip, say).
    Added { path: String },
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldProblem::Unknown { path } => write!(f, "unknown field {path}"),
            FieldProblem::Changed {
                path,
                written,
                typed,
            } => write!(f, "field {path} is {written} but reads back as {typed}"),
            FieldProblem::Added { path } => {
                write!(f, "field {path} appears only after the round trip")
            }
        }
    }
}

/// Why one document failed the check. Documents are numbered from 1 in file order.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("document {index}: not valid YAML: {source}")]
    Yaml {
        index: usize,
        source: serde_norway::Error,
    },
    #[error("document {index}: not a Kubernetes object: {reason}")]
    NotAnObject { index: usize, reason: &'static str },
    #[error("document {index}: {api_version} {kind} is not a kind the addon ships (ServiceAccount, Service, ConfigMap, DaemonSet, Role, RoleBinding)")]
    UnexpectedKind {
        index: usize,
        api_version: String,
        kind: String,
    },
    #[error("document {index} ({kind}): does not deserialise: {source}")]
    Type {
        index: usize,
        kind: String,
        source: serde_json::Error,
    },
    #[error("document {index} ({id}): {}", join(problems))]
    Fields {
        index: usize,
        id: String,
        problems: Vec<FieldProblem>,
    },
}

fn join(problems: &[FieldProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every failure in one file, in document order.
#[derive(Debug)]
pub struct Errors(pub Vec<Error>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// Parses a multi-document YAML text and checks every document. Empty documents (a bare
/// `---`, comments only) are skipped. Returns the typed objects, or every error found.
pub fn check(text: &str) -> Result<Vec<Object>, Errors> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = match Value::deserialize(doc) {
            Ok(Value::Null) => continue,
            Ok(v) => v,
            Err(source) => {
                errors.push(Error::Yaml { index, source });
                continue;
            }
        };
        match check_value(index, value) {
            Ok(o) => objects.push(o),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(Errors(errors))
    }
}

fn check_value(index: usize, value: Value) -> Result<Object, Error> {
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
    let api_version = field("apiVersion").ok_or(Error::NotAnObject {
        index,
        reason: "no apiVersion string",
    })?;
    let kind = field("kind").ok_or(Error::NotAnObject {
        index,
        reason: "no kind string",
    })?;
    let is = |api: &str, k: &str| api_version == api && kind == k;
    if is(ServiceAccount::API_VERSION, ServiceAccount::KIND) {
        round_trip(index, value).map(|o| Object::ServiceAccount(Box::new(o)))
    } else if is(Service::API_VERSION, Service::KIND) {
        round_trip(index, value).map(|o| Object::Service(Box::new(o)))
    } else if is(ConfigMap::API_VERSION, ConfigMap::KIND) {
        round_trip(index, value).map(|o| Object::ConfigMap(Box::new(o)))
    } else if is(DaemonSet::API_VERSION, DaemonSet::KIND) {
        round_trip(index, value).map(|o| Object::DaemonSet(Box::new(o)))
    } else if is(Role::API_VERSION, Role::KIND) {
        round_trip(index, value).map(|o| Object::Role(Box::new(o)))
    } else if is(RoleBinding::API_VERSION, RoleBinding::KIND) {
        round_trip(index, value).map(|o| Object::RoleBinding(Box::new(o)))
    } else {
        Err(Error::UnexpectedKind {
            index,
            api_version,
            kind,
        })
    }
}

fn round_trip<T: Resource + DeserializeOwned + Serialize>(
    index: usize,
    written: Value,
) -> Result<T, Error> {
    let typed: T = serde_json::from_value(written.clone()).map_err(|source| Error::Type {
        index,
        kind: T::KIND.to_string(),
        source,
    })?;
    let back = serde_json::to_value(&typed).map_err(|source| Error::Type {
        index,
        kind: T::KIND.to_string(),
        source,
    })?;
    let problems = diff(&without_nulls(written), &without_nulls(back));
    if problems.is_empty() {
        Ok(typed)
    } else {
        let name = typed_name(&typed);
        Err(Error::Fields {
            index,
            id: format!("{}/{name}", T::KIND),
            problems,
        })
    }
}

fn typed_name<T: Serialize>(typed: &T) -> String {
    serde_json::to_value(typed)
        .ok()
        .and_then(|v| {
            v.pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "<unnamed>".to_string())
}

/// An explicit `null` means the same as an absent field to the API server (and kubectl writes
/// `creationTimestamp: null`); the typed value omits both, so drop them before comparing.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Fields of `written` that `typed` lacks or holds differently, with dotted paths
/// (`spec.template.spec.containers[0].args`).
pub fn diff(written: &Value, typed: &Value) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    diff_at("", written, typed, &mut problems);
    problems
}

fn diff_at(path: &str, written: &Value, typed: &Value, out: &mut Vec<FieldProblem>) {
    match (written, typed) {
        (Value::Object(w), Value::Object(t)) => {
            for (key, wv) in w {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match t.get(key) {
                    Some(tv) => diff_at(&p, wv, tv, out),
                    None => out.push(FieldProblem::Unknown { path: p }),
                }
            }
            for key in t.keys().filter(|k| !w.contains_key(*k)) {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                out.push(FieldProblem::Added { path: p });
            }
        }
        (Value::Array(w), Value::Array(t)) => {
            for (i, wv) in w.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match t.get(i) {
                    Some(tv) => diff_at(&p, wv, tv, out),
                    None => out.push(FieldProblem::Unknown { path: p }),
                }
            }
            for i in w.len()..t.len() {
                out.push(FieldProblem::Added {
                    path: format!("{path}[{i}]"),
                });
            }
        }
        (w, t) if w == t => {}
        (w, t) => out.push(FieldProblem::Changed {
            path: path.to_string(),
            written: w.to_string(),
            typed: t.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_SA: &str =
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  namespace: kube-system\n";

    #[test]
    fn a_clean_document_passes() {
        let objects = check(POD_SA).expect("valid");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].id(), "ServiceAccount/a");
    }

    #[test]
    fn explicit_nulls_and_empty_documents_are_fine() {
        let text = format!("---\n# only a comment\n---\n{POD_SA}  creationTimestamp: null\n");
        assert_eq!(check(&text).expect("valid").len(), 1);
    }

    #[test]
    fn a_misspelt_metadata_field_is_named_with_its_path() {
        let text = POD_SA.replace("namespace:", "namepsace:");
        let errors = check(&text).expect_err("misspelt").0;
        assert_eq!(errors.len(), 1);
        match &errors[0] {
            Error::Fields { problems, id, .. } => {
                assert_eq!(id, "ServiceAccount/a");
                assert_eq!(
                    problems,
                    &[FieldProblem::Unknown {
                        path: "metadata.namepsace".into()
                    }]
                );
            }
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn a_wrong_type_is_an_error() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports: 53\n";
        let errors = check(text).expect_err("wrong type").0;
        assert!(matches!(errors[0], Error::Type { .. }), "{}", errors[0]);
    }

    #[test]
    fn kinds_the_addon_does_not_ship_are_refused() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n";
        let errors = check(text).expect_err("pod").0;
        assert!(
            matches!(&errors[0], Error::UnexpectedKind { kind, .. } if kind == "Pod"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn documents_without_kind_are_refused() {
        let errors = check("apiVersion: v1\nmetadata: {}\n")
            .expect_err("no kind")
            .0;
        assert!(matches!(errors[0], Error::NotAnObject { .. }));
    }

    #[test]
    fn every_error_in_a_file_is_reported() {
        let bad = POD_SA.replace("name: a", "nmae: a");
        let text = format!("{bad}---\n{bad}");
        assert_eq!(check(&text).expect_err("two").0.len(), 2);
    }

    #[test]
    fn diff_reports_changed_and_added_values() {
        let w: Value = serde_json::json!({"a": [1, 2], "b": "x"});
        let t: Value = serde_json::json!({"a": [1], "b": "y", "c": true});
        let got = diff(&w, &t);
        assert_eq!(
            got,
            vec![
                FieldProblem::Unknown {
                    path: "a[1]".into()
                },
                FieldProblem::Changed {
                    path: "b".into(),
                    written: "\"x\"".into(),
                    typed: "\"y\"".into()
                },
                FieldProblem::Added { path: "c".into() },
            ]
        );
    }
}
