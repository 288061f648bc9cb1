#!/usr/bin/env python3
"""Sign N distinct valid RS256 and ES256 tokens for the *-distinct benchmark runs.

Usage: gen_distinct.py RUN_DIR N
Reads RUN_DIR/keys/{rs256,es256}.key.pem (written by gen_tokens.py) and writes
RUN_DIR/tokens/{rs256,es256}.distinct.txt, one token per line. The claims are those of the
"valid" tokens plus a distinct "jti". Signing uses the `cryptography` package (PyPI /
python3-cryptography).
"""
import base64
import json
import os
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(obj) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def main() -> int:
    run, n = sys.argv[1], int(sys.argv[2])
    now = int(time.time())
    for alg in ("rs256", "es256"):
        with open(os.path.join(run, "keys", alg + ".key.pem"), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        if alg == "rs256":
            sign = lambda d: key.sign(d, padding.PKCS1v15(), hashes.SHA256())
        else:
            def sign(d):
                r, s = decode_dss_signature(key.sign(d, ec.ECDSA(hashes.SHA256())))
                return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        header = seg({"alg": alg.upper(), "typ": "JWT"})
        out = []
        for i in range(n):
            claims = {"sub": "user-42", "identity": "user-42", "iss": "bench", "aud": "authgw",
                      "iat": now, "exp": now + 7 * 24 * 3600, "jti": f"bench-{i:08d}"}
            signing_input = header + "." + seg(claims)
            out.append(signing_input + "." + b64u(sign(signing_input.encode())))
        with open(os.path.join(run, "tokens", alg + ".distinct.txt"), "w") as f:
            f.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
