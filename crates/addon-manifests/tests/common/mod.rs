//! What the manifest tests and the chart tests both look up in typed objects.

use addon_manifests::Object;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, HTTPGetAction};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

/// Every DaemonSet, in document order.
pub fn daemonsets(objects: &[Object]) -> Vec<&DaemonSet> {
    objects
        .iter()
        .filter_map(|o| match o {
            Object::DaemonSet(d) => Some(&**d),
            _ => None,
        })
        .collect()
}

/// The first ConfigMap (the addon's Corefile template).
pub fn configmap(objects: &[Object]) -> &ConfigMap {
    objects
        .iter()
        .find_map(|o| match o {
            Object::ConfigMap(c) => Some(&**c),
            _ => None,
        })
        .expect("a ConfigMap")
}

/// The API mode's Role and its binding.
pub fn rbac(objects: &[Object]) -> (&Role, &RoleBinding) {
    let role = objects.iter().find_map(|o| match o {
        Object::Role(r) => Some(&**r),
        _ => None,
    });
    let binding = objects.iter().find_map(|o| match o {
        Object::RoleBinding(b) => Some(&**b),
        _ => None,
    });
    (role.expect("a Role"), binding.expect("a RoleBinding"))
}

/// The container's liveness probe, an HTTP GET.
pub fn liveness_http(c: &Container) -> &HTTPGetAction {
    c.liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("an HTTP liveness probe")
}

/// The container's environment from the downward API: (name, fieldPath).
pub fn downward_env(c: &Container) -> Vec<(&str, &str)> {
    c.env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let field = e.value_from.as_ref()?.field_ref.as_ref()?;
            Some((e.name.as_str(), field.field_path.as_str()))
        })
        .collect()
}

/// What node-cache reads from the downward API: its label among the peers on the node
/// (POD_NAME), and the pod its Kubernetes Events name (with POD_NAMESPACE and POD_UID).
pub const DOWNWARD_ENV: [(&str, &str); 3] = [
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
    ("POD_UID", "metadata.uid"),
];
