#!/usr/bin/env bash
# Real Apache Kafka (KRaft), NATS (JetStream) and MinIO on 127.0.0.1 for tests
# and CI. See deploy/local/README.md.
#
#   deploy/local/services.sh install|up|down|status|env [kafka|nats|minio ...]
#   deploy/local/services.sh down --purge [names...]
#   deploy/local/services.sh env --role producer|trainer|subscriber|uploader   (secure mode)
#
# No names means all three. Every service runs as a separate background
# process (MinIO is AGPL: it is only ever run, never imported).
# FFC_SECURE=1 selects the secure mode: TLS and authentication everywhere,
# least privilege per role (internal/security; see deploy/local/README.md).
set -euo pipefail

# ---------------------------------------------------------------- settings --

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

CACHE_DIR=${FFC_CACHE_DIR:-${HOME:?HOME is not set}/.cache/ffc}
SERVICES_DIR=${FFC_SERVICES_DIR:-$REPO_ROOT/.services}

KAFKA_VERSION=${FFC_KAFKA_VERSION:-4.4.0}
# Tried once when KAFKA_VERSION cannot be fetched; set empty to disable.
KAFKA_FALLBACK_VERSION=${FFC_KAFKA_FALLBACK_VERSION-4.3.1}
KAFKA_PORT=${FFC_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${FFC_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_HEAP=${FFC_KAFKA_HEAP:-512m}
KAFKA_START_TIMEOUT=${FFC_KAFKA_START_TIMEOUT:-90}

NATS_VERSION=${FFC_NATS_VERSION:-v2.15.2}
NATS_PORT=${FFC_NATS_PORT:-14222}
NATS_MONITOR_PORT=${FFC_NATS_MONITOR_PORT:-18222}
NATS_START_TIMEOUT=${FFC_NATS_START_TIMEOUT:-20}

MINIO_VERSION=${FFC_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
MINIO_PORT=${FFC_MINIO_PORT:-19000}
MINIO_CONSOLE_PORT=${FFC_MINIO_CONSOLE_PORT:-19001}
MINIO_START_TIMEOUT=${FFC_MINIO_START_TIMEOUT:-20}
S3_ACCESS_KEY=${FFC_S3_ACCESS_KEY:-ffcadmin}
S3_SECRET_KEY=${FFC_S3_SECRET_KEY:-ffcadmin-secret}
# MinIO publishes its bucket notifications (S3 event records) to this Kafka
# topic of the Kafka started here, through its Kafka target FFC (ARN
# arn:minio:sqs::FFC:kafka); FFC_MINIO_NOTIFY=0 turns that off. Events
# wait in a queue under MinIO's data while Kafka is down.
S3_NOTIFY_TOPIC=${FFC_S3_NOTIFY_TOPIC:-ffc.s3.events}
MINIO_NOTIFY=${FFC_MINIO_NOTIFY:-1}
MINIO_NOTIFY_TARGET=FFC # also the suffix of the MINIO_NOTIFY_KAFKA_*_FFC names
S3_NOTIFY_ARN="arn:minio:sqs::$MINIO_NOTIFY_TARGET:kafka"

# MinIO's client, used in secure mode to create the roles' users and policies.
MC_VERSION=${FFC_MC_VERSION:-v0.0.0-20250313080218-cf909e1063a9}

STOP_TIMEOUT=${FFC_SERVICES_STOP_TIMEOUT:-20}
PURGE=${FFC_SERVICES_PURGE:-0}

ALL_SERVICES=(kafka nats minio)
BIN_DIR=$CACHE_DIR/bin
RUN_DIR=$SERVICES_DIR/run
LOG_DIR=$SERVICES_DIR/logs

# Secure mode (FFC_SECURE=1). MODE_FILE records the mode (and mutual TLS)
# of the storage in SERVICES_DIR for later commands; SECURE_DIR holds the
# material (CA, certificates, passwords, nkeys, S3 keys) that SECURE_BIN,
# built from deploy/local/secure, makes. resolve_mode sets the rest.
MODE_FILE=$SERVICES_DIR/mode
SECURE_DIR=$SERVICES_DIR/secure
SECURE_BIN=$SERVICES_DIR/bin/ffc-secure
SECURE=0         # 1: secure mode
MTLS=0           # 1: clients also present their role's certificate
RECORDED_MODE="" # the mode in MODE_FILE ("" when there is none: plaintext)
RECORDED_MTLS=0
ROLE=""          # env --role
NATS_SCHEME=nats
MINIO_SCHEME=http

# Java options for the short-lived Kafka tools: small heap, fast start.
KAFKA_TOOL_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$SCRIPT_DIR/kafka/tools-log4j2.properties")

# ----------------------------------------------------------------- helpers --

log() { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }
die() {
  warn "error: $*"
  exit 1
}

usage() {
  cat <<EOF
usage: ${0##*/} install|up|down|status|env [kafka|nats|minio ...]
       ${0##*/} down --purge [names...]   (also deletes data and logs)
       ${0##*/} env --role producer|trainer|subscriber|uploader [names...]

  install  fetch/build Kafka $KAFKA_VERSION, nats-server $NATS_VERSION and MinIO
           into $CACHE_DIR (skipped when already there)
  up       install if needed, start on 127.0.0.1 and wait until healthy
  down     stop what 'up' started (by pid file); data is kept unless --purge
  status   one line per service; exit status 3 if any is not running
  env      print 'export FFC_...' lines for: eval "\$(${0##*/} env)"
           (secure mode: --role R adds the settings of role R, files only)

Services start in the order kafka, nats, minio whatever the order given:
MinIO sends bucket notifications to the Kafka topic $S3_NOTIFY_TOPIC
(target ARN $S3_NOTIFY_ARN; FFC_MINIO_NOTIFY=0: none; none in secure mode).

FFC_SECURE=1 up: secure mode (Kafka SASL_SSL/SCRAM with ACLs, NATS TLS
with nkeys, MinIO HTTPS with one user per role; FFC_SECURE_MTLS=1 adds
client certificates). Later commands read the mode from $SERVICES_DIR;
material in $SERVICES_DIR/secure.
EOF
}

now() { date +%s; }

# Lock so that two concurrent invocations (parallel CI jobs) do not race on
# the same pid files / install folders.
take_lock() {
  local lockfile=$1
  mkdir -p "$(dirname "$lockfile")"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$lockfile"
    if ! flock -w 900 9; then
      die "could not lock $lockfile within 900s (another services.sh running?)"
    fi
  fi
}

require() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' is required but not on PATH"
  done
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" >/dev/null 2>&1
}

# Describe who listens on a port (best effort, for error messages).
port_holder() {
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$1" 2>/dev/null | sed 's/^/    /' || true
  fi
}

log_file() { printf '%s/%s.log' "$LOG_DIR" "$1"; }
pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

tail_log() {
  local svc=$1 f
  f=$(log_file "$svc")
  if [[ -s $f ]]; then
    warn "---- last 30 lines of $f ----"
    tail -n 30 "$f" >&2
    warn "---- end of $svc log ----"
  else
    warn "($svc wrote no log at $f)"
  fi
}

fail_service() {
  local svc=$1
  shift
  warn "error: $svc: $*"
  tail_log "$svc"
  exit 1
}

# Marker that must appear in /proc/PID/cmdline for a pid file to be trusted
# (guards against a recycled pid after a reboot or crash).
cmd_marker() {
  case $1 in
  kafka) printf 'kafka.Kafka' ;;
  nats) printf 'nats-server' ;;
  minio) printf 'minio server' ;;
  esac
}

# proc_alive PID: the process exists and is not a zombie.
proc_alive() {
  local st=
  kill -0 "$1" 2>/dev/null || return 1
  if [[ -r /proc/$1/status ]]; then
    st=$(awk '/^State:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null || true)
  fi
  [[ $st != Z ]]
}

# Prints the pid if the pid file points at a live process of this service.
# The command line must name the service; an empty one (read while the
# starter shell execs into the service) is accepted.
live_pid() {
  local svc=$1 f pid cmd=
  f=$(pid_file "$svc")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  proc_alive "$pid" || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  fi
  if [[ -n $cmd && $cmd != *"$(cmd_marker "$svc")"* ]]; then
    return 1
  fi
  printf '%s' "$pid"
}

addr_of() {
  case $1 in
  kafka) printf '127.0.0.1:%s' "$KAFKA_PORT" ;;
  nats) printf '%s://127.0.0.1:%s' "$NATS_SCHEME" "$NATS_PORT" ;;
  minio) printf '%s://127.0.0.1:%s' "$MINIO_SCHEME" "$MINIO_PORT" ;;
  esac
}

