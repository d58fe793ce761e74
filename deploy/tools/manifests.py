"""What `deploy/check-manifests` asserts of the rendered Kubernetes manifests beyond their
schemas: the promises deploy/k8s makes (probes that tell liveness from readiness, requests,
graceful shutdown, secrets only by reference, budgets that let drains through, services that
select real pods, Kinesis instances matching the pipeline's replicas) and, given the binary,
that it accepts every container's settings: the rendered ConfigMap's salestalk.toml (an
overlay may bring its own, with its alert and routing rules) with the container's SALESTALK__
variables (a misspelt key is an error at start-up, better found here).
Usage: manifests.py RENDERED.yaml CONFIG.toml [SALESTALK_BINARY]. Prints every problem; exit 1
if there is one."""

import os
import subprocess
import sys
import tempfile

import yaml

SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY")
WORKLOADS = ("Deployment", "StatefulSet")
# Run to completion (the schema migration before an upgrade): no probes, no budget.
JOBS = ("Job",)
# Where a pod's ordinal comes from (Kubernetes 1.28+).
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"


def problems_of(documents, config_text):
    problems = []
    workloads = [d for d in documents if d.get("kind") in WORKLOADS]
    if not workloads:
        problems.append("no Deployment or StatefulSet rendered")
    pod_labels = {}
    for workload in workloads:
        name = workload["metadata"]["name"]
        spec = workload["spec"]
        template = spec["template"]
        pod_labels[name] = template["metadata"].get("labels", {})
        pod = template["spec"]
        grace = pod.get("terminationGracePeriodSeconds")
        if grace is None or grace < 30:
            problems.append(f"{name}: terminationGracePeriodSeconds must give the drain 30 s or more, not {grace}")
        mounts_config = {
            v["name"] for v in pod.get("volumes", []) if "configMap" in v
        }
        for container in pod.get("containers", []):
            where = f"{name}/{container['name']}"
            # Liveness on /health would restart every pod during a ClickHouse outage.
            for probe, wanted in (("readinessProbe", "/health"), ("livenessProbe", "/health/live")):
                path = container.get(probe, {}).get("httpGet", {}).get("path", "")
                if path != wanted:
                    problems.append(f"{where}: {probe} must GET {wanted}, not {path or 'nothing'}")
            resources = container.get("resources", {})
            for kind in ("cpu", "memory"):
                if kind not in resources.get("requests", {}):
                    problems.append(f"{where}: no {kind} request")
            if "memory" not in resources.get("limits", {}):
                problems.append(f"{where}: no memory limit")
            problems += container_problems(where, container, mounts_config)
    for job in (d for d in documents if d.get("kind") in JOBS):
        pod = job["spec"]["template"]["spec"]
        mounts_config = {v["name"] for v in pod.get("volumes", []) if "configMap" in v}
        for container in pod.get("containers", []):
            where = f"{job['metadata']['name']}/{container['name']}"
            problems += container_problems(where, container, mounts_config)
    configs = [
        d for d in documents
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"].startswith("salestalk-config")
    ]
    if len(configs) != 1:
        problems.append(f"expected one salestalk-config ConfigMap, found {len(configs)}")
    elif "salestalk.toml" not in configs[0].get("data", {}):
        problems.append("the salestalk-config ConfigMap has no salestalk.toml")
    problems += kinesis_problems(workloads, configs, config_text)

    def selects(selector, labels):
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    for document in documents:
        kind, name = document.get("kind"), document["metadata"]["name"]
        if kind == "PodDisruptionBudget":
            selector = document["spec"].get("selector", {}).get("matchLabels", {})
        elif kind == "Service":
            selector = document["spec"].get("selector", {})
        else:
            continue
        if not any(selects(selector, labels) for labels in pod_labels.values()):
            problems.append(f"{kind} {name} selects no workload's pods")
    for workload in workloads:
        if workload["kind"] == "StatefulSet":
            service = workload["spec"].get("serviceName")
            if not any(d.get("kind") == "Service" and d["metadata"]["name"] == service for d in documents):
                problems.append(f"StatefulSet {workload['metadata']['name']}: no Service {service}")
    budgets = [d for d in documents if d.get("kind") == "PodDisruptionBudget"]
    for budget in budgets:
        name, spec = budget["metadata"]["name"], budget["spec"]
        # minAvailable with one replica, or an unready pod counted as healthy-to-keep, blocks
        # every node drain (the second: for as long as ClickHouse is down).
        if "minAvailable" in spec:
            problems.append(f"PodDisruptionBudget {name}: use maxUnavailable, not minAvailable")
        if spec.get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
            problems.append(f"PodDisruptionBudget {name}: unhealthyPodEvictionPolicy must be AlwaysAllow")
    for workload in workloads:
        labels = pod_labels[workload["metadata"]["name"]]
        if not any(selects(b["spec"]["selector"]["matchLabels"], labels) for b in budgets):
            problems.append(f"{workload['metadata']['name']}: no PodDisruptionBudget")
    return problems


