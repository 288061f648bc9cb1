"""The seed's /protected behind the gateway, in FastAPI: a dependency turns the gateway's
X-Identity header (and X-Identity-Roles) into the current user. No token is ever parsed.

    PORT=8000 python app.py          # or: uvicorn app:app --host 127.0.0.1 --port 8000

Bind it to 127.0.0.1 or a private network: X-Identity is only as trustworthy as the fact
that nothing but the gateway can reach this app.
"""

import os
from dataclasses import dataclass, field
from typing import Annotated, Optional

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse


@dataclass
class User:
    id: int
    username: str
    roles: list[str] = field(default_factory=list)

    def __str__(self):
        return "User(id='%s')" % self.id


users = [User(1, "user1"), User(2, "user2")]
userid_table = {str(u.id): u for u in users}

app = FastAPI()


# The answer to a request that reached the app around the gateway (no X-Identity).
NOT_THROUGH_GATEWAY = "Request did not come through the gateway"


class Unauthorized(Exception):
    def __init__(self, error: str, description: str):
        self.error = error
        self.description = description


@app.exception_handler(Unauthorized)
async def unauthorized(_request: Request, exc: Unauthorized):
    body = {"description": exc.description, "error": exc.error, "status_code": 401}
    return JSONResponse(body, status_code=401)


def current_identity(
    x_identity: Annotated[Optional[str], Header()] = None,
    x_identity_roles: Annotated[str, Header()] = "",
) -> User:
    """The caller, as the gateway named it; 401 when the request did not come through it."""
    if x_identity is None:
        raise Unauthorized("Authorization Required", NOT_THROUGH_GATEWAY)
    user = userid_table.get(x_identity)
    if user is None:
        raise Unauthorized("Invalid JWT", "User does not exist")
    roles = [r for r in x_identity_roles.split(",") if r]
    return User(user.id, user.username, roles)


CurrentUser = Annotated[User, Depends(current_identity)]


@app.get("/protected", response_class=PlainTextResponse)
def protected(user: CurrentUser):
    return str(user)


@app.get("/whoami")
def whoami(user: CurrentUser):
    return {"id": user.id, "username": user.username, "roles": user.roles}


if __name__ == "__main__":
    import uvicorn

    host = os.environ.get("HOST", "127.0.0.1")
    uvicorn.run(app, host=host, port=int(os.environ.get("PORT", "8000")))
