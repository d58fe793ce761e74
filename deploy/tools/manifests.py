"""What `deploy/check-manifests` asserts of the rendered Kubernetes manifests beyond their
schemas: the promises deploy/k8s makes (probes, requests, graceful shutdown, secrets only by
reference, the configuration being config/salestalk.toml itself, budgets and services that
select real pods) and, given the binary, that it accepts every container's settings (a
misspelt SALESTALK__ key is an error at start-up, better found here).
Usage: manifests.py RENDERED.yaml CONFIG.toml [SALESTALK_BINARY]. Prints every problem; exit 1
if there is one."""

import os
import subprocess
import sys

import yaml

SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY")
WORKLOADS = ("Deployment", "StatefulSet")


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
            for probe in ("readinessProbe", "livenessProbe"):
                path = container.get(probe, {}).get("httpGet", {}).get("path", "")
                if not path.startswith("/health"):
                    problems.append(f"{where}: {probe} must GET /health..., not {path or 'nothing'}")
            resources = container.get("resources", {})
            for kind in ("cpu", "memory"):
                if kind not in resources.get("requests", {}):
                    problems.append(f"{where}: no {kind} request")
            if "memory" not in resources.get("limits", {}):
                problems.append(f"{where}: no memory limit")
            for env in container.get("env", []):
                secret = any(word in env["name"] for word in SECRET_WORDS)
                if secret and "value" in env:
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
    configs = [
        d for d in documents
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"].startswith("salestalk-config")
    ]
    if len(configs) != 1:
        problems.append(f"expected one salestalk-config ConfigMap, found {len(configs)}")
    elif configs[0].get("data", {}).get("salestalk.toml") != config_text:
        problems.append("the salestalk-config ConfigMap is not config/salestalk.toml")

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
    for workload in workloads:
        labels = pod_labels[workload["metadata"]["name"]]
        if not any(selects(b["spec"]["selector"]["matchLabels"], labels) for b in budgets):
            problems.append(f"{workload['metadata']['name']}: no PodDisruptionBudget")
    return problems


def refused_settings(documents, config, program):
    """Runs `salestalk check --offline` with each container's configuration file and
    SALESTALK__ variables (values from Secrets and the pod itself as placeholders)."""
    problems = []
    for workload in (d for d in documents if d.get("kind") in WORKLOADS):
        for container in workload["spec"]["template"]["spec"].get("containers", []):
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            for variable in container.get("env", []):
                if variable["name"].startswith("SALESTALK__"):
                    env[variable["name"]] = str(variable.get("value", "placeholder"))
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
