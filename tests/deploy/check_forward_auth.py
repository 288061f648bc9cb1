"""Parses deploy/forward-auth/traefik.yaml and envoy.yaml (no Traefik or Envoy is packaged
here) and checks the shapes the gateway's forward-auth contracts rely on. Exit 0 when they
hold; an AssertionError names the first that does not.

    python3 tests/deploy/check_forward_auth.py traefik.yaml envoy.yaml
"""
import sys

import yaml

traefik_path, envoy_path = sys.argv[1], sys.argv[2]

with open(traefik_path) as f:
    traefik = yaml.safe_load(f)
http = traefik["http"]
fa = http["middlewares"]["gateway-auth"]["forwardAuth"]
assert fa["address"].endswith("/forward-auth/traefik"), fa
# true would pass a client's own X-Forwarded-Uri on to the gateway.
assert fa["trustForwardHeader"] is False, fa
assert fa["authResponseHeaders"] == ["X-Identity", "X-Roles"], fa
# Client-sent identity headers are removed before the gateway's are set.
assert http["routers"]["app"]["middlewares"] == ["strip-identity", "gateway-auth"]
stripped = http["middlewares"]["strip-identity"]["headers"]["customRequestHeaders"]
assert stripped == {"X-Identity": "", "X_Identity": "", "X-Roles": "", "X_Roles": ""}, stripped

with open(envoy_path) as f:
    envoy = yaml.safe_load(f)
chain = envoy["static_resources"]["listeners"][0]["filter_chains"][0]
hcm = chain["filters"][0]["typed_config"]
options = hcm["common_http_protocol_options"]
assert options["headers_with_underscores_action"] == "DROP_HEADER", options
filters = hcm["http_filters"]
assert filters[0]["name"] == "envoy.filters.http.ext_authz", filters[0]
assert filters[-1]["name"] == "envoy.filters.http.router", filters[-1]
authz = filters[0]["typed_config"]
assert authz["failure_mode_allow"] is False, authz
service = authz["http_service"]
assert service["path_prefix"] == "/forward-auth/envoy", service
upstream = service["authorization_response"]["allowed_upstream_headers"]["patterns"]
assert [p["exact"] for p in upstream] == ["x-identity", "x-roles"], upstream
clusters = {c["name"] for c in envoy["static_resources"]["clusters"]}
assert service["server_uri"]["cluster"] in clusters, clusters
