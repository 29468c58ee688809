#!/bin/sh
# Prints the Kubernetes manifest of overlay (deploy/kubernetes/overlay.yaml.in) with the given
# settings. Without options it prints deploy/kubernetes/overlay.yaml, the committed default.
#
#   deploy/kubernetes/render.sh --cluster-cidr 10.200.0.0/16 --image myreg/overlay:1.2 > overlay.yaml
#   kubectl apply -f overlay.yaml
#
# Plain POSIX sh and sed; every value is checked before it goes into the YAML.
set -eu

here=$(dirname "$0")
template="$here/overlay.yaml.in"

cluster_cidr=10.32.0.0/12
subnet_prefix=24
image=overlay:latest
pull_policy=IfNotPresent
namespace=kube-system
cni_bin_dir=/opt/cni/bin
cni_conf_dir=/etc/cni/net.d
use_secret=no

usage() {
    cat <<EOF
usage: $0 [options] > overlay.yaml

  --cluster-cidr CIDR        the overlay range; must contain every Node's spec.podCIDR when
                             the cluster assigns them [$cluster_cidr]
  --subnet-prefix N          size of each node's block; must equal the size of the
                             podCIDRs when the cluster assigns them [$subnet_prefix]
  --image IMAGE              the overlay image (agent, CNI plugin, busybox) [$image]
  --image-pull-policy P      Always, IfNotPresent or Never [$pull_policy]
  --namespace NS             namespace of the DaemonSet, ServiceAccount and Secret; created
                             unless kube-system [$namespace]
  --cni-bin-dir DIR          the host's CNI plugin directory [$cni_bin_dir]
  --cni-conf-dir DIR         the host's CNI configuration directory [$cni_conf_dir]
  --use-secret               pass the Secret to the agent (OVERLAY_SECRET_FILE): only agents
                             holding it can join (see docs/operations.md, Cluster secret)
  -h, --help                 this text
EOF
}

die() {
    echo "render.sh: $*" >&2
    exit 2
}

# need_value OPTION "$@": fails unless OPTION has a value after it.
need_value() {
    [ $# -ge 2 ] || die "$1 needs a value"
}

args=""
while [ $# -gt 0 ]; do
    case "$1" in
    --cluster-cidr) need_value "$@"; cluster_cidr=$2; args="$args $1 $2"; shift 2 ;;
    --subnet-prefix) need_value "$@"; subnet_prefix=$2; args="$args $1 $2"; shift 2 ;;
    --image) need_value "$@"; image=$2; args="$args $1 $2"; shift 2 ;;
    --image-pull-policy) need_value "$@"; pull_policy=$2; args="$args $1 $2"; shift 2 ;;
    --namespace) need_value "$@"; namespace=$2; args="$args $1 $2"; shift 2 ;;
    --cni-bin-dir) need_value "$@"; cni_bin_dir=$2; args="$args $1 $2"; shift 2 ;;
    --cni-conf-dir) need_value "$@"; cni_conf_dir=$2; args="$args $1 $2"; shift 2 ;;
    --use-secret) use_secret=yes; args="$args $1"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
    esac
done

# --- checks: one line naming the option when a value is not usable ---
octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
echo "$cluster_cidr" | grep -Eq "^$octet(\.$octet){3}/([0-9]|[12][0-9]|3[0-2])$" ||
    die "--cluster-cidr $cluster_cidr: expected an IPv4 CIDR, e.g. 10.32.0.0/12"
cluster_len=${cluster_cidr#*/}
echo "$subnet_prefix" | grep -Eq '^[0-9]{1,2}$' ||
    die "--subnet-prefix $subnet_prefix: expected a number"
[ "$subnet_prefix" -ge "$cluster_len" ] && [ "$subnet_prefix" -le 30 ] ||
    die "--subnet-prefix $subnet_prefix: must be from $cluster_len (the prefix of $cluster_cidr) to 30"
echo "$image" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._/:@-]*$' ||
    die "--image $image: expected an image reference such as myreg/overlay:1.2"
case "$pull_policy" in
Always | IfNotPresent | Never) ;;
*) die "--image-pull-policy $pull_policy: expected Always, IfNotPresent or Never" ;;
esac
echo "$namespace" | grep -Eq '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' ||
    die "--namespace $namespace: expected a DNS label (lower-case letters, digits, '-')"
for dir in "$cni_bin_dir" "$cni_conf_dir"; do
    echo "$dir" | grep -Eq '^/[A-Za-z0-9._/-]*$' ||
        die "CNI directory $dir: expected an absolute path of letters, digits, '.', '_', '-', '/'"
done

if [ -n "$args" ]; then
    generated="Rendered by deploy/kubernetes/render.sh$args"
else
    generated="Rendered by deploy/kubernetes/render.sh with the default settings (edit overlay.yaml.in, not this file)."
fi
if [ "$namespace" = kube-system ]; then ns_lines='/^#%namespace%/d'; else ns_lines='s/^#%namespace%//'; fi
if [ "$use_secret" = yes ]; then secret_lines='s/^#%secret%//'; else secret_lines='/^#%secret%/d'; fi

# No value can hold '|', '&' or '\' (checked above), so they are safe in the replacements.
sed -e "$ns_lines" -e "$secret_lines" \
    -e "s|@GENERATED@|$generated|g" \
    -e "s|@CLUSTER_CIDR@|$cluster_cidr|g" \
    -e "s|@SUBNET_PREFIX@|$subnet_prefix|g" \
    -e "s|@IMAGE@|$image|g" \
    -e "s|@PULL_POLICY@|$pull_policy|g" \
    -e "s|@NAMESPACE@|$namespace|g" \
    -e "s|@CNI_BIN_DIR@|$cni_bin_dir|g" \
    -e "s|@CNI_CONF_DIR@|$cni_conf_dir|g" \
    "$template"
