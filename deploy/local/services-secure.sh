#!/usr/bin/env bash
# Secure mode of deploy/local/services.sh (FFC_SECURE=1): the recorded
# mode, the material (from deploy/local/secure, the one home of the roles),
# the secure configuration and provisioning of Kafka, NATS and MinIO, and
# `env --role`. Sourced by services.sh, whose settings and helpers it uses;
# not run on its own.
# shellcheck shell=bash
# ------------------------------------------------------------------ secure --

# The roles a component runs as (env --role). Their privileges and material
# are internal/security's (deploy/local/secure), never written here.
CLIENT_ROLES=(producer trainer subscriber uploader)
# MinIO's root user (security.S3AccessKey(admin)); its secret is s3-admin.secret.
S3_ROOT_USER=ffcadmin
SCRAM_LOGIN=org.apache.kafka.common.security.scram.ScramLoginModule

on_off() { if [[ $1 == 1 ]]; then printf on; else printf off; fi; }

# read_secret VAR FILE: the first line of FILE into VAR, with builtins only
# (so that no process shows it on its command line).
read_secret() {
  local line=
  [[ -r $2 ]] || die "secure: cannot read $2"
  IFS= read -r line <"$2" || true
  [[ -n $line ]] || die "secure: $2 is empty"
  printf -v "$1" '%s' "$line"
}

# new_private FILE: FILE empty and mode 0600 (later writes keep the mode).
new_private() {
  rm -f "$1"
  (umask 077 && : >"$1")
}

# any_storage: a service folder (data, configuration) exists.
any_storage() {
  local svc
  for svc in "${ALL_SERVICES[@]}"; do
    [[ -d $SERVICES_DIR/$svc ]] && return 0
  done
  return 1
}

any_running() {
  local svc
  for svc in "${ALL_SERVICES[@]}"; do
    live_pid "$svc" >/dev/null && return 0
  done
  return 1
}

# resolve_mode: SECURE and MTLS from FFC_SECURE / FFC_SECURE_MTLS, or from
# the mode recorded in SERVICES_DIR when they are not set.
resolve_mode() {
  local k v
  if [[ -f $MODE_FILE ]]; then
    while IFS='=' read -r k v; do
      case $k in
      mode) RECORDED_MODE=$v ;;
      mtls) RECORDED_MTLS=$v ;;
      esac
    done <"$MODE_FILE"
  fi
  case ${FFC_SECURE-} in
  "") [[ $RECORDED_MODE != secure ]] || SECURE=1 ;;
  0 | 1) SECURE=$FFC_SECURE ;;
  *) die "FFC_SECURE=$FFC_SECURE: want 1 (secure mode) or 0 (plaintext)" ;;
  esac
  case ${FFC_SECURE_MTLS-} in
  "") [[ $RECORDED_MODE != secure ]] || MTLS=$RECORDED_MTLS ;;
  0 | 1) MTLS=$FFC_SECURE_MTLS ;;
  *) die "FFC_SECURE_MTLS=$FFC_SECURE_MTLS: want 1 or 0" ;;
  esac
  if [[ $SECURE != 1 ]]; then
    MTLS=0
    return 0
  fi
  # No bucket notifications in secure mode (see deploy/local/README.md).
  MINIO_NOTIFY=${FFC_MINIO_NOTIFY:-0}
  NATS_SCHEME=tls
  MINIO_SCHEME=https
}

# check_mode: refuse a mode other than the one the storage was made in.
check_mode() {
  if [[ $SECURE == 1 && $RECORDED_MODE != secure ]] && any_storage; then
    die "$SERVICES_DIR holds services set up in plaintext mode, which FFC_SECURE=1 cannot use: run '${0##*/} down --purge' (without FFC_SECURE) first, or pick another FFC_SERVICES_DIR"
  fi
  if [[ $SECURE == 0 && $RECORDED_MODE == secure ]]; then
    die "$SERVICES_DIR holds services set up in secure mode (FFC_SECURE=1), which FFC_SECURE=0 cannot use: run '${0##*/} down --purge' first, or pick another FFC_SERVICES_DIR"
  fi
  if [[ $SECURE == 1 && $MINIO_NOTIFY == 1 ]]; then
    die "FFC_MINIO_NOTIFY=1 is not supported with FFC_SECURE=1: MinIO's Kafka target would need SASL_SSL credentials of its own (see deploy/local/README.md)"
  fi
  if [[ $SECURE == 0 && ${FFC_SECURE_MTLS:-0} == 1 ]]; then
    warn "warning: FFC_SECURE_MTLS=1 is ignored without FFC_SECURE=1"
  fi
}

