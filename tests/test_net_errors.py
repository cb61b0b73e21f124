"""The one mapping of failures on the wire to the error tree (``net/_errors.py``): every
exception class httpx2 exports and every socket, ssl and OS error the fast path meets has a
decided outcome; a class a future httpx2 adds fails here until it is mapped. Pure logic: the
exceptions are built, not provoked (the retry tests provoke the real ones on 127.0.0.1)."""

from __future__ import annotations

import errno
import inspect
import socket
import ssl

import httpx2
import pytest

from nbmodels._config import Settings
from nbmodels.errors import InsufficientSpaceError, NbmodelsError, NetworkError
from nbmodels.net import TRANSLATED, RetryableError, retryable_status, status_failure, translate
from nbmodels.net._errors import HTTPX2_ERRORS, SOCKET_ERRORS, Kind, kind_of

WHERE = "http://h.test/m.bin"
#: What each exception class of httpx2 must become: the short reason of a RetryableError,
#: "fail" (a NetworkError at once) or "raise" (a bug of nbmodels, raised as it is).
HTTPX2_OUTCOMES = {
    "HTTPError": "raise",
    "RequestError": "fail",
    "TransportError": "connection lost",
    "TimeoutException": "timed out",
    "ConnectTimeout": "timed out",
    "ReadTimeout": "timed out",
    "WriteTimeout": "timed out",
    "PoolTimeout": "timed out",
    "NetworkError": "connection lost",
    "ConnectError": "could not connect",
    "ReadError": "connection lost",
    "WriteError": "connection lost",
    "CloseError": "connection lost",
    "ProtocolError": "connection lost",
    "LocalProtocolError": "connection lost",
    "RemoteProtocolError": "connection lost",
    "ProxyError": "connection lost",
    "UnsupportedProtocol": "connection lost",
    "SSEError": "connection lost",
    "DecodingError": "fail",
    "TooManyRedirects": "fail",
    "InvalidURL": "fail",
    "HTTPStatusError": "raise",
    "CookieConflict": "raise",
    "StreamError": "raise",
    "StreamConsumed": "raise",
    "StreamClosed": "raise",
    "ResponseNotRead": "raise",
    "RequestNotRead": "raise",
}


def _exported_exceptions() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name in httpx2.__all__
        if inspect.isclass(obj := getattr(httpx2, name)) and issubclass(obj, BaseException)
    }


def _instance(cls: type[BaseException]) -> BaseException:
    if cls is httpx2.HTTPStatusError:
        request = httpx2.Request("GET", WHERE)
        return cls("boom", request=request, response=httpx2.Response(500, request=request))
    try:
        return cls("boom")
    except TypeError:
        return cls()


def _outcome(exc: BaseException, **context: int | float) -> str:
    mapped = translate(exc, WHERE, **context)  # type: ignore[arg-type]
    if mapped is None:
        return "raise"
    if isinstance(mapped, RetryableError):
        return mapped.short
    assert isinstance(mapped, NetworkError), mapped
    return "fail"


def test_every_exception_class_httpx2_exports_is_mapped() -> None:
    exported = _exported_exceptions()
    assert set(exported.values()) == set(HTTPX2_ERRORS), (
        "httpx2 exports exception classes that net/_errors.py does not map (or no longer "
        f"exports some it maps): {sorted(set(exported) ^ {c.__name__ for c in HTTPX2_ERRORS})}"
    )
    assert set(exported) == set(HTTPX2_OUTCOMES)


