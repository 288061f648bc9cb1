"""The seed's /protected behind the gateway, in Django (one file: settings, middleware,
views and URLs). A middleware turns the gateway's X-Identity header (and X-Identity-Roles)
into request.identity; views that need a caller say so with @identity_required. No token is
ever parsed.

    PORT=8000 python app.py          # development server
    gunicorn -b 127.0.0.1:8000 app   # production: this module is the WSGI application

Bind it to 127.0.0.1 or a private network: X-Identity is only as trustworthy as the fact
that nothing but the gateway can reach this app.
"""

import os
import sys
from dataclasses import dataclass
from functools import wraps

from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[__name__ + ".GatewayIdentityMiddleware"],
    SECRET_KEY="unused: this app keeps no sessions and signs nothing",
)

from django.core.wsgi import get_wsgi_application  # noqa: E402  (needs settings)
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


@dataclass
class User:
    id: int
    username: str

    def __str__(self):
        return "User(id='%s')" % self.id


users = [User(1, "user1"), User(2, "user2")]
userid_table = {str(u.id): u for u in users}


# The answer to a request that reached the app around the gateway (no X-Identity).
NOT_THROUGH_GATEWAY = "Request did not come through the gateway"


def unauthorized(error, description):
    body = {"description": description, "error": error, "status_code": 401}
    return JsonResponse(body, status=401)


class GatewayIdentityMiddleware:
    """Sets request.identity (a User or None) and request.roles from the gateway's headers.

    Django reads X-Identity from META["HTTP_X_IDENTITY"]; its servers drop headers spelled
    with "_", and the gateway strips every spelling a client sends.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user_id = request.headers.get("X-Identity")
        request.identity_sent = user_id is not None
        request.identity = userid_table.get(user_id) if user_id is not None else None
        roles = request.headers.get("X-Identity-Roles", "")
        request.roles = [r for r in roles.split(",") if r]
        return self.get_response(request)


def identity_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.identity_sent:
            # Reached around the gateway: fail closed.
            return unauthorized("Authorization Required", NOT_THROUGH_GATEWAY)
        if request.identity is None:
            return unauthorized("Invalid JWT", "User does not exist")
        return view(request, *args, **kwargs)

    return wrapper


@identity_required
def protected(request):
    return HttpResponse(str(request.identity), content_type="text/plain")


@identity_required
def whoami(request):
    user = request.identity
    return JsonResponse({"id": user.id, "username": user.username, "roles": request.roles})


urlpatterns = [
    path("protected", protected),
    path("whoami", whoami),
]

application = get_wsgi_application()

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    addr = "%s:%s" % (os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000"))
    execute_from_command_line([sys.argv[0], "runserver", addr, "--noreload"])