# build_secure_tool: go build deploy/local/secure into SECURE_BIN (fast
# when nothing changed; stdout stays clean for env).
build_secure_tool() {
  require go
  local tmp=$SECURE_BIN.tmp.$$
  mkdir -p "$(dirname "$SECURE_BIN")"
  if ! (cd "$REPO_ROOT" && go build -o "$tmp" ./deploy/local/secure); then
    rm -f "$tmp"
    die "secure: go build ./deploy/local/secure failed"
  fi
  mv -f "$tmp" "$SECURE_BIN"
}

# prepare_secure: (secure mode, under the lock) the tool, the material
# (kept when present) and the recorded mode.
prepare_secure() {
  [[ $SECURE == 1 ]] || return 0
  if [[ $RECORDED_MODE == secure && $MTLS != "$RECORDED_MTLS" ]] && any_running; then
    die "the services in $SERVICES_DIR run with FFC_SECURE_MTLS=$RECORDED_MTLS: run '${0##*/} down' before changing it"
  fi
  build_secure_tool
  "$SECURE_BIN" init --dir "$SECURE_DIR" || die "secure: making the material in $SECURE_DIR failed"
  printf 'mode=secure\nmtls=%s\n' "$MTLS" >"$MODE_FILE"
  RECORDED_MODE=secure RECORDED_MTLS=$MTLS
  log "secure: material in $SECURE_DIR (mutual TLS $(on_off "$MTLS"))"
}

purge_secure() {
  [[ -e $SECURE_DIR || -e $MODE_FILE || -e $SECURE_BIN ]] || return 0
  rm -rf "${SECURE_DIR:?}" "${MODE_FILE:?}" "${SECURE_BIN:?}"
  rmdir "$(dirname "$SECURE_BIN")" 2>/dev/null || true
  log "secure: purged the material ($SECURE_DIR) and the recorded mode"
}

# The admin's client settings (secure mode), for the health check.
kafka_admin_props() { printf '%s/kafka/admin-client.properties' "$SERVICES_DIR"; }

# write_kafka_admin_props: SASL_SSL as admin (the password makes it 0600;
# with mutual TLS also admin's certificate, bundled for the PEM key store).
write_kafka_admin_props() {
  local kdir=$SERVICES_DIR/kafka f pw
  f=$(kafka_admin_props)
  mkdir -p "$kdir"
  read_secret pw "$SECURE_DIR/kafka-admin.password"
  new_private "$f"
  printf 'security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n' >>"$f"
  printf 'sasl.jaas.config=%s required username="admin" password="%s";\n' "$SCRAM_LOGIN" "$pw" >>"$f"
  printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "$SECURE_DIR/ca.pem" >>"$f"
  if [[ $MTLS == 1 ]]; then
    new_private "$kdir/admin-bundle.pem"
    cat "$SECURE_DIR/admin-key.pem" "$SECURE_DIR/admin.pem" >>"$kdir/admin-bundle.pem"
    printf 'ssl.keystore.type=PEM\nssl.keystore.location=%s\n' "$kdir/admin-bundle.pem" >>"$f"
  fi
}

# provision_kafka: (secure mode) the producer's and trainer's SCRAM users
# and ACLs, created as admin by the secure tool; idempotent.
provision_kafka() {
  local mt=()
  [[ $MTLS == 1 ]] && mt=(--mtls)
  if ! "$SECURE_BIN" kafka --dir "$SECURE_DIR" --brokers "127.0.0.1:$KAFKA_PORT" "${mt[@]}"; then
    die "kafka: creating the users and ACLs (deploy/local/secure kafka) failed"
  fi
  log "kafka: SCRAM users producer and trainer and their ACLs in place"
}

