//! `tenant.provisioned.v1`: a new tenant was onboarded. The contract gives only an example
//! for this event, so every field of the example is required with the example's type.

use crate::checker::{self as read, Checker, Object};

/// Payload of `tenant.provisioned.v1`.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantProvisioned<'a> {
    /// `tenantId` of the new tenant (expected to equal the envelope's; not enforced).
    pub tenant_id: &'a str,
    /// `organizationName`.
    pub organization_name: &'a str,
    /// `ownerEmail`.
    pub owner_email: &'a str,
    /// `plan`.
    pub plan: &'a str,
    /// `region`.
    pub region: &'a str,
    /// `resources` created for the tenant.
    pub resources: Resources<'a>,
    /// `provisioningTimeMs`.
    pub provisioning_time_ms: f64,
    /// `sampleDataSeeded`.
    pub sample_data_seeded: bool,
}

/// Storage created for a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources<'a> {
    /// `messagesTableName`.
    pub messages_table_name: &'a str,
    /// `metricsTableName`.
    pub metrics_table_name: &'a str,
    /// `s3Prefix`.
    pub s3_prefix: &'a str,
}

impl<'a> TenantProvisioned<'a> {
    pub(crate) fn read(c: &mut Checker, data: &'a Object<'a>) -> Option<Self> {
        let tenant_id = c.required(data, "tenantId", read::non_empty);
        let organization_name = c.required(data, "organizationName", read::non_empty);
        let owner_email = c.required(data, "ownerEmail", read::email);
        let plan = c.required(data, "plan", read::non_empty);
        let region = c.required(data, "region", read::non_empty);
        let resources = c.required_object(data, "resources", |c, o| {
            let messages_table_name = c.required(o, "messagesTableName", read::non_empty);
            let metrics_table_name = c.required(o, "metricsTableName", read::non_empty);
            let s3_prefix = c.required(o, "s3Prefix", read::non_empty);
            Some(Resources {
                messages_table_name: messages_table_name?,
                metrics_table_name: metrics_table_name?,
                s3_prefix: s3_prefix?,
            })
        });
        let provisioning_time_ms = c.required(data, "provisioningTimeMs", read::non_negative);
        let sample_data_seeded = c.required(data, "sampleDataSeeded", read::boolean);
        Some(Self {
            tenant_id: tenant_id?,
            organization_name: organization_name?,
            owner_email: owner_email?,
            plan: plan?,
            region: region?,
            resources: resources?,
            provisioning_time_ms: provisioning_time_ms?,
            sample_data_seeded: sample_data_seeded?,
        })
    }
}