def container_problems(where, container, mounts_config):
    """A container's secrets go by reference, and it reads its configuration from the
    mounted ConfigMap."""
    problems = []
    for env in container.get("env", []):
        secret = any(word in env["name"] for word in SECRET_WORDS)
        # An empty value says "none" (an IAM role instead of keys), not a secret.
        if secret and env.get("value"):
            problems.append(f"{where}: {env['name']} is a literal; secrets go by secretKeyRef")
    args = container.get("args", [])
    mounted = [
        m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in mounts_config
    ]
    if "--config" not in args:
        problems.append(f"{where}: not started with --config")
    else:
        path = args[args.index("--config") + 1]
        if not any(path.startswith(m.rstrip("/") + "/") for m in mounted):
            problems.append(f"{where}: --config {path} is not on the mounted ConfigMap")
    return problems


def env_value(container, name):
    """The literal value of `name` in `container`, or None."""
    for env in container.get("env", []):
        if env["name"] == name and "value" in env:
            return env["value"]
    return None


def configured(text, section, key):
    """`key` of `[section]` in a salestalk.toml, or None (a line-level read: the file's
    own format, `key = value`)."""
    current = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == section and "=" in line:
            name, value = (part.strip() for part in line.split("=", 1))
            if name == key:
                return value.strip('"')
    return None


def kinesis_problems(workloads, configs, defaults):
    """The pipeline StatefulSet shares Kinesis shards statically: each pod's index is its
    ordinal, and `kinesis.instances` is its replica count (else shards are read twice or
    never)."""
    problems = []
    overlay = configs[0].get("data", {}).get("salestalk.toml", "") if len(configs) == 1 else ""
    for workload in workloads:
        if workload["kind"] != "StatefulSet":
            continue
        name = workload["metadata"]["name"]
        replicas = workload["spec"].get("replicas", 1)
        for container in workload["spec"]["template"]["spec"].get("containers", []):
            if "run" not in container.get("args", []):
                continue
            instances = (
                env_value(container, "SALESTALK__KINESIS__INSTANCES")
                or configured(overlay, "kinesis", "instances")
                or configured(defaults, "kinesis", "instances")
            )
            if str(instances) != str(replicas):
                problems.append(
                    f"{name}: kinesis.instances is {instances} but the StatefulSet has {replicas} "
                    "replicas: set SALESTALK__KINESIS__INSTANCES to the replica count"
                )
            index = [
                e for e in container.get("env", []) if e["name"] == "SALESTALK__KINESIS__INSTANCE_INDEX"
            ]
            from_ordinal = index and index[0].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == POD_INDEX
            if replicas > 1 and not from_ordinal:
                problems.append(
                    f"{name}: SALESTALK__KINESIS__INSTANCE_INDEX must come from the pod's ordinal "
                    f"(fieldRef {POD_INDEX}), or every replica reads every shard"
                )
    return problems


def refused_settings(documents, config, program):
    """Runs `salestalk check --offline` with each container's configuration file (the
    rendered ConfigMap's) and SALESTALK__ variables (values from Secrets and the pod itself as
    placeholders; a pod's ordinal as 0)."""
    problems = []
    for document in documents:
        if document.get("kind") == "ConfigMap" and document["metadata"]["name"].startswith("salestalk-config"):
            text = document.get("data", {}).get("salestalk.toml")
            if text is not None:
                handle = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
                with handle:
                    handle.write(text)
                config = handle.name
    for workload in (d for d in documents if d.get("kind") in WORKLOADS + JOBS):
        for container in workload["spec"]["template"]["spec"].get("containers", []):
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            for variable in container.get("env", []):
                if variable["name"].startswith("SALESTALK__"):
                    field = variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                    placeholder = "0" if field == POD_INDEX else "placeholder"
                    env[variable["name"]] = str(variable.get("value", placeholder))
            result = subprocess.run(
                [program, "--config", config, "check", "--offline"],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )
            if result.returncode != 0:
                where = f"{workload['metadata']['name']}/{container['name']}"
                problems.append(f"{where}: salestalk refuses its settings: {result.stderr.strip()}")
    return problems


def main():
    rendered, config = sys.argv[1], sys.argv[2]
    with open(rendered, encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    with open(config, encoding="utf-8") as f:
        config_text = f.read()
    problems = problems_of(documents, config_text)
    if len(sys.argv) > 3:
        problems += refused_settings(documents, config, sys.argv[3])
    for problem in problems:
        print(f"{rendered}: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
