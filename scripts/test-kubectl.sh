#!/usr/bin/env bash
# Drives a stock kubectl against a real flotta-server: the server from the cargo
# build on loopback with SQLite in a temporary directory, a kubeconfig written by
# `flotta kubeconfig`, and a kubectl session whose every command's output is checked
# (docs/kubectl.md walks through the same commands); then the kube-rs example
# (examples/kube-rs) lists, labels and watches through the same kubeconfig.
#
# kubectl is not installed by this script (Debian has no package for it): without it
# the suite is reported skipped, and under CI (CI set) it fails.
#
#   scripts/test-kubectl.sh                  # builds flotta-server and flotta first
#   FLOTTA_BIN_DIR=DIR scripts/test-kubectl.sh   # uses the binaries in DIR
#   KUBECTL_KEEP=1 scripts/test-kubectl.sh       # keep the temporary directory
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

KUBECTL="${KUBECTL:-kubectl}"
if ! command -v "$KUBECTL" >/dev/null 2>&1; then
    if [ -n "${CI:-}" ]; then
        echo "kubectl: not found, and CI is set: the kubectl suite must run in CI" >&2
        record_counts 0 1 0
        exit 1
    fi
    echo "kubectl: SKIPPED: kubectl is not installed (put it on PATH or set KUBECTL)"
    record_counts 0 0 1
    echo "kubectl: 0 passed, 0 failed, 1 skipped"
    exit 0
fi

if [ -z "${FLOTTA_BIN_DIR:-}" ]; then
    ensure_rust
    # The test step's selection (all features, tests included): nothing recompiles
    # after scripts/test.sh's build.
    cargo build --workspace --all-features --bins --tests --quiet
    FLOTTA_BIN_DIR="$TARGET_DIR/debug"
fi
for binary in flotta-server flotta flotta-example-kube-rs; do
    [ -x "$FLOTTA_BIN_DIR/$binary" ] || { echo "kubectl: $FLOTTA_BIN_DIR/$binary not found" >&2; exit 1; }
