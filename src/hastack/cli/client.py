"""The ``hastack`` command's client of the REST API (hastack.api): one method per endpoint, each
returning the API's document (hastack.api.models).

Every failure, whatever its layer (no answer, a refused token, an unknown host, a document this
client cannot read), becomes one :class:`ApiError` whose message is a sentence an operator can act
on.  The ``requests`` session is a parameter: the transport seam.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from pydantic import BaseModel, ValidationError

from hastack.api.models import (
    Accepted,
    ActionBody,
    ErrorBody,
    EventList,
    HostDetail,
    HostList,
    OperationDetail,
    OperationList,
    Status,
    WhatIf,
)

DEFAULT_URL = "http://127.0.0.1:7480"
TOKEN_HELP = "--token, --token-file, $HASTACK_TOKEN or --os-cloud"

Doc = TypeVar("Doc", bound=BaseModel)


class ApiError(Exception):
    """A failed API call, in one line: printed as ``hastack: error: ...``, exit status 1.
    ``status``: the HTTP status of the refusal; None when there was no answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- where and who


def resolve_url(url: str | None, env: Mapping[str, str] = os.environ) -> str:
    return (url or env.get("HASTACK_URL") or DEFAULT_URL).rstrip("/")


def resolve_token(
    token: str | None,
    token_file: Path | None,
    os_cloud: str | None,
    env: Mapping[str, str] = os.environ,
) -> str | None:
    """The token to send: the options first (--token, --token-file, --os-cloud), then the
    environment ($HASTACK_TOKEN, then a Keystone token for $OS_CLOUD); None: none given."""
    if token:
        return token
    if token_file is not None:
        try:
            text = token_file.read_text().strip()
        except OSError as exc:
            raise ApiError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        if not text:
            raise ApiError(f"the token file {token_file} is empty")
        return text
    if os_cloud:
        return keystone_token(os_cloud)
    if env.get("HASTACK_TOKEN"):
        return env["HASTACK_TOKEN"]
    if env.get("OS_CLOUD"):
        return keystone_token(env["OS_CLOUD"])
    return None


def keystone_token(cloud: str) -> str:
    """A Keystone token for ``cloud`` of clouds.yaml (found where openstacksdk looks for it)."""
    import openstack  # noqa: PLC0415 (slow to import; only for --os-cloud)
    from keystoneauth1 import exceptions as ksa  # noqa: PLC0415

    try:
        conn = openstack.connect(cloud=cloud)
        try:
            return str(conn.auth_token)
        finally:
            conn.close()
    except (openstack.exceptions.SDKException, ksa.ClientException) as exc:
        raise ApiError(f"cannot get a Keystone token for cloud {cloud!r}: {exc}") from None


# ---------------------------------------------------------------- the client


class ApiClient:
    """The hastack REST API at ``url``, authenticated by ``token`` (None: anonymous)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        *,
        verify: bool | str = True,
    ) -> None:
        """``verify``: a CA bundle's path for an https API with a private CA (passed with each
        request: requests lets $REQUESTS_CA_BUNDLE override a session's own setting)."""
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.session = session or requests.Session()
        self.verify = verify

    # ------------------------------------------------------------ reads

    def status(self) -> Status:
        return self._get(Status, "/v1/status")

    def hosts(self, state: str | None = None) -> HostList:
        return self._get(HostList, "/v1/hosts", state=state)

    def host(self, name: str) -> HostDetail:
        return self._get(HostDetail, f"/v1/hosts/{_seg(name)}")

    def what_if(self, name: str) -> WhatIf:
        return self._get(WhatIf, f"/v1/hosts/{_seg(name)}/what-if")

    def operations(
        self, state: str | None = None, host: str | None = None, limit: int | None = None
    ) -> OperationList:
        return self._get(OperationList, "/v1/operations", state=state, host=host, limit=limit)

    def operation(self, op_id: str) -> OperationDetail:
        return self._get(OperationDetail, f"/v1/operations/{_seg(op_id)}")

    def events(
        self, host: str | None = None, since: float | None = None, limit: int | None = None
    ) -> EventList:
        return self._get(EventList, "/v1/events", host=host, since=since, limit=limit)

    # ------------------------------------------------------------ actions
    # each recorded for the leader's next tick, under the token's operator name

    def host_action(
        self, name: str, action: str, body: ActionBody, method: str = "POST"
    ) -> Accepted:
        """``action``: maintenance (POST: on, DELETE: off), confirm-off or rejoin."""
        return self._act(method, f"/v1/hosts/{_seg(name)}/{action}", body)

    def operation_action(self, op_id: str, action: str, body: ActionBody) -> Accepted:
        """``action``: retry or cancel."""
        return self._act("POST", f"/v1/operations/{_seg(op_id)}/{action}", body)

    def cluster_action(self, action: str, body: ActionBody) -> Accepted:
        """``action``: pause, resume or ack-cliff."""
        return self._act("POST", f"/v1/cluster/{action}", body)

    def _act(self, method: str, path: str, body: ActionBody) -> Accepted:
        answer = self.call(method, path, json_body=body.model_dump())
        return _parse(Accepted, answer, f"{method} {path}")

    # ------------------------------------------------------------ the wire

    def _get(self, model: type[Doc], path: str, **params: Any) -> Doc:
        query = {k: v for k, v in params.items() if v is not None}
        return _parse(model, self.call("GET", path, params=query), f"GET {path}")

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        """One request; its JSON answer, or ApiError."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["X-Auth-Token"] = self.token
        try:
            response = self.session.request(
                method,
                self.url + path,
                params=params,
                json=json_body,
                headers=headers,
                timeout=self.timeout,
                verify=self.verify,
            )
        except requests.Timeout:
            raise ApiError(
                f"the hastack API at {self.url} did not answer within {self.timeout:g}s"
            ) from None
        except requests.exceptions.SSLError:
            raise ApiError(
                f"the hastack API at {self.url} presented a certificate this client cannot "
                "verify: give its CA with --cacert or $HASTACK_CACERT"
            ) from None
        except requests.ConnectionError as exc:
            raise ApiError(f"cannot reach the hastack API at {self.url}: {_why(exc)}") from None
        except requests.RequestException as exc:
            raise ApiError(f"request to the hastack API at {self.url} failed: {exc}") from None
        if response.status_code >= 400:
            raise self._refusal(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"{self.url} answered {method} {path} with something other than JSON "
                "(is it a hastack API?)"
            ) from None

    def _refusal(self, response: requests.Response) -> ApiError:
        try:
            error = ErrorBody.model_validate(response.json()).error  # precise, field included
        except (ValueError, ValidationError):
            text = " ".join(response.text.split())[:200]
            error = f"HTTP {response.status_code} from {self.url}: {text or response.reason}"
        status = response.status_code
        if status == 401 and not self.token:
            error = f"{error} (no token given: use {TOKEN_HELP})"
        elif status == 401:
            error = f"{error} (the API did not accept the token given)"
        elif status == 403 and "operator role" not in error:
            error = f"{error} (this needs a token with the operator role)"
        return ApiError(error, status)


def _seg(text: str) -> str:
    return quote(text, safe="")


def _parse(model: type[Doc], answer: Any, what: str) -> Doc:
    try:
        return model.model_validate(answer)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise ApiError(
            f"the answer to {what} is not a {model.__name__} this client understands "
            f"({where}: {first['msg']}; a different hastack version?)"
        ) from None


def _why(exc: requests.ConnectionError) -> str:
    """'Connection refused' rather than urllib3's three nested exception names."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if found:
        return found.group(1).strip()
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return text
