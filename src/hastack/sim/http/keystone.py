"""Keystone v3, enough for openstacksdk: version discovery, password and token auth, token
validation, and the service catalog pointing at the simulator's other faces."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from hastack.sim.errors import CloudError, NotFound
from hastack.sim.http.base import ApiFace, ApiRequest, Reply, iso

TOKEN_TTL = 3600.0


class Unauthorized(CloudError):
    status = 401


@dataclasses.dataclass
class Token:
    id: str
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: list[str]
    issued: float
    expires: float


@dataclasses.dataclass
class User:
    id: str
    name: str
    password: str
    project: str  # default project name
    roles: list[str]


class TokenStore:
    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}

    def validate(self, token_id: str | None, now: float) -> Token | None:
        if not token_id:
            return None
        token = self.tokens.get(token_id)
        if token is None or token.expires < now:
            return None
        return token


class KeystoneFace(ApiFace):
    prefix = "/identity"
    service_type = "identity"
    requires_token = False

    def routes(self) -> None:
        self.route("/", self.versions)
        self.route("/v3", self.version)
        self.route("/v3/auth/tokens", self.issue, ("POST",))
        self.route("/v3/auth/tokens", self.check, ("GET", "HEAD"))
        self.route("/v3/auth/catalog", self.get_catalog)
        self.route("/v3/auth/projects", self.projects)
        self.route("/v3/projects", self.projects)

    def error_body(self, exc: CloudError) -> Any:
        title = {401: "Unauthorized", 404: "Not Found", 400: "Bad Request"}.get(exc.status, "Error")
        return {"error": {"code": exc.status, "message": exc.message, "title": title}}

    def _version_doc(self) -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.public_url}/v3/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }

    def versions(self, req: ApiRequest) -> Reply:
        return Reply({"versions": {"values": [self._version_doc()]}}, 300)

    def version(self, req: ApiRequest) -> Any:
        return {"version": self._version_doc()}

    def catalog(self) -> list[dict[str, Any]]:
        out = []
        for service_type, name, url in self.cloud.catalog_entries():
            out.append(
                {
                    "id": f"{service_type}-service",
                    "type": service_type,
                    "name": name,
                    "endpoints": [
                        {
                            "id": f"{service_type}-{iface}",
                            "interface": iface,
                            "region": "RegionOne",
                            "region_id": "RegionOne",
                            "url": url,
                        }
                        for iface in ("public", "internal", "admin")
                    ],
                }
            )
        return out

    def _authenticate(self, body: dict[str, Any]) -> tuple[User, str]:
        auth = body.get("auth") if isinstance(body, dict) else None
        identity = auth.get("identity") if isinstance(auth, dict) else None
        if not isinstance(identity, dict):
            raise CloudError("Invalid input for field 'identity'")
        methods = identity.get("methods") or []
        users = self.cloud.users
        if "password" in methods:
            user_doc = (identity.get("password") or {}).get("user") or {}
            name, user_id = user_doc.get("name"), user_doc.get("id")
            user = next((u for u in users.values() if u.name == name or u.id == user_id), None)
            if user is None or user_doc.get("password") != user.password:
                raise Unauthorized("The request you have made requires authentication.")
        elif "token" in methods:
            tok_id = (identity.get("token") or {}).get("id")
            tok = self.cloud.tokens.validate(tok_id, self.world.clock.now())
            if tok is None:
                raise Unauthorized("The request you have made requires authentication.")
            user = users[tok.user_name]
        else:
            raise Unauthorized("The request you have made requires authentication.")
        scope = (auth or {}).get("scope") or {}
        project = scope.get("project") or {}
        project_name = project.get("name") or user.project
        if project.get("id"):
            project_name = self.world.projects.get(project["id"], "")
        if project_name not in self.world.projects.values():
            raise Unauthorized(f"Could not find project: {project_name}.")
        return user, project_name

    def issue(self, req: ApiRequest) -> Reply:
        user, project_name = self._authenticate(req.body_dict())
        now = self.world.clock.now()
        project_id = next(k for k, v in self.world.projects.items() if v == project_name)
        token = Token(
            id=secrets.token_hex(16),
            user_id=user.id,
            user_name=user.name,
            project_id=project_id,
            project_name=project_name,
            roles=list(user.roles),
            issued=now,
            expires=now + TOKEN_TTL,
        )
        self.cloud.tokens.tokens[token.id] = token
        return Reply(self._token_body(token), 201, {"X-Subject-Token": token.id})

    def _token_body(self, token: Token) -> dict[str, Any]:
        domain = {"id": "default", "name": "Default"}
        return {
            "token": {
                "methods": ["password"],
                "user": {"id": token.user_id, "name": token.user_name, "domain": domain},
                "project": {"id": token.project_id, "name": token.project_name, "domain": domain},
                "roles": [{"id": f"role-{r}", "name": r} for r in token.roles],
                "catalog": self.catalog(),
                "expires_at": iso(token.expires, micro=True),
                "issued_at": iso(token.issued, micro=True),
                "audit_ids": [token.id[:22]],
                "is_domain": False,
            }
        }

    def check(self, req: ApiRequest) -> Any:
        now = self.world.clock.now()
        if self.cloud.tokens.validate(req.headers.get("X-Auth-Token"), now) is None:
            raise Unauthorized("The request you have made requires authentication.")
        subject = self.cloud.tokens.validate(req.headers.get("X-Subject-Token"), now)
        if subject is None:
            raise NotFound("Could not find token.")
        return Reply(self._token_body(subject), 200, {"X-Subject-Token": subject.id})

    def get_catalog(self, req: ApiRequest) -> Any:
        return {"catalog": self.catalog()}

    def projects(self, req: ApiRequest) -> Any:
        return {
            "projects": [
                {"id": pid, "name": name, "domain_id": "default", "enabled": True}
                for pid, name in self.world.projects_list()
            ]
        }
