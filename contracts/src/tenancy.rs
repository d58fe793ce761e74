//! Tenants kept apart inside payloads: a payload field that names a tenant must name the
//! envelope's. JSON Schema cannot say that one field equals another, so this is a rule of its
//! own, run after [`validate`](crate::validate) by the gateway (which refuses the entry
//! `TenantNotAllowed`) and by the pipeline (which dead-letters it).

use crate::event::{Event, EventData};
use crate::violation::{Violation, ViolationKind};

/// The violation when a payload field of `event` names another tenant than its envelope.
pub fn other_tenant(event: &Event<'_>) -> Option<Violation> {
    let named = match &event.data {
        EventData::TenantProvisioned(data) => Some(("/data/tenantId", data.tenant_id)),
        _ => None,
    };
    named
        .filter(|(_, tenant)| *tenant != event.envelope.tenant_id)
        .map(|(path, _)| Violation {
            path: path.to_string(),
            kind: ViolationKind::OtherTenant,
        })
}
