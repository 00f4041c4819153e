"""`KubeClient` over kubernetes-asyncio: the only module that imports that library.

kubernetes-asyncio brings what is tedious to get right by hand: kubeconfig parsing (tokens, client
certificates, exec plugins, CA files), in-cluster service-account configuration, and an aiohttp
pool with the right TLS settings. We use it below its typed layer (`ApiClient.call_api` with
`_preload_content=False`) because the controller works on plain JSON: its generated `Watch`
re-watches a 410 Gone from the same stale resourceVersion, and its PATCH picks a JSON-patch
content type for dict bodies; both are simpler to avoid than to work around.

Everything foreign (ApiException, aiohttp and TLS errors, timeouts) becomes `KubeError` here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from kbroker.controller.kube.api import JSON, KubeError, Obj
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

REQUEST_TIMEOUT = 30.0


async def connect(kubeconfig: Path | None) -> ApiKubeClient:
    """A client from a kubeconfig file, else from the pod's service account."""
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig is not None:
            await k8s_config.load_kube_config(
                config_file=str(kubeconfig), client_configuration=configuration
            )
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError, ValueError) as exc:
        raise KubeError(0, f"cannot load Kubernetes configuration: {exc}") from exc
    return ApiKubeClient(k8s_client.ApiClient(configuration))


class ApiKubeClient:
    def __init__(self, api: k8s_client.ApiClient) -> None:
        self._api = api

    @property
    def server(self) -> str:
        """The API server's URL (ApiServerSource events carry it as their `source`)."""
        return str(self._api.configuration.host)

    async def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str,
        timeout: float | aiohttp.ClientTimeout,
    ) -> Any:
        try:
            return await self._api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": JSON, "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            raise KubeError(int(exc.status or 0), str(exc.reason)) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeError(0, f"{method} {path}: {exc!r}") from exc

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Obj:
        resp = await self._call(method, path, query, body, content_type, REQUEST_TIMEOUT)
        try:
            raw = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeError(0, f"{method} {path}: {exc!r}") from exc
        finally:
            resp.release()
        return _decode(method, path, int(resp.status), raw)

    async def watch(
        self, path: str, resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[Obj]:
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        # The server ends the watch after timeout_seconds; the client waits a little longer.
        timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)
        resp = await self._call("GET", path, query, None, JSON, timeout)
        try:
            if not 200 <= resp.status < 300:
                _decode("WATCH", path, int(resp.status), await resp.read())
            while True:
                try:
                    line = await resp.content.readline()
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    raise KubeError(0, f"watch {path}: {exc!r}") from exc
                if not line:
                    return
                if line.strip():
                    event: Obj = orjson.loads(line)
                    yield event
        finally:
            resp.release()

    async def close(self) -> None:
        await self._api.close()
        await asyncio.sleep(0)  # let aiohttp finish closing its connector's transports


def _decode(method: str, path: str, status: int, raw: bytes) -> Obj:
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        data = {"message": raw[:200].decode(errors="replace")}
    if not 200 <= status < 300:
        message = data.get("message") if isinstance(data, dict) else None
        raise KubeError(status, f"{method} {path}: {message or raw[:200]!r}")
    if not isinstance(data, dict):
        raise KubeError(status, f"{method} {path}: expected a JSON object")
    return data