ports_of() {
  case $1 in
  kafka) printf '%s %s' "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" ;;
  nats) printf '%s %s' "$NATS_PORT" "$NATS_MONITOR_PORT" ;;
  minio) printf '%s %s' "$MINIO_PORT" "$MINIO_CONSOLE_PORT" ;;
  esac
}

# ----------------------------------------------------------------- install --

kafka_home() { printf '%s/kafka-%s' "$CACHE_DIR" "$1"; }
kafka_installed() { [[ -f "$(kafka_home "$1")/.complete" ]]; }

# fetch_kafka VERSION: copy the runtime jars of the pom into the cache.
fetch_kafka() {
  local v=$1 home tmp
  home=$(kafka_home "$v")
  tmp="$home.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "install: kafka $v: mvn dependency:copy-dependencies -> $home/libs"
  if ! mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/kafka/pom.xml" "-Dkafka.version=$v" \
    dependency:copy-dependencies -DincludeScope=runtime \
    "-DoutputDirectory=$tmp/libs" >"$tmp/mvn.log" 2>&1; then
    warn "install: kafka $v: maven failed; last lines of its output:"
    tail -n 20 "$tmp/mvn.log" >&2 || true
    rm -rf "$tmp"
    return 1
  fi
  if [[ ! -f "$tmp/libs/kafka_2.13-$v.jar" ]]; then
    warn "install: kafka $v: kafka_2.13-$v.jar missing after copy"
    rm -rf "$tmp"
    return 1
  fi
  rm -f "$tmp/mvn.log"
  printf '%s\n' "$v" >"$tmp/.complete"
  rm -rf "$home"
  mv "$tmp" "$home"
}

