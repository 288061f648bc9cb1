"""Offline checks of deploy/: Kubernetes manifests and the compose file.

Run by tests/it/deploy.rs. Needs PyYAML and kubernetes-validate (tests/requirements.txt);
kubernetes-validate ships the Kubernetes JSON schemas, so nothing is fetched.

    python3 check_manifests.py kubernetes DEPLOY_DIR
    python3 check_manifests.py compose DEPLOY_DIR

Prints one "ok: ..." line per check and exits 0, or prints every failure and exits 1.
"""

import copy
import os
import re
import sys
import tomllib

import kubernetes_validate
import yaml

# The Kubernetes version the manifests target (kubernetes-validate ships its schema).
KUBERNETES_VERSION = "1.30.0"
CORE = ["configmap.yaml", "secret.yaml", "deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"]

failures = []


def ok(message):
    print(f"ok: {message}")


def check(condition, message):
    if condition:
        ok(message)
    else:
        failures.append(message)
        print(f"FAILED: {message}")


def duration_seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unsupported duration {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": n * 60, "h": n * 3600}[unit]


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def port_of(container, port):
    """A probe/targetPort (number or name) -> container port number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def kubernetes(deploy):
    kdir = os.path.join(deploy, "kubernetes")
    docs = {}
    for name in CORE:
        docs[name] = load_all(os.path.join(kdir, name))
        for doc in docs[name]:
            what = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                ok(f"{what} is valid for Kubernetes {KUBERNETES_VERSION} (strict)")
            except kubernetes_validate.ValidationError as e:
                check(False, f"{what} is valid for Kubernetes {KUBERNETES_VERSION}: {e}")

    # The validator must be able to say no: a wrong type and an unknown field are refused.
    deployment = docs["deployment.yaml"][0]
    for label, mutate in [
        ("replicas as a string", lambda d: d["spec"].__setitem__("replicas", "3")),
        ("a misspelled field", lambda d: d["spec"]["template"]["spec"].__setitem__("contianers", [])),
    ]:
        bad = copy.deepcopy(deployment)
        mutate(bad)
        try:
            kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
            check(False, f"the validator refuses a Deployment with {label}")
        except kubernetes_validate.ValidationError:
            ok(f"the validator refuses a Deployment with {label}")

    kustomization = load_all(os.path.join(kdir, "kustomization.yaml"))[0]
    check(sorted(kustomization["resources"]) == sorted(set(CORE) - {"secret.yaml"}),
          "kustomization.yaml lists the core manifests but the placeholder Secret (and not the optional ServiceMonitor)")

    # The ConfigMap carries gateway.toml verbatim.
    configmap = docs["configmap.yaml"][0]
    with open(os.path.join(kdir, "gateway.toml"), encoding="utf-8") as f:
        toml_text = f.read()
    check(configmap["data"].get("gateway.toml") == toml_text,
          "configmap.yaml data.gateway.toml is identical to kubernetes/gateway.toml")
    config = tomllib.loads(toml_text)
    listen_host, listen_port = config["server"]["listen"].rsplit(":", 1)
    admin_host, admin_port = config["admin"]["listen"].rsplit(":", 1)
    check(listen_host == "0.0.0.0" and admin_host == "0.0.0.0",
          "inside the pod the gateway and its admin listener bind 0.0.0.0")
    grace = duration_seconds(config["server"]["shutdown_grace"])

    # Deployment invariants.
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    check(spec["replicas"] == 3, "the Deployment runs 3 replicas")
    check(spec["selector"]["matchLabels"].items() <= labels.items(),
          "the Deployment selector matches its pod labels")
    check(spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0,
          "rolling updates never take a serving replica away before its replacement is ready")
    containers = pod["containers"]
    check(len(containers) == 1, "one container per pod")
    c = containers[0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("http") == int(listen_port), "container port http matches [server] listen")
    check(ports.get("admin") == int(admin_port), "container port admin matches [admin] listen")
    for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path and port_of(c, get.get("port")) == int(admin_port),
              f"{probe} is GET {path} on the admin port")
    if "startupProbe" in c:
        get = c["startupProbe"].get("httpGet", {})
        check(port_of(c, get.get("port")) == int(admin_port), "startupProbe is on the admin port")
    command = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    check(len(command) == 2 and command[0].endswith("sleep") and command[1].isdigit(),
          "preStop sleeps so endpoints are removed before SIGTERM")
    pre_stop = int(command[1]) if len(command) == 2 and command[1].isdigit() else 0
    tgps = pod["terminationGracePeriodSeconds"]
    check(tgps > pre_stop + grace,
          f"terminationGracePeriodSeconds ({tgps}) > preStop ({pre_stop}) + shutdown_grace ({grace:g})")
    for kind in ("requests", "limits"):
        check({"cpu", "memory"} <= set(c.get("resources", {}).get(kind, {})),
              f"the container sets cpu and memory {kind}")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and csc.get("runAsNonRoot") is True, "runAsNonRoot")
    check(psc.get("runAsUser", 0) != 0, "the pod runs as a non-zero uid")
    check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
    check(csc.get("privileged", False) is False, "not privileged")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"] and not csc["capabilities"].get("add"),
          "every capability dropped, none added")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")

    # Mounts: config and secret read-only, where gateway.toml and the args expect them.
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    check(all(m.get("readOnly") is True for m in mounts.values()), "every volume is mounted read-only")
    args = c["args"]
    config_path = args[args.index("--config") + 1]
    check(volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]
          and config_path == os.path.join(mounts["config"]["mountPath"], "gateway.toml"),
          "--config points at gateway.toml in the mounted ConfigMap")
    secret = docs["secret.yaml"][0]
    secret_file = config["tokens"]["secret_file"]
    check(volumes["secret"]["secret"]["secretName"] == secret["metadata"]["name"]
          and os.path.dirname(secret_file) == mounts["secret"]["mountPath"]
          and os.path.basename(secret_file) in secret.get("stringData", {}),
          "[tokens] secret_file is a key of the mounted Secret")
    store = config.get("store", {})
    check(store.get("backend") == "redis"
          and all(os.path.dirname(store[k]) == mounts["secret"]["mountPath"]
                  and os.path.basename(store[k]) in secret.get("stringData", {})
                  for k in ("url_file", "password_file")),
          "[store] is Redis, its URL and password keys of the mounted Secret")

    # Services, HPA, PDB select and target the Deployment's pods.
    services = {s["metadata"]["name"]: s for s in docs["service.yaml"]}
    for name, s in services.items():
        check(s["spec"]["selector"].items() <= labels.items(), f"Service {name} selects the gateway pods")
        check(all(p["targetPort"] in ports for p in s["spec"]["ports"]),
              f"Service {name} targets named container ports")
    public = services["gateway"]
    check([p["targetPort"] for p in public["spec"]["ports"]] == ["http"],
          "the public Service exposes the http port only, never admin")
    hpa = docs["hpa.yaml"][0]
    check(hpa["apiVersion"] == "autoscaling/v2", "the HPA is autoscaling/v2")
    check(hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
          and hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment", "the HPA scales the Deployment")
    check(hpa["spec"]["minReplicas"] >= 3 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"],
          "the HPA keeps at least 3 replicas")
    pdb = docs["pdb.yaml"][0]
    check(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the PDB selects the gateway pods")
    check(0 < pdb["spec"]["minAvailable"] < spec["replicas"], "the PDB allows one voluntary disruption at a time")

    # The optional ServiceMonitor (its CRD schema is not in Kubernetes): structure only.
    sm = load_all(os.path.join(kdir, "servicemonitor.yaml"))[0]
    check(sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor",
          "servicemonitor.yaml is a monitoring.coreos.com/v1 ServiceMonitor")
    admin_services = [s for s in services.values()
                      if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    check([s["metadata"]["name"] for s in admin_services] == ["gateway-admin"],
          "the ServiceMonitor selects the admin Service only")
    check([(e["port"], e["path"]) for e in sm["spec"]["endpoints"]] == [("admin", "/metrics")],
          "the ServiceMonitor scrapes /metrics on the admin port")


def compose(deploy):
    doc = load_all(os.path.join(deploy, "compose.yaml"))[0]
    services = doc["services"]
    gateways = sorted(n for n in services if re.fullmatch(r"gateway\d+", n))
    check(len(gateways) == 3, "compose.yaml runs three gateway instances")
    for name in gateways:
        s = services[name]
        volumes = s.get("volumes", [])
        check(any(v.endswith(":/etc/gateway/gateway.toml:ro") for v in volumes if isinstance(v, str)),
              f"{name} mounts gateway.toml read-only")
        check("gateway-hmac" in s.get("secrets", []), f"{name} gets the shared signing secret")
        check(s.get("read_only") is True and s.get("cap_drop") == ["ALL"]
              and "no-new-privileges:true" in s.get("security_opt", []),
              f"{name} runs with a read-only root, no capabilities, no new privileges")
    check(len({services[n].get("image") for n in gateways}) == 1, "the three instances run one image")
    check(doc["secrets"]["gateway-hmac"].get("environment") == "GATEWAY_SECRET",
          "the signing secret comes from the GATEWAY_SECRET environment variable")
    check("redis" in services and all("redis" in services[g].get("depends_on", []) for g in gateways),
          "compose.yaml runs one Redis the three gateways depend on")
    check(all("redis-password" in services[g].get("secrets", []) for g in gateways)
          and "redis-password" in services["redis"].get("secrets", []),
          "the gateways and Redis share the Redis password secret")
    lb = services["lb"]
    check(set(lb.get("depends_on", {})) >= set(gateways), "the load balancer starts after the gateways")
    with open(os.path.join(deploy, "compose", "haproxy.cfg"), encoding="utf-8") as f:
        haproxy = f.read()
    for name in gateways:
        check(re.search(rf"^\s*server {name} {name}:8080 check port 9901\b", haproxy, re.M) is not None,
              f"HAProxy balances to {name} and checks its admin port")
    check(re.search(r"^\s*option httpchk\n\s*http-check send meth GET uri /readyz\b", haproxy, re.M) is not None
          and "http-check expect status 200" in haproxy, "HAProxy health-checks GET /readyz, 200 expected")
    with open(os.path.join(deploy, "compose", "gateway.toml"), encoding="utf-8") as f:
        gw = tomllib.loads(f.read())
    check(gw["tokens"].get("secret_file") == "/run/secrets/gateway-hmac",
          "the compose gateway.toml reads the compose secret")
    check(gw.get("store", {}).get("backend") == "redis"
          and gw["store"].get("url", "").startswith("redis://redis:")
          and gw["store"].get("password_file") == "/run/secrets/redis-password",
          "the compose gateways share the compose Redis")
    check("backend" in services and gw["upstreams"]["backend"]["servers"] == ["http://backend:8080"],
          "the gateways forward to the backend service")
    with open(os.path.join(deploy, "compose", "backend.conf"), encoding="utf-8") as f:
        check("$http_x_identity" in f.read(), "the backend echoes X-Identity")


def main():
    what, deploy = sys.argv[1], sys.argv[2]
    {"kubernetes": kubernetes, "compose": compose}[what](deploy)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
