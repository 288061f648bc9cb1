"""Interop with PyJWT, a real third-party JOSE library.

    pyjwt_interop.py decode TOKEN   verify a gateway-issued token; print its header and claims
    pyjwt_interop.py sign IDENTITY  print an HS256 token signed by PyJWT for IDENTITY
    pyjwt_interop.py jwks URL TOKEN fetch our JWKS with PyJWKClient, verify TOKEN with the key
                                    its kid names; print the key's kid/alg and the claims

The HMAC secret comes from the INTEROP_SECRET environment variable (never argv).
"""

import json
import os
import sys
import time

import jwt


def main() -> int:
    secret = os.environ["INTEROP_SECRET"]
    if sys.argv[1] == "decode":
        token = sys.argv[2]
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["exp", "iat", "nbf"]},
            leeway=10,
        )
        header = jwt.get_unverified_header(token)
        print(json.dumps({"header": header, "claims": claims}))
        return 0
    if sys.argv[1] == "sign":
        now = int(time.time())
        identity = json.loads(sys.argv[2])
        token = jwt.encode(
            {"exp": now + 300, "iat": now, "nbf": now, "identity": identity},
            secret,
            algorithm="HS256",
        )
        print(token)
        return 0
    if sys.argv[1] == "jwks":
        url, token = sys.argv[2], sys.argv[3]
        client = jwt.PyJWKClient(url, cache_keys=False)
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key,
            algorithms=[key.algorithm_name],
            options={"require": ["exp", "iat", "nbf"]},
            leeway=10,
        )
        print(json.dumps({"kid": key.key_id, "alg": key.algorithm_name, "claims": claims}))
        return 0
    print("unknown command", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