install_kafka() {
  require java mvn
  local t0 v
  if kafka_installed "$KAFKA_VERSION"; then
    log "install: kafka $KAFKA_VERSION: present in $(kafka_home "$KAFKA_VERSION")"
    return 0
  fi
  t0=$(now)
  if fetch_kafka "$KAFKA_VERSION"; then
    log "install: kafka $KAFKA_VERSION: done in $(($(now) - t0))s"
    return 0
  fi
  v=$KAFKA_FALLBACK_VERSION
  if [[ -z $v || $v == "$KAFKA_VERSION" ]]; then
    die "install: kafka $KAFKA_VERSION could not be fetched"
  fi
  warn "install: kafka $KAFKA_VERSION could not be fetched; falling back to $v"
  if kafka_installed "$v" || fetch_kafka "$v"; then
    KAFKA_VERSION=$v
    log "install: kafka $v: done in $(($(now) - t0))s"
    return 0
  fi
  die "install: kafka $KAFKA_VERSION and $v could not be fetched"
}

# go_binary NAME MODULE@VERSION: cached `go install` into $CACHE_DIR/bin.
# A cached binary is reused only if its embedded module version matches.
go_binary() {
  local name=$1 pkg=$2 mod=${2%@*} ver=${2##*@} bin t0
  bin=$BIN_DIR/$name
  if [[ -x $bin ]]; then
    if ! command -v go >/dev/null 2>&1 ||
      go version -m "$bin" 2>/dev/null | awk '$1 == "mod" {print $2, $3}' |
      grep -qxF "$mod $ver"; then
      log "install: $name $ver: present in $bin"
      return 0
    fi
    log "install: $name: cached binary is not $ver; rebuilding"
  fi
  require go
  mkdir -p "$BIN_DIR"
  t0=$(now)
  log "install: $name $ver: GOBIN=$BIN_DIR go install $pkg"
  if [[ $name == minio ]]; then
    log "install: (MinIO is a large build: expect several minutes)"
  fi
  # Build from the cache folder so no workspace/module of the caller applies.
  if ! (cd "$CACHE_DIR" && GOBIN=$BIN_DIR GOWORK=off go install "$pkg"); then
    die "install: $name $ver: go install failed"
  fi
  log "install: $name $ver: done in $(($(now) - t0))s"
}

install_nats() { go_binary nats-server "github.com/nats-io/nats-server/v2@$NATS_VERSION"; }
install_minio() { go_binary minio "github.com/minio/minio@$MINIO_VERSION"; }
install_mc() { go_binary mc "github.com/minio/mc@$MC_VERSION"; }

cmd_install() {
  local t0 svc
  t0=$(now)
  mkdir -p "$CACHE_DIR"
  take_lock "$CACHE_DIR/.install.lock"
  for svc in "$@"; do
    "install_$svc"
    # Secure mode: mc creates MinIO's users and policies.
    if [[ $svc == minio && $SECURE == 1 ]]; then
      install_mc
    fi
  done
  log "install: finished in $(($(now) - t0))s (cache: $CACHE_DIR)"
  exec 9>&- || true
}

# --------------------------------------------------------------- processes --

# spawn SVC CMD...: start CMD detached (own session, stdin closed) with
# output appended to the service log; the pid file is written by the child
# itself just before it execs the service, so it is the service's own pid.
spawn() {
  local svc=$1 lf pf
  shift
  lf=$(log_file "$svc")
  pf=$(pid_file "$svc")
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  [[ -f $lf ]] && mv -f "$lf" "$lf.1"
  rm -f "$pf"
  printf '=== %s: started by %s at %s ===\n' "$svc" "$0" "$(date -u +%FT%TZ)" >"$lf"
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pf" "$@" \
    </dev/null >>"$lf" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $pf ]] && return 0
    sleep 0.1
  done
  fail_service "$svc" "process did not start (no pid file $pf)"
}

# wait_healthy SVC TIMEOUT: poll health_SVC until it passes; fail (with the
# log tail) if the process exits or the timeout passes.
wait_healthy() {
  local svc=$1 timeout=$2 deadline
  deadline=$(($(now) + timeout))
  while :; do
    if ! live_pid "$svc" >/dev/null; then
      rm -f "$(pid_file "$svc")"
      fail_service "$svc" "process exited during startup"
    fi
    if "health_$svc"; then
      # Re-check: the health endpoint may answer before a later bind fails.
      live_pid "$svc" >/dev/null || fail_service "$svc" "process exited during startup"
      return 0
    fi
    if (($(now) >= deadline)); then
      fail_service "$svc" "not healthy after ${timeout}s (still running as pid $(live_pid "$svc" || echo '?'); 'down $svc' stops it)"
    fi
    sleep 1
  done
}

check_ports_free() {
  local svc=$1 p
  for p in $(ports_of "$svc"); do
    if port_open "$p"; then
      warn "error: $svc: cannot start: port 127.0.0.1:$p is already in use by a process not started by ${0##*/}:"
      port_holder "$p" >&2
      warn "  $svc was not started (so it has no new log); free the port or pick other"
      warn "  ports with the FFC_*_PORT variables (see deploy/local/README.md)"
      exit 1
    fi
  done
}

# ------------------------------------------------------------------ secure --

# The secure mode's functions (FFC_SECURE=1).
# shellcheck source=deploy/local/services-secure.sh
source "$SCRIPT_DIR/services-secure.sh"

# -------------------------------------------------------------------- kafka --

kafka_libs() { printf '%s/libs' "$(kafka_home "$KAFKA_VERSION")"; }

kafka_tool() {
  local libs
  libs=$(kafka_libs)
  timeout 60 java "${KAFKA_TOOL_OPTS[@]}" -cp "$libs/*" "$@"
}

health_kafka() {
  # Cheap TCP probe first; then a real Kafka protocol round trip (secure
  # mode: over SASL_SSL as admin).
  port_open "$KAFKA_PORT" || return 1
  local sec=()
  if [[ $SECURE == 1 ]]; then
    [[ -f $(kafka_admin_props) ]] || write_kafka_admin_props
    sec=(--command-config "$(kafka_admin_props)")
  fi
  kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" "${sec[@]}" >/dev/null 2>&1
}

# render_kafka_config CFG DATA: server.properties from its template; in
# secure mode 0600, with the inter-broker login of admin appended.
render_kafka_config() {
  local cfg=$1 data=$2 pw auth=none
  if [[ $SECURE != 1 ]]; then
    sed -e "s|@PORT@|$KAFKA_PORT|g" \
      -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$data|g" \
      "$SCRIPT_DIR/kafka/server.properties.in" >"$cfg"
    return 0
  fi
  [[ $MTLS == 1 ]] && auth=required
  read_secret pw "$SECURE_DIR/kafka-admin.password"
  new_private "$cfg"
  sed -e "s|@PORT@|$KAFKA_PORT|g" \
    -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@DATA_DIR@|$data|g" \
    -e "s|@KEYSTORE@|$SECURE_DIR/server-bundle.pem|g" \
    -e "s|@TRUSTSTORE@|$SECURE_DIR/ca.pem|g" \
    -e "s|@CLIENT_AUTH@|$auth|g" \
    "$SCRIPT_DIR/kafka/server-secure.properties.in" >>"$cfg"
  printf '\n# Inter-broker login (SASL_SSL) of the super user admin, added by services.sh.\n' >>"$cfg"
  printf 'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=%s required username="admin" password="%s";\n' \
    "$SCRAM_LOGIN" "$pw" >>"$cfg"
}

# format_kafka CLUSTER_ID CFG: StorageTool format; in secure mode with
# admin's SCRAM credential, its arguments in a java @argfile (0600, deleted
# right after) so that the password is on no command line.
format_kafka() {
  local cluster_id=$1 cfg=$2 args pw rc=0
  mkdir -p "$LOG_DIR"
  if [[ $SECURE != 1 ]]; then
    kafka_tool kafka.tools.StorageTool format --standalone \
      -t "$cluster_id" -c "$cfg" >"$LOG_DIR/kafka-format.log" 2>&1
    return
  fi
  [[ $cfg != *[\"\\]* ]] || die "kafka: $cfg: a path with a quote or backslash cannot go into a java @argfile"
  args=$SERVICES_DIR/kafka/format.args
  read_secret pw "$SECURE_DIR/kafka-admin.password"
  new_private "$args"
  printf '"%s"\n' kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$cfg" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$pw]" >>"$args"
  # The tool prints the bootstrap records: admin's SCRAM salt and keys
  # (what verifies its password) are left out of the log.
  timeout 60 java "${KAFKA_TOOL_OPTS[@]}" -XX:-UsePerfData -cp "$(kafka_libs)/*" "@$args" 2>&1 |
    sed -E 's/(salt|storedKey|serverKey)=\[[^]]*\]/\1=[redacted]/g' >"$LOG_DIR/kafka-format.log" || rc=$?
  rm -f "$args"
  return "$rc"
}

kafka_running_version() {
  local v
  v=$(grep -o 'Kafka version: [0-9A-Za-z.-]*' "$(log_file kafka)" 2>/dev/null | tail -n 1 | cut -d' ' -f3)
  printf '%s' "${v:-$KAFKA_VERSION}"
}

start_kafka() {
  require java
  kafka_installed "$KAFKA_VERSION" || install_kafka
  local kdir=$SERVICES_DIR/kafka data cfg stamp libs cluster_id
  data=$kdir/data
  cfg=$kdir/server.properties
  stamp=$kdir/formatted.env
  libs=$(kafka_libs)
  mkdir -p "$data"
  render_kafka_config "$cfg" "$data"
  if [[ $SECURE == 1 ]]; then
    write_kafka_admin_props
  fi

  if [[ -f $data/meta.properties ]]; then
    # The standalone KRaft quorum records the controller endpoint at format
    # time; a different controller port would not match the stored voter.
    if [[ -f $stamp ]] && ! grep -qxF "controller_port=$KAFKA_CONTROLLER_PORT" "$stamp"; then
      die "kafka: $data was formatted with $(grep controller_port "$stamp"), now FFC_KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT; use the old port or '${0##*/} down --purge kafka'"
    fi
    if [[ -f $stamp ]] && ! grep -qxF "kafka_version=$KAFKA_VERSION" "$stamp"; then
      warn "kafka: warning: $data was formatted by Kafka $(sed -n 's/^kafka_version=//p' "$stamp"), now running $KAFKA_VERSION (a downgrade cannot read it; use 'down --purge kafka')"
    fi
    log "kafka: reusing formatted storage in $data"
  else
    cluster_id=$(kafka_tool kafka.tools.StorageTool random-uuid) ||
      die "kafka: StorageTool random-uuid failed"
    log "kafka: formatting storage in $data (cluster id $cluster_id)"
    if ! format_kafka "$cluster_id" "$cfg"; then
      warn "error: kafka: storage format failed:"
      cat "$LOG_DIR/kafka-format.log" >&2
      exit 1
    fi
    printf 'cluster_id=%s\ncontroller_port=%s\nkafka_version=%s\n' \
      "$cluster_id" "$KAFKA_CONTROLLER_PORT" "$KAFKA_VERSION" >"$stamp"
  fi

  spawn kafka java "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    "-Dkafka.logs.dir=$LOG_DIR" \
    "-Dlog4j2.configurationFile=$SCRIPT_DIR/kafka/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$cfg"
  wait_healthy kafka "$KAFKA_START_TIMEOUT"
}

# --------------------------------------------------------------------- nats --

health_nats() {
  curl -fsS -m 3 -o /dev/null \
    "http://127.0.0.1:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" 2>/dev/null
}

start_nats() {
  local bin=$BIN_DIR/nats-server conf=$SERVICES_DIR/nats/nats.conf
  [[ -x $bin ]] || install_nats
  mkdir -p "$SERVICES_DIR/nats/data"
  if [[ $SECURE == 1 ]]; then
    write_nats_conf "$conf" "$SERVICES_DIR/nats/data"
    spawn nats "$bin" -c "$conf"
  else
    spawn nats "$bin" -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" \
      -js -sd "$SERVICES_DIR/nats/data"
  fi
  wait_healthy nats "$NATS_START_TIMEOUT"
}

# -------------------------------------------------------------------- minio --

health_minio() {
  if [[ $SECURE == 1 ]]; then
    curl -fsS -m 3 -o /dev/null --cacert "$SECURE_DIR/ca.pem" \
      "https://127.0.0.1:$MINIO_PORT/minio/health/live" 2>/dev/null
    return
  fi
  curl -fsS -m 3 -o /dev/null "http://127.0.0.1:$MINIO_PORT/minio/health/live" 2>/dev/null
}

# ----------------------------------------------------------------- commands --

cmd_up() {
  local svc pid t0
  require curl
  take_lock "$SERVICES_DIR/.lock"
  prepare_secure
  for svc in "$@"; do
    t0=$(now)
    if pid=$(live_pid "$svc"); then
      if "health_$svc"; then
        log "$svc: already running at $(addr_of "$svc") (pid $pid)"
        # Secure mode: users and privileges again (idempotent), in case
        # the up that started it did not get that far.
        if [[ $SECURE == 1 ]]; then
          "provision_$svc"
        fi
        continue
      fi
      log "$svc: pid $pid is running but not answering yet; waiting"
      wait_healthy "$svc" "$(timeout_of "$svc")"
    else
      rm -f "$(pid_file "$svc")"
      check_ports_free "$svc"
      "start_$svc"
    fi
    if [[ $SECURE == 1 ]]; then
      "provision_$svc"
    fi
    pid=$(live_pid "$svc" || echo '?')
    log_up "$svc" "$pid" "$t0"
  done
}

log_up() {
  local svc=$1 pid=$2 t0=$3 sec=
  [[ $SECURE != 1 ]] || sec=", secure"
  case $svc in
  kafka)
    [[ $SECURE != 1 ]] || sec=", SASL_SSL"
    log "kafka: up at 127.0.0.1:$KAFKA_PORT (Apache Kafka $(kafka_running_version), KRaft$sec) pid $pid, ready in $(($(now) - t0))s"
    ;;
  nats)
    log "nats: up at $(addr_of nats) (JetStream$sec, monitor http://127.0.0.1:$NATS_MONITOR_PORT) pid $pid, ready in $(($(now) - t0))s"
    ;;
  minio)
    log "minio: up at $(addr_of minio) (console $MINIO_SCHEME://127.0.0.1:$MINIO_CONSOLE_PORT) pid $pid, ready in $(($(now) - t0))s"
    ;;
  esac
}

timeout_of() {
  case $1 in
  kafka) printf '%s' "$KAFKA_START_TIMEOUT" ;;
  nats) printf '%s' "$NATS_START_TIMEOUT" ;;
  minio) printf '%s' "$MINIO_START_TIMEOUT" ;;
  esac
}

