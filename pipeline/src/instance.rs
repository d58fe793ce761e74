//! Who this process is, as what it writes names it: the generation claims of the tasks it
//! restores (`task_claims`) and the lag samples of the partitions it owns (the SRE page).

/// The host (a pod's name on Kubernetes), the process id and the configured Kafka instance id
/// (static membership), for whoever reads the claims or the lag table after an incident.
pub fn name(instance_id: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".to_string());
    let pid = std::process::id();
    if instance_id.is_empty() {
        format!("{host}/{pid}")
    } else {
        format!("{host}/{pid}/{instance_id}")
    }
}
