//! The onboarding aggregate: tenants provisioned per plan and region (`tenant.provisioned`).

use crate::aggregate::{Aggregate, Family};
use crate::windows::{Symbol, WindowSet};
use salestalk_contracts::{Event, EventData, EventKind, EventType};

/// Tenants provisioned per plan and region (`tenant.provisioned`).
#[derive(Debug)]
pub struct Onboarding;

impl Aggregate for Onboarding {
    fn family(&self) -> Family {
        Family::Onboarding
    }

    fn reads(&self, event_type: EventType) -> bool {
        event_type.kind() == EventKind::TenantProvisioned
    }

    fn on_event(&self, set: &mut WindowSet, event: &Event<'_>, tenant: Symbol, window_start: i64) {
        let EventData::TenantProvisioned(data) = &event.data else {
            return;
        };
        const FAMILY: Family = Family::Onboarding;
        set.update(
            FAMILY,
            window_start,
            tenant,
            [data.plan, data.region, ""],
            |row| {
                add!(&mut row.ints, FAMILY, "tenants", 1);
                add!(
                    &mut row.ints,
                    FAMILY,
                    "sample_data_seeded",
                    i64::from(data.sample_data_seeded),
                );
                add_float!(
                    &mut row.floats,
                    FAMILY,
                    "provisioning_ms_sum",
                    data.provisioning_time_ms,
                );
                if let Some(histogram) = row.histogram {
                    histogram.record(data.provisioning_time_ms);
                }
            },
        );
    }
}