stop_one() {
  local svc=$1 pid i
  if ! pid=$(live_pid "$svc"); then
    rm -f "$(pid_file "$svc")"
    log "$svc: not running"
    return 0
  fi
  log "$svc: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    proc_alive "$pid" || break
    sleep 0.1
  done
  if proc_alive "$pid"; then
    warn "$svc: pid $pid still alive after ${STOP_TIMEOUT}s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$(pid_file "$svc")"
  log "$svc: stopped"
}

purge_one() {
  local svc=$1
  case $SERVICES_DIR in
  "" | / | "$HOME" | "$REPO_ROOT") die "refusing to purge under FFC_SERVICES_DIR=$SERVICES_DIR" ;;
  esac
  rm -rf "${SERVICES_DIR:?}/$svc"
  rm -f "$LOG_DIR/$svc.log" "$LOG_DIR/$svc.log.1" "$LOG_DIR/$svc-format.log"
  log "$svc: purged data and logs"
}

cmd_down() {
  local svc
  take_lock "$SERVICES_DIR/.lock"
  for svc in "$@"; do
    stop_one "$svc"
    if [[ $PURGE == 1 ]]; then
      purge_one "$svc"
    fi
  done
  # The secure material goes with the last service's data.
  if [[ $PURGE == 1 ]] && ! any_storage; then
    purge_secure
  fi
}