@pytest.mark.parametrize("name", sorted(HTTPX2_OUTCOMES))
def test_each_httpx2_exception_maps_to_its_outcome(name: str) -> None:
    exc = _instance(getattr(httpx2, name))
    expected = HTTPX2_OUTCOMES[name]
    assert _outcome(exc) == expected
    # Callers catch exactly what is translated: a bug is never swallowed into a retry.
    assert isinstance(exc, TRANSLATED) == (expected != "raise")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection refused"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "connection lost"),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), "connection lost"),
        (ConnectionAbortedError(errno.ECONNABORTED, "aborted"), "connection lost"),
        (ConnectionError("connection closed early (EOF)"), "connection lost"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "connection lost"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "connection lost"),
        (BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"), "connection lost"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "host not found"),
        (ssl.SSLError(1, "record layer failure"), "connection lost"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "connection lost"),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "connection lost"),
        (TimeoutError("no data within the idle timeout"), "timed out"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v,
)
def test_each_socket_error_of_the_fast_path_maps_to_a_retry(exc: OSError, expected: str) -> None:
    assert kind_of(exc) in (Kind.CONNECTION, Kind.TIMEOUT)
    assert _outcome(exc) == expected


def test_socket_error_kinds_are_all_retried() -> None:
    assert set(SOCKET_ERRORS.values()) <= {Kind.CONNECTION, Kind.TIMEOUT}
    assert all(issubclass(cls, OSError) for cls in SOCKET_ERRORS)


def test_a_body_that_broke_off_says_where_and_a_stall_says_how_long() -> None:
    lost = translate(ConnectionResetError(errno.ECONNRESET, "reset"), WHERE, at=5, idle=30.0)
    assert isinstance(lost, RetryableError)
    assert lost.short == "connection lost"
    assert lost.reason == f"connection to {WHERE} lost at byte 5 (ConnectionResetError)"
    for stall in (TimeoutError(), httpx2.ReadTimeout("boom")):
        idle = translate(stall, WHERE, at=5, idle=30.0)
        assert isinstance(idle, RetryableError)
        assert (idle.short, idle.reason) == ("no data for 30 s", f"no data for 30 s from {WHERE}")


def test_refused_is_found_behind_httpx2s_wrapping() -> None:
    """httpx2 reports "All connection attempts failed" with the socket errors as causes."""
    wrapped = httpx2.ConnectError("All connection attempts failed")
    wrapped.__cause__ = ExceptionGroup(
        "attempts",
        [
            ConnectionRefusedError(errno.ECONNREFUSED, "refused (IPv4)"),
            ConnectionRefusedError(errno.ECONNREFUSED, "refused (IPv6)"),
        ],
    )
    refused = translate(wrapped, WHERE)
    assert isinstance(refused, RetryableError) and refused.refused
    assert refused.reason == f"connection to {WHERE} refused"
    # One address refused, another unreachable: something may listen there after all.
    wrapped.__cause__ = ExceptionGroup(
        "attempts",
        [
            ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
            OSError(errno.EHOSTUNREACH, "unreachable"),
        ],
    )
    partly = translate(wrapped, WHERE)
    assert isinstance(partly, RetryableError) and not partly.refused
    assert partly.short == "could not connect"


def test_nbmodels_own_errors_and_other_exceptions_pass_as_they_are() -> None:
    full = InsufficientSpaceError("full", needed=2, available=1, path="/x")
    assert isinstance(full, OSError)  # an OSError, but nbmodels' own: never a retry
    for exc in (full, NbmodelsError("x"), ValueError("x"), KeyError("x"), RuntimeError("x")):
        assert kind_of(exc) is None
        assert translate(exc, WHERE) is None


def test_a_request_that_cannot_be_made_fails_at_once_saying_what() -> None:
    failed = translate(httpx2.InvalidURL("Invalid port: 'x'"), WHERE)
    assert isinstance(failed, NetworkError)
    assert str(failed) == f"Cannot request {WHERE}: InvalidURL."


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        *[(status, True) for status in (408, 429, 500, 503, 599)],
        *[(status, False) for status in (200, 206, 400, 401, 404, 416, 499, 600)],
    ],
)
def test_which_answers_are_retried(status: int, retried: bool) -> None:
    assert retryable_status(status) is retried
    headers = httpx2.Headers({"Retry-After": "7"})
    failure = status_failure(status, headers, WHERE, Settings())
    if not retried:
        assert failure is None
        return
    assert isinstance(failure, RetryableError)
    assert (failure.short, failure.retry_after) == (f"HTTP {status}", 7.0)
    assert failure.reason == f"HTTP {status} from {WHERE}"