# write_nats_conf CONF DATA: (secure mode) the server's configuration, 0600:
# TLS for clients (client certificates with mutual TLS), the monitor plain
# HTTP on loopback for the health check, and the nkey users with their
# permissions from the secure tool.
write_nats_conf() {
  local conf=$1 data=$2 s=$SECURE_DIR
  new_private "$conf"
  {
    printf '# nats-server, secure mode: written by services.sh on every up.\n'
    printf 'listen: "127.0.0.1:%s"\n' "$NATS_PORT"
    printf 'http: "127.0.0.1:%s"\n' "$NATS_MONITOR_PORT"
    printf 'jetstream {\n  store_dir: "%s"\n}\n' "$data"
    printf 'tls {\n  cert_file: "%s"\n  key_file: "%s"\n  ca_file: "%s"\n  timeout: 5\n' \
      "$s/server.pem" "$s/server-key.pem" "$s/ca.pem"
    if [[ $MTLS == 1 ]]; then
      printf '  verify: true\n'
    fi
    printf '}\n'
  } >>"$conf"
  "$SECURE_BIN" nats-authorization --dir "$SECURE_DIR" >>"$conf" ||
    die "nats: the authorization block (deploy/local/secure nats-authorization) failed"
}

# start_minio_secure: HTTPS (--certs-dir: the server certificate and the
# CA), root user ffcadmin whose secret MinIO reads from s3-admin.secret
# (MINIO_ROOT_PASSWORD_FILE: on no command line, not even in the
# environment), no bucket notifications.
start_minio_secure() {
  local bin=$1 certs=$SERVICES_DIR/minio/certs
  mkdir -p "$certs/CAs"
  cp -f "$SECURE_DIR/server.pem" "$certs/public.crt"
  new_private "$certs/private.key"
  cat "$SECURE_DIR/server-key.pem" >>"$certs/private.key"
  cp -f "$SECURE_DIR/ca.pem" "$certs/CAs/ca.pem"
  MINIO_ROOT_USER=$S3_ROOT_USER MINIO_ROOT_PASSWORD_FILE=$SECURE_DIR/s3-admin.secret \
    MINIO_UPDATE=off MINIO_BROWSER=on MINIO_NOTIFY_KAFKA_ENABLE_FFC=off \
    spawn minio "$bin" server "$SERVICES_DIR/minio/data" \
    --address "127.0.0.1:$MINIO_PORT" \
    --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" \
    --certs-dir "$certs"
  wait_healthy minio "$MINIO_START_TIMEOUT"
}

# mc_admin ARGS...: mc as MinIO's root user; the caller's root_pw is only
# in mc's environment (MC_HOST_ffc), the CA in mc's own config folder.
mc_admin() {
  MC_HOST_ffc="https://$S3_ROOT_USER:$root_pw@127.0.0.1:$MINIO_PORT" \
    "$BIN_DIR/mc" --config-dir "$SERVICES_DIR/minio/mc" --no-color "$@"
}

# provision_minio: (secure mode) a user ffc-<role> with the policy
# ffc-<role> for every role that has an S3 policy in internal/security;
# each secret goes to mc on stdin. Idempotent.
provision_minio() {
  local cfg=$SERVICES_DIR/minio/mc root_pw sk role policy out users=()
  [[ -x $BIN_DIR/mc ]] || install_mc
  mkdir -p "$cfg/certs/CAs"
  cp -f "$SECURE_DIR/ca.pem" "$cfg/certs/CAs/ca.pem"
  read_secret root_pw "$SECURE_DIR/s3-admin.secret"
  for role in "${CLIENT_ROLES[@]}"; do
    policy=$cfg/ffc-$role.json
    if ! "$SECURE_BIN" s3-policy "$role" >"$policy" 2>/dev/null; then
      rm -f "$policy" # no object-storage access
      continue
    fi
    read_secret sk "$SECURE_DIR/s3-$role.secret"
    mc_admin admin policy create ffc "ffc-$role" "$policy" >/dev/null ||
      die "minio: mc admin policy create ffc-$role failed"
    # mc reads the secret from stdin when it is not an argument; it
    # echoes it, hence /dev/null.
    printf '%s\n' "$sk" | mc_admin admin user add ffc "ffc-$role" >/dev/null ||
      die "minio: mc admin user add ffc-$role failed"
    # On a restart the policy is attached already, which mc reports as an
    # error.
    out=$(mc_admin admin policy attach ffc "ffc-$role" --user "ffc-$role" 2>&1) ||
      [[ $out == *"already in effect"* ]] ||
      die "minio: mc admin policy attach ffc-$role failed: $out"
    users+=("ffc-$role")
  done
  log "minio: users ${users[*]} with their policies in place"
}