cmd_status() {
  local svc pid rc=0 health
  for svc in "$@"; do
    if pid=$(live_pid "$svc"); then
      health=answering
      case $svc in
      kafka) port_open "$KAFKA_PORT" || health="not answering" ;;
      *) "health_$svc" || health="not answering" ;;
      esac
      printf '%-6s running  %-28s pid %s (%s)\n' "$svc:" "$(addr_of "$svc")" "$pid" "$health"
    else
      printf '%-6s stopped  %s\n' "$svc:" "$(addr_of "$svc")"
      rc=3
    fi
  done
  if [[ $SECURE == 1 ]]; then
    printf '%-6s secure   Kafka SASL_SSL, NATS TLS+nkeys, MinIO HTTPS+users; mutual TLS %s; material %s\n' \
      "mode:" "$(on_off "$MTLS")" "$SECURE_DIR"
  fi
  return "$rc"
}

cmd_env() {
  local svc
  if [[ $SECURE == 1 ]]; then
    env_secure "$@"
    return
  fi
  [[ -z $ROLE ]] || die "env --role: only in secure mode (FFC_SECURE=1)"
  for svc in "$@"; do
    case $svc in
    kafka) printf 'export FFC_KAFKA_BROKERS=%q\n' "127.0.0.1:$KAFKA_PORT" ;;
    nats) printf 'export FFC_NATS_URL=%q\n' "nats://127.0.0.1:$NATS_PORT" ;;
    minio)
      printf 'export FFC_S3_ENDPOINT=%q\n' "127.0.0.1:$MINIO_PORT"
      printf 'export FFC_S3_ACCESS_KEY=%q\n' "$S3_ACCESS_KEY"
      printf 'export FFC_S3_SECRET_KEY=%q\n' "$S3_SECRET_KEY"
      if [[ $MINIO_NOTIFY == 1 ]]; then
        printf 'export FFC_S3_NOTIFY_TOPIC=%q\n' "$S3_NOTIFY_TOPIC"
        printf 'export FFC_S3_NOTIFY_ARN=%q\n' "$S3_NOTIFY_ARN"
      fi
      ;;
    esac
  done
}

