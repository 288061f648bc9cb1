"""Interop with PyJWT, a real third-party JOSE library.

    pyjwt_interop.py decode TOKEN   verify a gateway-issued token; print its header and claims
    pyjwt_interop.py sign IDENTITY  print an HS256 token signed by PyJWT for IDENTITY

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
    print("unknown command", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
