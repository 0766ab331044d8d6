"""Everything Tollgate ships to Kubernetes, against the real Kubernetes schemas.

- Each kustomize overlay (and the base) is built with `kubectl kustomize`; every built-in
  object and every CRD is validated with `kubernetes-validate` (the API server's OpenAPI
  schemas, strict: unknown fields fail) for Kubernetes 1.31 and the newest release the
  package knows.
- Tollgate's own custom resources (the default DataPlane, the examples) are validated
  against the openAPIV3Schema of our generated CRDs with `jsonschema`. (Their CEL rules are
  evaluated in Rust: crds/tests/cel_rules.rs and crds/tests/examples.rs.)
- The operator's golden files (operator/tests/snapshots) hold the objects the operator
  creates: they are validated the same way.
- Every pod template shipped or generated meets the restricted Pod Security Standard.

No cluster is needed; `kubectl` is only used for its built-in kustomize.
"""

import copy
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KUSTOMIZATIONS = ["base", "overlays/pilot", "overlays/production"]
# The oldest Kubernetes we support and the newest the schema package knows.
VERSIONS = sorted({"1.31", ".".join(kubernetes_validate.latest_version().split(".")[:2])})
GROUP = "tollgate.dev"


def load_all(text):
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize(path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed for `kubectl kustomize` (apt-get install kubectl)")
    out = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return load_all(out.stdout)


@pytest.fixture(scope="module")
def built():
    return {k: kustomize(k) for k in KUSTOMIZATIONS}


def crd_documents():
    return load_all((ROOT / "crds" / "yaml" / "crds.yaml").read_text())


def to_json_schema(node, root=False):
    """An OpenAPI v3 structural schema as JSON Schema: `nullable` becomes a null type, and
    objects with declared properties refuse other fields (kubectl applies with strict field
    validation, so a typo in a resource is an error, not a silently dropped field)."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out and not root:
        out["additionalProperties"] = False
    if "enum" in out and node.get("nullable"):
        out["enum"] = list(out["enum"]) + [None]
    return out


@pytest.fixture(scope="module")
def cr_schemas():
    schemas = {}
    for crd in crd_documents():
        version = crd["spec"]["versions"][0]
        api_version = f"{crd['spec']['group']}/{version['name']}"
        schema = to_json_schema(version["schema"]["openAPIV3Schema"], root=True)
        schemas[(api_version, crd["spec"]["names"]["kind"])] = schema
    return schemas


def validate_custom_resource(obj, cr_schemas):
    key = (obj["apiVersion"], obj["kind"])
    assert key in cr_schemas, f"no CRD for {key}"
    jsonschema.validate(obj, cr_schemas[key], cls=jsonschema.Draft7Validator)


def validate_object(obj, version, cr_schemas):
    if obj["apiVersion"].split("/")[0] == GROUP:
        validate_custom_resource(obj, cr_schemas)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


def name_of(obj):
    return f"{obj['kind']}/{obj['metadata'].get('name')}"


# ---------------------------------------------------------------------------------------
# Overlays
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_overlay_builds_the_whole_installation(built, kustomization):
    kinds = {o["kind"] for o in built[kustomization]}
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "DataPlane",
    ]:
        assert kind in kinds, f"{kustomization} lacks a {kind}"
    crds = sorted(o["spec"]["names"]["kind"] for o in built[kustomization] if o["kind"] == "CustomResourceDefinition")
    assert crds == sorted(["Agent", "Budget", "DataPlane", "IPToken", "Sandbox", "SafetyPolicy"])
    for o in built[kustomization]:
        if o["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"].get("namespace") == "tollgate-system", name_of(o)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_built_object_is_valid(built, cr_schemas, kustomization, version):
    for obj in built[kustomization]:
        try:
            validate_object(obj, version, cr_schemas)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as e:
            pytest.fail(f"{kustomization}: {name_of(obj)} is invalid for Kubernetes {version}: {e}")


def test_production_shares_state_and_pilot_does_not(built):
    def data_plane(k):
        (dp,) = [o for o in built[k] if o["kind"] == "DataPlane"]
        return dp["spec"]

    pilot, production = data_plane("overlays/pilot"), data_plane("overlays/production")
    assert pilot["replicas"]["max"] == 1
    assert (pilot["cache"]["type"], pilot["database"]["type"]) == ("memory", "sqlite")
    assert production["replicas"]["max"] > 1
    assert (production["cache"]["type"], production["database"]["type"]) == ("redis", "postgres")
    kinds = {o["kind"] for o in built["overlays/production"]}
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    (operator,) = [o for o in built["overlays/production"] if o["kind"] == "Deployment"]
    assert "replicas" not in operator["spec"], "the HPA owns the operator's replica count"
    env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TOLLGATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "tollgate-postgres", "key": "url"}


def test_the_crd_copy_in_the_base_is_the_generated_one():
    # kustomize reads only below a kustomization; the Rust staleness test covers both files.
    assert (MANIFESTS / "base" / "crds.yaml").read_text() == (ROOT / "crds" / "yaml" / "crds.yaml").read_text()


@pytest.mark.parametrize("version", VERSIONS)
def test_every_crd_is_valid(version):
    docs = crd_documents()
    assert len(docs) == 6
    for crd in docs:
        kubernetes_validate.validate(crd, version, strict=True)


def test_rbac_grants_no_wildcards_or_escalation(built):
    for obj in built["overlays/production"]:
        if obj["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in obj["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{name_of(obj)}: wildcard {field}"
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), name_of(obj)
            if "secrets" in rule.get("resources", []):
                # Reading IP tokens' Secrets is the job; writing is for the rendered ones.
                assert "update" not in rule["verbs"] and "deletecollection" not in rule["verbs"]


# ---------------------------------------------------------------------------------------
# Examples and the operator's golden files
# ---------------------------------------------------------------------------------------


def example_documents():
    docs = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs.extend((path.name, d) for d in load_all(path.read_text()))
    return docs


@pytest.mark.parametrize("version", VERSIONS)
def test_examples_are_valid(cr_schemas, version):
    docs = example_documents()
    kinds = {d["kind"] for _, d in docs}
    assert {"IPToken", "Budget", "SafetyPolicy", "Agent", "Sandbox", "DataPlane"} <= kinds
    for source, obj in docs:
        try:
            validate_object(obj, version, cr_schemas)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as e:
            pytest.fail(f"examples/{source}: {name_of(obj)}: {e}")


def golden_objects():
    snapshots = sorted((ROOT / "operator" / "tests" / "snapshots").glob("*.snap"))
    assert snapshots, "no golden files"
    objects = []
    for snap in snapshots:
        # insta's format: a YAML header document, then the value.
        header, body = snap.read_text().split("\n---\n", 1)
        assert header.startswith("---"), snap
        value = yaml.safe_load(body)
        assert isinstance(value, list), snap
        objects.extend((snap.name, o) for o in value)
    return objects


@pytest.mark.parametrize("version", VERSIONS)
def test_operator_golden_objects_are_valid(version):
    objects = golden_objects()
    kinds = {o["kind"] for _, o in objects}
    for kind in ["Deployment", "Pod", "NetworkPolicy", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "ConfigMap"]:
        assert kind in kinds, kind
    for source, obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{source}: {name_of(obj)} is invalid for Kubernetes {version}: {e}")


# ---------------------------------------------------------------------------------------
# Restricted Pod Security Standard
# ---------------------------------------------------------------------------------------

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def pod_specs(obj):
    kind = obj["kind"]
    if kind == "Pod":
        yield obj["spec"]
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield obj["spec"]["template"]["spec"]
    elif kind == "CronJob":
        yield obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def restricted_violations(pod):
    """The restricted profile's checks (kubernetes.io/docs/concepts/security/pod-security-standards)."""
    v = []
    psc = pod.get("securityContext", {})
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            v.append(host)
    for vol in pod.get("volumes", []):
        types = set(vol) - {"name"}
        if not types <= ALLOWED_VOLUMES:
            v.append(f"volume {vol['name']}: {types}")
    containers = pod.get("containers", []) + pod.get("initContainers", []) + pod.get("ephemeralContainers", [])
    for c in containers:
        sc = c.get("securityContext", {})
        where = c["name"]
        if sc.get("privileged"):
            v.append(f"{where}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            v.append(f"{where}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            v.append(f"{where}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            v.append(f"{where}: capabilities added")
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            v.append(f"{where}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            v.append(f"{where}: runAsUser 0")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            v.append(f"{where}: seccompProfile")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                v.append(f"{where}: hostPort")
    if psc.get("seccompProfile", {}).get("type") == "Unconfined":
        v.append("pod seccompProfile Unconfined")
    return v


def test_every_shipped_pod_meets_the_restricted_standard(built):
    pods = []
    for k in KUSTOMIZATIONS:
        pods.extend((f"{k}: {name_of(o)}", p) for o in built[k] for p in pod_specs(o))
    pods.extend((f"{s}: {name_of(o)}", p) for s, o in golden_objects() for p in pod_specs(o))
    assert len(pods) >= 8, [w for w, _ in pods]
    for where, pod in pods:
        assert restricted_violations(pod) == [], where


def test_the_namespace_enforces_restricted(built):
    (ns,) = [o for o in built["base"] if o["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_checks_can_fail(cr_schemas):
    """Negative controls: each validator used above rejects a broken object."""
    deployment = next(o for o in kustomize("overlays/pilot") if o["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy2"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)
    data_plane = {
        "apiVersion": "tollgate.dev/v1alpha1",
        "kind": "DataPlane",
        "metadata": {"name": "x"},
        "spec": {"cache": {"type": "memcached"}},
    }
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(data_plane, cr_schemas)
    data_plane["spec"] = {"cahce": {"type": "memory"}}
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(data_plane, cr_schemas)
    pod = copy.deepcopy(deployment["spec"]["template"]["spec"])
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    pod["hostNetwork"] = True
    assert len(restricted_violations(pod)) == 2


# ---------------------------------------------------------------------------------------
# The image the manifests run
# ---------------------------------------------------------------------------------------


def workspace_version():
    return re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)


def test_manifests_run_the_image_the_dockerfile_builds(built):
    expected = f"ghcr.io/tollgate-dev/tollgate:{workspace_version()}"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "gcr.io/distroless/cc-debian12:nonroot" in dockerfile
    assert "USER 65532:65532" in dockerfile
    for k in KUSTOMIZATIONS:
        for o in built[k]:
            for pod in pod_specs(o):
                for c in pod["containers"]:
                    assert c["image"] == expected, f"{k}: {name_of(o)}"
                    assert c["command"][0].startswith("tollgate"), f"{k}: {name_of(o)}"
                    assert f"-p {c['command'][0]}" in dockerfile, c["command"][0]


def binaries():
    """Binary names the workspace builds: [[bin]] sections, and packages with src/main.rs."""
    names = set()
    for manifest in ROOT.glob("*/Cargo.toml"):
        text = manifest.read_text()
        names.update(re.findall(r'\[\[bin\]\]\s*\nname = "([^"]+)"', text))
        package = re.search(r'^\[package\]\s*\nname = "([^"]+)"', text, re.M)
        if package and (manifest.parent / "src" / "main.rs").exists():
            names.add(package.group(1))
    return names


def test_every_command_the_manifests_run_is_built():
    commands = {"tollgate-dataplane"}  # the operator's golden Deployments
    for k in KUSTOMIZATIONS:
        for o in kustomize(k):
            for pod in pod_specs(o):
                commands.update(c["command"][0] for c in pod["containers"])
    assert commands <= binaries(), commands - binaries()