main() {
  local cmd=${1:-}
  [[ -n $cmd ]] || {
    usage >&2
    exit 2
  }
  shift
  case $cmd in
  -h | --help | help)
    usage
    exit 0
    ;;
  install | up | down | status | env) ;;
  *)
    usage >&2
    exit 2
    ;;
  esac

  local given=" " names=() a svc want_role=0
  for a in "$@"; do
    if ((want_role)); then
      ROLE=$a want_role=0
      continue
    fi
    case $a in
    --purge) PURGE=1 ;;
    --role) want_role=1 ;;
    --role=*) ROLE=${a#--role=} ;;
    kafka | nats | minio) given+="$a " ;;
    *) die "unknown argument '$a' (want: kafka, nats, minio, --purge, env --role R)" ;;
    esac
  done
  if ((want_role)) || [[ -n $ROLE && " ${CLIENT_ROLES[*]} " != *" $ROLE "* ]]; then
    die "--role '$ROLE': want one of ${CLIENT_ROLES[*]}"
  fi
  [[ -z $ROLE || $cmd == env ]] || die "--role is an option of env only"
  resolve_mode
  case $cmd in
  up | status | env) check_mode ;;
  esac
  # Always in the order of ALL_SERVICES: Kafka before MinIO, which sends
  # its bucket notifications there.
  for svc in "${ALL_SERVICES[@]}"; do
    if [[ $given == " " || $given == *" $svc "* ]]; then
      names+=("$svc")
    fi
  done

  case $cmd in
  install) cmd_install "${names[@]}" ;;
  up)
    cmd_install "${names[@]}"
    cmd_up "${names[@]}"
    ;;
  down) cmd_down "${names[@]}" ;;
  status) cmd_status "${names[@]}" ;;
  env) cmd_env "${names[@]}" ;;
  esac
}

main "$@"