done
PATH="$FLOTTA_BIN_DIR:$PATH"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flotta-kubectl.XXXXXX")"
SERVER_PID=""
WATCH_PID=""
PASSED=0
FAILED=0
cleanup() {
    local status=$?
    for pid in "$WATCH_PID" "$SERVER_PID"; do
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$status" -ne 0 ] && [ -f "$WORK/server.log" ]; then
        echo "--- server.log (last lines)"
        tail -n 25 "$WORK/server.log"
    fi
    if [ -n "${KUBECTL_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK"

echo "==> flotta-server on loopback, SQLite in $WORK/flotta-data"
flotta-server --data-dir flotta-data --edge-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 \
    >server.log 2>&1 &
SERVER_PID=$!

# wait_line FILE PID REGEX: waits (at most 60 s) until FILE, written by process PID,
# has a line matching REGEX; follows the file rather than polling it.
wait_line() {
    grep -Eq -m 1 -- "$3" < <(timeout 60 tail -n +1 -F --pid="$2" "$1" 2>/dev/null)
}
wait_line server.log "$SERVER_PID" "enrol a device" || { echo "kubectl: the server did not start" >&2; exit 1; }

echo "==> flotta kubeconfig"
flotta --config flotta-data/admin.yaml -n plant-north kubeconfig -o kubeconfig
export KUBECONFIG="$WORK/kubeconfig"
[ "$(stat -c %a kubeconfig)" = 600 ] || { echo "kubectl: kubeconfig is not mode 600" >&2; exit 1; }

# k NAME ARGS...: runs kubectl ARGS, its output in out/NAME (stdout and stderr).
mkdir -p out
k() {
    local name="$1"
    shift
    "$KUBECTL" "$@" >"out/$name" 2>&1
}

# check NAME COMMAND...: one test; passes when COMMAND succeeds, else prints the
# output kept for NAME.
check() {
    local name="$1"
    shift
    if "$@"; then
        PASSED=$((PASSED + 1))
        echo "ok   $name"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL $name"
        [ -f "out/$name" ] && sed 's/^/     | /' "out/$name"
    fi
}

# has NAME REGEX...: kubectl's output for NAME matches every extended REGEX.
has() {
    local name="$1" pattern
    shift
    for pattern in "$@"; do
        grep -Eq -- "$pattern" "out/$name" || { echo "     missing /$pattern/"; return 1; }
    done
}
# lacks NAME REGEX: the output for NAME does not match REGEX.
lacks() { ! grep -Eq -- "$2" "out/$1"; }

# run_and_has NAME KUBECTL-ARGS... -- REGEX...: runs, succeeds, and matches.
run_and_has() {
    local name="$1" args=() patterns=()
    shift
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
    [ "$#" -gt 0 ] && shift
    patterns=("$@")
    k "$name" "${args[@]}" && has "$name" "${patterns[@]}"
}

MANIFESTS="$ROOT/examples/manifests"
DEVICE=6f1c2a9e-4b1d-4e7a-9c3f-2d8e5b7a1c04

echo "==> discovery, OpenAPI"
check version run_and_has version version -- '^Server Version: v1\.32\.0\+flotta-'
check api-resources run_and_has api-resources api-resources -- \
    '^edgedevices +ed +management\.project-flotta\.io/v1alpha1 +true +EdgeDevice' \
    '^edgedevicesignedrequests +edsr ' '^edgeworkloads +ew ' '^namespaces +ns +v1 +false +Namespace' \
    '^configmaps +cm +v1 +true +ConfigMap' \
    '^repositories +repo +management\.project-flotta\.io/v1alpha1 +true +Repository' \
    '^resourcesyncs +management\.project-flotta\.io/v1alpha1 +true +ResourceSync' \
    '^edgeconfigs +management\.project-flotta\.io/v1alpha1 +true +EdgeConfig' \
    '^playbookexecutions +management\.project-flotta\.io/v1alpha1 +true +PlaybookExecution'
check api-resources-category run_and_has api-resources-category api-resources --categories flotta -o name -- \
    '^edgedevicesets\.management\.project-flotta\.io$'
check explain run_and_has explain explain edgeworkload.spec -- \
    '^KIND: +EdgeWorkload' '^GROUP: +management\.project-flotta\.io' '^FIELD: +spec' \
    'deviceSelector' 'rolloutPolicy'

echo "==> apply, again, diff"
check apply run_and_has apply apply -f "$MANIFESTS/edgeworkload.yaml" -f "$MANIFESTS/edgedeviceset.yaml" \
    -f "$MANIFESTS/edgedevice.yaml" -f "$MANIFESTS/edgedevicesignedrequest.yaml" -- \
    '^edgeworkload\.management\.project-flotta\.io/frame-grabber created' \
    '^edgedeviceset\.management\.project-flotta\.io/cameras created' \
    "^edgedevice\.management\.project-flotta\.io/$DEVICE created"
check apply-unchanged run_and_has apply-unchanged apply -f "$MANIFESTS/edgeworkload.yaml" -- \
    '^edgeworkload\.management\.project-flotta\.io/frame-grabber unchanged'
sed 's/frame-grabber:1\.4\.0/frame-grabber:1.5.0/' "$MANIFESTS/edgeworkload.yaml" >workload-1.5.yaml
# kubectl diff exits 1 when there are differences.
diff_shows_change() {
    local status=0
    k diff diff -f workload-1.5.yaml || status=$?
    [ "$status" -eq 1 ] && has diff '^-.*frame-grabber:1\.4\.0' '^\+.*frame-grabber:1\.5\.0'
}
check diff diff_shows_change
check diff-stored-nothing run_and_has diff-stored-nothing get ew frame-grabber \
    -o 'jsonpath={.spec.pod.spec.containers[0].image}' -- '^registry\.example\.com/edge/frame-grabber:1\.4\.0$'

echo "==> GitOps kinds: a sync whose repository cannot be reached says so"
# A loopback port nothing listens on: the fetch fails at once, and the columns
# show it.
cat > "$WORK/gitops.yaml" <<'YAML'
apiVersion: management.project-flotta.io/v1alpha1
kind: Repository
metadata: {name: fleet, namespace: plant-north}
spec: {type: git, url: "https://127.0.0.1:9/fleet.git"}
---
apiVersion: management.project-flotta.io/v1alpha1
kind: ResourceSync
metadata: {name: fleet, namespace: plant-north}
spec: {repository: fleet, targetRevision: main, path: /fleet, pollInterval: 1h}
YAML
check apply-gitops run_and_has apply-gitops apply -f "$WORK/gitops.yaml" -- \
    '^repository\.management\.project-flotta\.io/fleet created' \
    '^resourcesync\.management\.project-flotta\.io/fleet created'
for _ in $(seq 1 50); do
    k gitops-wait get resourcesync fleet -o 'jsonpath={.status.conditions[?(@.type=="Synced")].status}' \
        && grep -qx False out/gitops-wait && break
    sleep 0.2
done
check get-resourcesyncs run_and_has get-resourcesyncs get resourcesyncs -- \
    '^NAME +REPOSITORY +REVISION +COMMIT +SYNCED +AGE$' '^fleet +fleet +main +<none> +False '
check get-repositories run_and_has get-repositories get repo -- \
    '^NAME +TYPE +URL +ACCESSIBLE +AGE$' '^fleet +git +https://127\.0\.0\.1:9/fleet\.git +False '
check delete-gitops run_and_has delete-gitops delete -f "$WORK/gitops.yaml" -- \
    'resourcesync\.management\.project-flotta\.io "fleet" deleted'

echo "==> Ansible kinds: an EdgeConfig applied and listed, a bad one refused by field"
check apply-edgeconfig run_and_has apply-edgeconfig apply -f "$MANIFESTS/edgeconfig.yaml" -- \
    '^edgeconfig\.management\.project-flotta\.io/motd created'
check get-edgeconfigs run_and_has get-edgeconfigs get edgeconfigs -n default -o wide -- \
    '^NAME +PLAYBOOKS +TIMEOUT +AGE$' '^motd +1 +120s '
sed 's/timeoutSeconds: 120/timeoutSeconds: 0/; s/name: motd/name: motd-bad/' "$MANIFESTS/edgeconfig.yaml" >"$WORK/edgeconfig-bad.yaml"
refused_with_field() {
    local status=0
    k apply-edgeconfig-bad apply -f "$WORK/edgeconfig-bad.yaml" || status=$?
    [ "$status" -ne 0 ] && has apply-edgeconfig-bad 'spec\.edgePlaybook\.playbooks\[0\]\.timeoutSeconds'
}
check apply-edgeconfig-bad refused_with_field
check delete-edgeconfig run_and_has delete-edgeconfig delete -f "$MANIFESTS/edgeconfig.yaml" -- \
    'edgeconfig\.management\.project-flotta\.io "motd" deleted'

echo "==> get"
check get-devices run_and_has get-devices get edgedevices -- \
    '^NAME +PHASE +ONLINE +UPDATED +WORKLOADS +LAST SEEN +AGE$' "^$DEVICE "
check get-sets run_and_has get-sets get eds -- '^NAME +SELECTOR +DEVICES +UPDATED +AGE$' '^cameras '
check get-workloads run_and_has get-workloads get ew -- \
    '^NAME +TYPE +TARGET +RUNNING +AGE$' '^frame-grabber +pod +device-class=camera '
check get-edsr run_and_has get-edsr get edsr -- \
    '^NAME +TARGET NAMESPACE +CONDITION +AGE$' "^$DEVICE +plant-north +Pending "
check get-one run_and_has get-one get edgeworkload frame-grabber -- '^frame-grabber +pod '
check get-all-namespaces run_and_has get-all-namespaces get ew -A -- \
    '^NAMESPACE +NAME +TYPE' '^plant-north +frame-grabber +pod'
check get-label-selector run_and_has get-label-selector get ed -l 'line=assembly-2' -- "^$DEVICE "
check get-label-selector-none run_and_has get-label-selector-none get ed -l 'line=paint' -- \
    '^No resources found in plant-north namespace\.$'
check get-field-selector run_and_has get-field-selector get ew --field-selector metadata.name=frame-grabber -- \
    '^frame-grabber '
field_selector_refused() {
    ! k get-field-selector-bad get ew --field-selector spec.nothing=x &&
        has get-field-selector-bad 'invalid fieldSelector' 'metadata\.name'
}
check get-field-selector-bad field_selector_refused
check get-wide run_and_has get-wide get ew -o wide -- '^NAME +TYPE +TARGET +RUNNING +CURRENT +FAILED +DEPLOYING +AGE +LABELS$' \
    'app=frame-grabber'
check get-yaml run_and_has get-yaml get ew frame-grabber -o yaml -- \
    '^apiVersion: management\.project-flotta\.io/v1alpha1$' '^kind: EdgeWorkload$' '^  resourceVersion: "[0-9]+"$'
check get-json run_and_has get-json get ew frame-grabber -o json -- '"kind": "EdgeWorkload"' '"image": "registry\.example\.com/edge/frame-grabber:1\.4\.0"'
check get-name run_and_has get-name get ew,eds -o name -- \
    '^edgeworkload\.management\.project-flotta\.io/frame-grabber$' '^edgedeviceset\.management\.project-flotta\.io/cameras$'
check get-jsonpath run_and_has get-jsonpath get eds cameras -o 'jsonpath={.spec.heartbeat.periodSeconds}' -- '^60$'
check get-category run_and_has get-category get flotta -- '^edgeworkload\.management\.project-flotta\.io/frame-grabber ' \
    '^edgedeviceset\.management\.project-flotta\.io/cameras '
check get-show-labels run_and_has get-show-labels get ed --show-labels -- 'line=assembly-2'

echo "==> describe"
check describe run_and_has describe describe ew frame-grabber -- \
    '^Name: +frame-grabber$' '^Namespace: +plant-north$' '^API Version: +management\.project-flotta\.io/v1alpha1$' \
    '^Kind: +EdgeWorkload$' 'Device Selector:'

echo "==> label, annotate, patch"
check label run_and_has label label ew frame-grabber tier=video -- \
    '^edgeworkload\.management\.project-flotta\.io/frame-grabber labeled$'
check label-visible run_and_has label-visible get ew -l tier=video -o name -- 'frame-grabber$'
check annotate run_and_has annotate annotate ew frame-grabber owner=camera-team -- 'frame-grabber annotated$'
check annotate-visible run_and_has annotate-visible get ew frame-grabber -o 'jsonpath={.metadata.annotations.owner}' -- '^camera-team$'
check patch-merge run_and_has patch-merge patch eds cameras --type merge -p '{"spec":{"heartbeat":{"periodSeconds":45}}}' -- \
    'cameras patched$'
check patch-merge-visible run_and_has patch-merge-visible get eds cameras -o 'jsonpath={.spec.heartbeat.periodSeconds}' -- '^45$'
check patch-json run_and_has patch-json patch ew frame-grabber --type json \
    -p '[{"op":"replace","path":"/spec/pod/spec/containers/0/image","value":"registry.example.com/edge/frame-grabber:1.4.1"}]' -- \
    'frame-grabber patched$'
check patch-json-visible run_and_has patch-json-visible get ew frame-grabber -o 'jsonpath={.spec.pod.spec.containers[0].image}' -- \
    'frame-grabber:1\.4\.1$'
patch_json_bad() {
    ! k patch-json-bad patch ew frame-grabber --type json -p '[{"op":"test","path":"/spec/type","value":"ansible"}]' &&
        has patch-json-bad 'operation 0 \(test /spec/type\)'
}
check patch-json-bad patch_json_bad
check patch-strategic run_and_has patch-strategic patch ed "$DEVICE" --type strategic -p '{"metadata":{"labels":{"line":"assembly-3"}}}' -- \
    'patched$'
check patch-strategic-visible run_and_has patch-strategic-visible get ed -l line=assembly-3 -o name -- "$DEVICE$"
check patch-dry-run run_and_has patch-dry-run patch eds cameras --type merge --dry-run=server \
    -p '{"spec":{"heartbeat":{"periodSeconds":5}}}' -- 'cameras patched( \(server dry run\))?$'
check patch-dry-run-stored-nothing run_and_has patch-dry-run-stored-nothing get eds cameras -o 'jsonpath={.spec.heartbeat.periodSeconds}' -- '^45$'

echo "==> server-side apply: field managers, conflicts, --force-conflicts"
cat >ssa.yaml <<'EOF'
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: telemetry
  labels:
    app: telemetry
    stage: beta
spec:
  type: pod
  deviceSelector:
    matchLabels:
      device-class: camera
  pod:
    spec:
      containers:
        - name: main
          image: registry.example.com/telemetry:1
EOF
check ssa-create run_and_has ssa-create apply --server-side -f ssa.yaml -- \
    '^edgeworkload\.management\.project-flotta\.io/telemetry serverside-applied$'
check ssa-owner run_and_has ssa-owner get ew telemetry --show-managed-fields -o yaml -- \
    'manager: kubectl$' 'operation: Apply$' 'f:containers: \{\}'
# The same configuration again writes nothing: the resource version stays.
ssa_again_unchanged() {
    k ssa-rv-before get ew telemetry -o 'jsonpath={.metadata.resourceVersion}' &&
        k ssa-again apply --server-side -f ssa.yaml && has ssa-again 'telemetry serverside-applied$' &&
        k ssa-rv-after get ew telemetry -o 'jsonpath={.metadata.resourceVersion}' &&
        cmp -s out/ssa-rv-before out/ssa-rv-after
}
check ssa-again-unchanged ssa_again_unchanged
# Another manager changing the image conflicts with kubectl's ownership, and the
# stored object is untouched.
sed 's/telemetry:1$/telemetry:2/' ssa.yaml >ssa-2.yaml
ssa_conflict() {
    ! k ssa-conflict apply --server-side --field-manager=rollout-bot -f ssa-2.yaml &&
        has ssa-conflict 'Apply failed with 1 conflict' 'conflict with "kubectl"' '\.spec\.pod\.spec\.containers' &&
        k ssa-conflict-stored get ew telemetry -o 'jsonpath={.spec.pod.spec.containers[0].image}' &&
        has ssa-conflict-stored 'telemetry:1$'
}
check ssa-conflict ssa_conflict
check ssa-force run_and_has ssa-force apply --server-side --field-manager=rollout-bot --force-conflicts \
    -f ssa-2.yaml -- 'telemetry serverside-applied$'
check ssa-force-visible run_and_has ssa-force-visible get ew telemetry \
    -o 'jsonpath={.spec.pod.spec.containers[0].image}' -- 'telemetry:2$'
# A label both appliers own stays until the last of them leaves it out; a label
# set by hand (kubectl label: an update by another manager) is never theirs to drop.
ssa_prune_owned_field() {
    k ssa-label label ew telemetry owner=ops &&
        grep -v 'stage: beta' ssa-2.yaml >ssa-3.yaml &&
        k ssa-drop-kubectl apply --server-side -f ssa-3.yaml &&
        k ssa-labels-shared get ew telemetry -o 'jsonpath={.metadata.labels}' &&
        has ssa-labels-shared '"stage":"beta"' &&
        k ssa-drop-bot apply --server-side --field-manager=rollout-bot -f ssa-3.yaml &&
        k ssa-labels get ew telemetry -o 'jsonpath={.metadata.labels}' &&
        has ssa-labels '"owner":"ops"' '"app":"telemetry"' && lacks ssa-labels 'stage'
}
check ssa-prune-owned-field ssa_prune_owned_field
check ssa-dry-run run_and_has ssa-dry-run apply --server-side --dry-run=server --field-manager=rollout-bot \
    --force-conflicts -f ssa.yaml -- 'telemetry serverside-applied \(server dry run\)$'
check ssa-dry-run-stored-nothing run_and_has ssa-dry-run-stored-nothing get ew telemetry \
    -o 'jsonpath={.spec.pod.spec.containers[0].image}' -- 'telemetry:2$'
check ssa-delete run_and_has ssa-delete delete ew telemetry -- '"telemetry" deleted$'

echo "==> edit (KUBE_EDITOR is sed)"
edit_with_sed() {
    KUBE_EDITOR="sed -i -e 's/periodSeconds: 45/periodSeconds: 50/'" k edit edit eds cameras &&
        has edit 'cameras edited$' &&
        k edit-visible get eds cameras -o 'jsonpath={.spec.heartbeat.periodSeconds}' && has edit-visible '^50$'
}
check edit edit_with_sed

echo "==> get -w sees a change"
cat >watched.yaml <<'EOF'
apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: watched
  labels:
    app: watched
spec:
  type: pod
  deviceSelector:
    matchLabels:
      device-class: camera
  pod:
    spec:
      containers:
        - name: main
          image: registry.example.com/watched:1
EOF
watch_sees_change() {
    "$KUBECTL" get ew -w --request-timeout=60s >out/watch 2>&1 &
    WATCH_PID=$!
    # The listing comes first; the change is made once it is printed.
    wait_line out/watch "$WATCH_PID" '^frame-grabber ' || return 1
    k watch-trigger apply -f watched.yaml || return 1
    local seen=0
    wait_line out/watch "$WATCH_PID" '^watched +pod ' && seen=1
    kill -TERM "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
    WATCH_PID=""
    [ "$seen" -eq 1 ] && has watch '^NAME +TYPE +TARGET'
}
check watch watch_sees_change

echo "==> kube-rs: Api<DynamicObject> (examples/kube-rs)"
# The example lists the devices the selector picks, labels the first, and watches
# EdgeWorkloads from resource version "0": frame-grabber and watched come as ADDED,
# and the watch ends on its second event.
kube_rs_example() {
    flotta-example-kube-rs --kubeconfig "$KUBECONFIG" --selector line=assembly-3 \
        --label managed-by=kube-rs --max-events 2 --watch-seconds 30 >out/kube-rs 2>&1
}
check kube-rs kube_rs_example
check kube-rs-list has kube-rs '^EdgeDevices in plant-north \(selector "line=assembly-3"\): 1$' \
    "^device $DEVICE phase=[^ ]+ labels=.*line=assembly-3"
check kube-rs-label has kube-rs "^labelled $DEVICE managed-by=kube-rs: labels=.*managed-by=kube-rs"
check kube-rs-label-visible run_and_has kube-rs-label-visible get ed -l managed-by=kube-rs -o name -- \
    "^edgedevice\.management\.project-flotta\.io/$DEVICE$"
check kube-rs-watch has kube-rs '^ADDED frame-grabber$' '^ADDED watched$' '^watch ended$'

echo "==> namespaces"
check get-namespaces run_and_has get-namespaces get namespaces -- '^NAME +STATUS +AGE$' '^default +Active' '^plant-north +Active '
delete_namespace_refused() {
    ! k delete-namespace delete namespace plant-north && has delete-namespace 'still holds' 'delete them first'
}
check delete-namespace-refused delete_namespace_refused

echo "==> delete"
check delete-label run_and_has delete-label delete ew -l app=frame-grabber -- \
    '^edgeworkload\.management\.project-flotta\.io "frame-grabber" deleted$'
check delete-label-gone run_and_has delete-label-gone get ew -l app=frame-grabber -- '^No resources found'

echo "kubectl: $PASSED passed, $FAILED failed, 0 skipped"
record_counts "$PASSED" "$FAILED" 0
[ "$FAILED" -eq 0 ]
