"""HTTP for the hosted services: timeouts on every request, retries with a cap, one-line errors, no key in any.

Stdlib ``urllib`` only. A request that can be sent twice safely (GET, DELETE) is retried up to ``retries``
times after 429 and 5xx answers, dropped connections and cut downloads, waiting what ``Retry-After`` asks
or else an exponential backoff. A submit (POST) makes a paid job, so it is retried only after what proves
the service made nothing: 429, 503 with a Retry-After, a refused connection; a timeout, a dropped
connection or another 5xx may have come after the job was made, so it ends the request at once. A
``Retry-After`` longer than ``max_wait`` is not shortened: the request stops, saying how long the service
asked to wait. Any other 4xx is reported at once, in one line, with the service's own message. Error texts
carry the method and path (never the query or headers) and pass through ``redact``, so no key can reach a
message. Redirects that leave the host drop the auth headers: a signed storage URL must not receive the key.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from ...errors import Cancelled, HostedError
from .credentials import MASK

RETRIED = frozenset({408, 425, 429, 500, 502, 503, 504})  # for requests that are safe to send again
IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE"})
AUTH_HEADERS = ("authorization", "x-goog-api-key", "x-api-key")
CHUNK = 1 << 16


@dataclass(frozen=True)
class Retry:
    """How hard to try: per-request timeout, retries of 429/5xx/dropped connections, and the waits between."""

    timeout: float = 60.0  # seconds, every request (connect and each read)
    retries: int = 5
    backoff: float = 2.0  # first wait without a Retry-After; doubles each time
    max_wait: float = 120.0  # the longest wait: a longer backoff is cut to it, a longer Retry-After stops the request


@dataclass(frozen=True)
class Multipart:
    """A multipart/form-data body: text fields and files as (name, filename, content type, bytes)."""

    fields: Mapping[str, str]
    files: tuple[tuple[str, str, str, bytes], ...] = ()

    def encode(self) -> tuple[bytes, str]:
        """The body and its Content-Type."""
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []
        for name, value in self.fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        for name, filename, content_type, data in self.files:
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            )
            parts.append(head.encode() + data + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, dropping auth headers when the redirect leaves the original host."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            for name in list(new.headers):
                if name.lower() in AUTH_HEADERS:
                    del new.headers[name]
        return new


class Refused(HostedError):
    """The service made nothing, so nothing is billed: a 4xx answer, or a submit turned away (429, 503, refused)."""


class Http:
    """One service's HTTP client: the base URL, how to read its error bodies, and which secrets to mask."""

    def __init__(
        self,
        service: str,
        base_url: str,
        retry: Retry,
        error_message: Callable[[Any], str | None],
        secrets: Iterable[str],
        cancel: threading.Event,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self.error_message = error_message
        self.secrets = [secret for secret in secrets if secret]
        self.cancel = cancel

    def redact(self, text: str, headers: Mapping[str, str] | None = None) -> str:
        """``text`` with every secret, and every auth header value sent (a token made from a key), masked."""
        sent = [value for name, value in (headers or {}).items() if name.lower() in AUTH_HEADERS]
        tokens = [value.split(" ", 1)[1] for value in sent if " " in value]
        for secret in sorted({*self.secrets, *sent, *tokens} - {""}, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` (a path under the base URL, or a full URL the service returned)."""
        return path if "://" in path else f"{self.base_url}/{path.lstrip('/')}"

    def json(self, method: str, path: str, headers: Mapping[str, str], body: Any = None) -> Any:
        """Send ``body`` (a JSON value, a ``Multipart`` or None) and return the decoded JSON answer (None if empty)."""
        data, content_type = None, None
        if isinstance(body, Multipart):
            data, content_type = body.encode()
        elif body is not None:
            data, content_type = json.dumps(body).encode("utf-8"), "application/json"
        all_headers = {"Accept": "application/json", **headers}
        if content_type:
            all_headers["Content-Type"] = content_type
        raw = self._send(method, path, all_headers, data, lambda response: response.read())
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HostedError(
                f"{self.service}: {method} {self._where(path)} answered with something that is not JSON"
            ) from None

    def download(self, path: str, headers: Mapping[str, str], target: BinaryIO) -> int:
        """Stream ``path`` into ``target``; a short body (fewer bytes than Content-Length) is retried whole."""

        def stream(response: Any) -> int:
            target.seek(0)
            target.truncate()
            expected = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(CHUNK):
                if self.cancel.is_set():
                    raise Cancelled()
                target.write(chunk)
                received += len(chunk)
            if expected is not None and received != int(expected):
                raise _Truncated(f"the download stopped at {received} of {expected} bytes")
            return received

        return self._send("GET", path, {"Accept": "*/*", **headers}, None, stream)

    def _send(
        self, method: str, path: str, headers: Mapping[str, str], data: bytes | None, read: Callable[[Any], Any]
    ) -> Any:
        """One request, retried as the module says (a submit only when nothing was made); ``read`` reads the answer."""
        where = self._where(path)
        idempotent = method in IDEMPOTENT
        for attempt in range(self.retry.retries + 1):
            if self.cancel.is_set():
                raise Cancelled()
            request = urllib.request.Request(self.url(path), data=data, headers=dict(headers), method=method)
            wait: float | None = None
            try:
                # A new opener per request: it reads the proxy settings ($https_proxy, $no_proxy) as they are now.
                opener = urllib.request.build_opener(_SameHostRedirects)
                with opener.open(request, timeout=self.retry.timeout) as response:
                    return read(response)
            except urllib.error.HTTPError as exc:
                body = _read_error_body(exc)
                wait = _retry_after(exc.headers.get("Retry-After"))
                nothing_made = exc.code == 429 or (exc.code == 503 and wait is not None)
                retried = exc.code in RETRIED if idempotent else nothing_made
                if not retried or attempt == self.retry.retries:
                    reason = self.error_message(body) or (exc.reason if isinstance(exc.reason, str) else "")
                    tries = f" after {attempt + 1} tries" if retried else ""
                    refused = (exc.code < 500 and exc.code not in RETRIED) or (not idempotent and nothing_made)
                    message = f"{self.service}: HTTP {exc.code} from {method} {where}{tries}: {reason or 'no reply'}"
                    if not refused and not idempotent:
                        message += "; the service may have made the job, so it is not sent again"
                    raise (Refused if refused else HostedError)(self.redact(message, headers)) from None
                if wait is not None and wait > self.retry.max_wait:
                    raise (HostedError if idempotent else Refused)(
                        f"{self.service}: HTTP {exc.code} from {method} {where}: the service asks to wait {wait:g} s "
                        f"before trying again, longer than retry_max_wait ({self.retry.max_wait:g} s)"
                    ) from None
            except (urllib.error.URLError, http.client.HTTPException, _Truncated, OSError) as exc:
                cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                refused = isinstance(cause, ConnectionRefusedError)
                if not idempotent and not refused:
                    raise HostedError(
                        self.redact(
                            f"{self.service}: {method} {where} got no answer ({cause}); the "
                            "service may have made the job, so it is not sent again",
                            headers,
                        )
                    ) from None
                if attempt == self.retry.retries:
                    error = Refused if refused and not idempotent else HostedError
                    raise error(
                        self.redact(
                            f"{self.service}: {method} {where} failed after {attempt + 1} tries: {cause}", headers
                        )
                    ) from None
            delay = wait if wait is not None else min(self.retry.backoff * 2**attempt, self.retry.max_wait)
            if self.cancel.wait(delay):
                raise Cancelled()
        raise AssertionError("unreachable")

    def _where(self, path: str) -> str:
        """The URL's path, for messages: no host, query or fragment (a signed URL's query is a credential)."""
        return urllib.parse.urlsplit(self.url(path)).path


class _Truncated(Exception):
    """A download that ended before its Content-Length."""


def _read_error_body(exc: urllib.error.HTTPError) -> Any:
    """An error answer's JSON body, its text if not JSON, or None."""
    try:
        raw = exc.read()
    except OSError:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", "replace").strip()[:300] or None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