provision_nats() { :; } # its users are in its configuration

start_minio() {
  local bin=$BIN_DIR/minio
  if [[ $SECURE != 1 ]] && ((${#S3_ACCESS_KEY} < 3 || ${#S3_SECRET_KEY} < 8)); then
    die "minio: FFC_S3_ACCESS_KEY needs >= 3 and FFC_S3_SECRET_KEY >= 8 characters"
  fi
  [[ -x $bin ]] || install_minio
  mkdir -p "$SERVICES_DIR/minio/data"
  if [[ $SECURE == 1 ]]; then
    start_minio_secure "$bin"
    return
  fi
  # Bucket notifications to Kafka (target $MINIO_NOTIFY_TARGET): MinIO adds the
  # target even while Kafka is down and keeps the events in queue_dir (outside
  # the data dir, which holds only buckets) until Kafka takes them.
  local notify=off queue=$SERVICES_DIR/minio/notify-queue
  if [[ $MINIO_NOTIFY == 1 ]]; then
    notify=on
    mkdir -p "$queue"
    if ! port_open "$KAFKA_PORT"; then
      warn "minio: kafka is not answering on 127.0.0.1:$KAFKA_PORT: bucket events are queued in $queue until it is"
    fi
  fi
  MINIO_ROOT_USER=$S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3_SECRET_KEY \
    MINIO_UPDATE=off MINIO_BROWSER=on \
    MINIO_NOTIFY_KAFKA_ENABLE_FFC=$notify \
    MINIO_NOTIFY_KAFKA_BROKERS_FFC=127.0.0.1:$KAFKA_PORT \
    MINIO_NOTIFY_KAFKA_TOPIC_FFC=$S3_NOTIFY_TOPIC \
    MINIO_NOTIFY_KAFKA_QUEUE_DIR_FFC=$queue \
    spawn minio "$bin" server "$SERVICES_DIR/minio/data" \
    --address "127.0.0.1:$MINIO_PORT" \
    --console-address "127.0.0.1:$MINIO_CONSOLE_PORT"
  wait_healthy minio "$MINIO_START_TIMEOUT"
}

# env_secure NAMES...: addresses and FFC_SECURE_DIR; then the CA files, or
# with --role the role's settings from the secure tool (file paths only),
# for the services named.
env_secure() {
  local svc p line out prefixes=() mt=()
  for svc in "$@"; do
    case $svc in
    kafka) printf 'export FFC_KAFKA_BROKERS=%q\n' "127.0.0.1:$KAFKA_PORT" && prefixes+=(KAFKA) ;;
    nats) printf 'export FFC_NATS_URL=%q\n' "tls://127.0.0.1:$NATS_PORT" && prefixes+=(NATS) ;;
    minio) printf 'export FFC_S3_ENDPOINT=%q\n' "127.0.0.1:$MINIO_PORT" && prefixes+=(S3) ;;
    esac
  done
  printf 'export FFC_SECURE_DIR=%q\n' "$SECURE_DIR"
  if [[ -z $ROLE ]]; then
    for p in "${prefixes[@]}"; do
      printf 'export FFC_%s_CA_FILE=%q\n' "$p" "$SECURE_DIR/ca.pem"
      [[ $p != S3 ]] || printf 'export FFC_S3_SECURE=true\n'
    done
    return 0
  fi
  [[ -x $SECURE_BIN ]] || build_secure_tool
  [[ $MTLS != 1 ]] || mt=(--mtls)
  out=$("$SECURE_BIN" env --dir "$SECURE_DIR" --role "$ROLE" "${mt[@]}") ||
    die "env: deploy/local/secure env --role $ROLE failed"
  while IFS= read -r line; do
    for p in "${prefixes[@]}"; do
      [[ $line != "export FFC_${p}_"* ]] || printf '%s\n' "$line"
    done
  done <<<"$out"
}
