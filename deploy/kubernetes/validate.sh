#!/usr/bin/env bash
# CI check of the Kubernetes manifests, no cluster needed:
# 1. the committed overlay.yaml is exactly what render.sh prints with the defaults;
# 2. the default manifest and renderings with non-default settings validate against the
#    Kubernetes API schemas (kubernetes-validate, strict: unknown fields are errors) of the
#    oldest and the newest Kubernetes version we claim;
# 3. what the schemas cannot say: the DaemonSet's security settings, probes and env carry the
#    rendered settings, and the init container's script, run here against temporary
#    directories, installs the plugin and writes a conflist that parses (overlay-cni, then
#    portmap);
# 4. render.sh refuses values it cannot use.
set -euo pipefail
cd "$(dirname "$0")"

# kubernetes-validate bundles the API schemas; this version knows Kubernetes 1.25 to 1.37.
KV_VERSION=1.37.0
K8S_VERSIONS=(1.30.0 1.37.0)

command -v python3 >/dev/null || {
    echo "validate.sh needs python3 (apt-get install python3 python3-pip)" >&2
    exit 1
}
installed=$(python3 -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null || true)
if [ "$installed" != "$KV_VERSION" ]; then
    echo "installing kubernetes-validate $KV_VERSION (PyPI)"
    pip=(python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION")
    # A distribution's own Python refuses pip installs (PEP 668) unless told.
    "${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

./render.sh >"$work/default.yaml"
if ! diff -u overlay.yaml "$work/default.yaml"; then
    echo "overlay.yaml differs from render.sh's output: run deploy/kubernetes/render.sh > deploy/kubernetes/overlay.yaml" >&2
    exit 1
fi
./render.sh --cluster-cidr 10.200.0.0/16 --subnet-prefix 26 --image registry.example/overlay:1.2 \
    --image-pull-policy Always >"$work/custom.yaml"
./render.sh --namespace overlay-system --cni-bin-dir /usr/libexec/cni --cni-conf-dir /etc/cni/conf.d \
    --use-secret >"$work/namespaced.yaml"

for v in "${K8S_VERSIONS[@]}"; do
    python3 -m kubernetes_validate --strict --quiet -k "$v" \
        overlay.yaml "$work/custom.yaml" "$work/namespaced.yaml"
    echo "schemas of Kubernetes $v: 3 manifests valid (strict)"
done

python3 - "$work" <<'PY'
import json, os, subprocess, sys, yaml

work = sys.argv[1]

def check(path, cidr, prefix, image, policy, ns, cni_bin, cni_conf, secret):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    kinds = {d["kind"]: d for d in docs}
    want = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret", "DaemonSet"}
    if ns != "kube-system":
        want.add("Namespace")
    assert set(kinds) == want, f"{path}: kinds {sorted(kinds)}"
    rules = {(tuple(r["resources"]), tuple(r["verbs"])) for r in kinds["ClusterRole"]["rules"]}
    assert rules == {(("nodes",), ("get", "list", "watch")), (("nodes/status",), ("patch",))}, rules
    assert kinds["ClusterRoleBinding"]["subjects"][0]["namespace"] == ns
    ds = kinds["DaemonSet"]
    assert ds["metadata"]["namespace"] == ns
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}], "tolerates every taint"
    agent = pod["containers"][0]
    assert agent["image"] == image and agent["imagePullPolicy"] == policy
    sc = agent["securityContext"]
    assert sc["privileged"] is False and sorted(sc["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    for probe, path_ in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = agent[probe]["httpGet"]
        assert (get["host"], get["port"], get["path"]) == ("127.0.0.1", 6784, path_), get
    assert agent["resources"]["requests"]["cpu"] and agent["resources"]["requests"]["memory"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["OVERLAY_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["OVERLAY_KUBERNETES"]["value"] == "1"
    assert env["OVERLAY_CLUSTER_CIDR"]["value"] == cidr
    assert env["OVERLAY_SUBNET_PREFIX"]["value"] == str(prefix)
    assert ("OVERLAY_SECRET_FILE" in env) == secret
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dev-net-tun"]["hostPath"] == {"path": "/dev/net/tun", "type": "CharDevice"}
    assert volumes["state"]["hostPath"]["path"] == "/var/lib/overlay"
    assert volumes["cni-bin"]["hostPath"]["path"] == cni_bin
    assert volumes["cni-conf"]["hostPath"]["path"] == cni_conf
    assert volumes["secret"]["secret"]["secretName"] == kinds["Secret"]["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert mounts["dev-net-tun"] == "/dev/net/tun" and mounts["state"] == "/var/lib/overlay"

    # Run the init container's script against temporary directories.
    init = pod["initContainers"][0]
    assert init["image"] == image and init["command"][:2] == ["/bin/sh", "-c"]
    script = init["command"][2]
    root = os.path.join(work, os.path.basename(path) + ".host")
    os.makedirs(root + "/bin")
    os.makedirs(root + "/net.d")
    plugin = os.path.join(work, "overlay-cni")
    with open(plugin, "w") as f:
        f.write("#!/bin/sh\n")
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    script = (script.replace(mounts["cni-bin"], root + "/bin")
                    .replace(mounts["cni-conf"], root + "/net.d")
                    .replace("/usr/local/bin/overlay-cni", plugin))
    subprocess.run(["sh", "-c", script], check=True, stdout=subprocess.DEVNULL)
    assert os.access(root + "/bin/overlay-cni", os.X_OK)
    assert os.listdir(root + "/bin") == ["overlay-cni"], "no temporary file left"
    assert os.listdir(root + "/net.d") == ["10-overlay.conflist"], "no temporary file left"
    conflist = json.load(open(root + "/net.d/10-overlay.conflist"))
    assert conflist["name"] == "overlay" and conflist["cniVersion"]
    plugins = conflist["plugins"]
    assert [p["type"] for p in plugins] == ["overlay-cni", "portmap"], plugins
    assert plugins[1]["capabilities"] == {"portMappings": True}

check(os.path.join(os.getcwd(), "overlay.yaml"), "10.32.0.0/12", 24, "overlay:latest",
      "IfNotPresent", "kube-system", "/opt/cni/bin", "/etc/cni/net.d", False)
check(os.path.join(work, "custom.yaml"), "10.200.0.0/16", 26, "registry.example/overlay:1.2",
      "Always", "kube-system", "/opt/cni/bin", "/etc/cni/net.d", False)
check(os.path.join(work, "namespaced.yaml"), "10.32.0.0/12", 24, "overlay:latest",
      "IfNotPresent", "overlay-system", "/usr/libexec/cni", "/etc/cni/conf.d", True)
print("rendered settings, security context, probes, env and the init container's conflist: ok")
PY

fails=0
for bad in "--cluster-cidr 10.0.0.0/33" "--cluster-cidr 10.0.0.0" "--subnet-prefix 8" \
    "--subnet-prefix 31" "--image bad|image" "--image-pull-policy Sometimes" \
    "--namespace Bad_NS" "--cni-bin-dir relative/dir" "--no-such-option" "--image"; do
    # shellcheck disable=SC2086 # split on purpose
    if ./render.sh $bad >/dev/null 2>&1; then
        echo "render.sh accepted $bad" >&2
        fails=$((fails + 1))
    fi
done
[ "$fails" -eq 0 ] || exit 1
echo "render.sh refuses 10 unusable values"
echo "kubernetes manifests: ok"
