"""The retry policy and the message types as plain data: no sockets, so every branch of the
decisions both drivers share is pinned here (the drivers' tests prove them on the wire)."""

from __future__ import annotations

import time

import pytest

from durastate.errors import BackendUnavailable, ConfigurationError
from durastate.transport import (
    Failure,
    HttpRequest,
    HttpResponse,
    OutcomeUnknown,
    RetryPolicy,
    TransportOptions,
    default_may_have_landed,
)
from durastate.transport.connections import proxy_of

POST = HttpRequest.to(
    "POST",
    "https://acct.table.core.windows.net:443",
    "/t",
    query=[("sig", "SECRETSIG")],
    headers={"Authorization": "SharedKey acct:SECRETMAC"},
    body=b"{}",
)
GET = HttpRequest.to("GET", "http://127.0.0.1:8000", "/t")
LOST = Failure("response", "timed out")
REFUSED = Failure("connect", "ConnectionRefusedError")


def answer(status: int, **headers: str) -> HttpResponse:
    return HttpResponse(status, headers, b"")


def policy(**options: object) -> RetryPolicy:
    return RetryPolicy(TransportOptions(backoff_base=0.01, **options), seed=5)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [200, 204, 400, 404, 409, 412])
def test_final_answers_are_returned_at_once(status: int) -> None:
    response = answer(status)
    assert policy().call(POST).judge(response) is response


def test_a_503_is_retried_after_a_jittered_delay_then_answered() -> None:
    call = policy().call(POST)
    delay = call.judge(answer(503))
    assert isinstance(delay, float)
    assert 0 <= delay <= 0.01
    final = call.judge(answer(200))
    assert isinstance(final, HttpResponse)
    assert (final.status, final.attempts, final.outcome_unknown) == (200, 2, False)


def test_the_attempt_budget_ends_in_backend_unavailable_without_secrets() -> None:
    call = policy(max_attempts=3).call(POST)
    call.judge(answer(503))
    call.judge(answer(500, **{"x-ms-error-code": "InternalError"}))
    with pytest.raises(BackendUnavailable) as caught:
        call.judge(answer(503))
    message = str(caught.value)
    assert "gave up after 3 attempt(s)" in message
    assert "POST https://acct.table.core.windows.net/t" in message
    assert "HTTP 503" in message
    assert "SECRET" not in message
    assert "sig" not in message


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    call = policy(backoff_cap=0.5).call(GET)
    assert call.judge(answer(429, **{"retry-after": "0.3"})) == pytest.approx(0.3, abs=0.011)
    assert call.judge(answer(429, **{"retry-after": "30"})) == 0.5


def test_no_sleep_runs_past_the_deadline() -> None:
    call = policy(deadline=0.2, backoff_cap=1.0).call(GET)
    with pytest.raises(BackendUnavailable, match="deadline reached"):
        call.judge(answer(429, **{"retry-after": "1"}))


def test_timeouts_shrink_to_what_is_left_of_the_deadline() -> None:
    call = policy(connect_timeout=2, read_timeout=10, deadline=3).call(GET)
    first = call.timeouts()
    assert first.connect == 2
    assert 2.9 < first.read <= 3
    call.deadline = time.monotonic() + 0.5
    later = call.timeouts()
    assert later.connect <= 0.5
    assert later.read <= 0.5


def test_an_unsafe_request_whose_answer_was_lost_is_not_retried_without_a_hook() -> None:
    with pytest.raises(OutcomeUnknown, match="may have been applied"):
        policy().call(POST).judge(LOST)


@pytest.mark.parametrize("failure", [REFUSED, Failure("send", "BrokenPipeError")])
def test_an_unsent_request_is_retried_whatever_its_method(failure: Failure) -> None:
    assert isinstance(policy().call(POST).judge(failure), float)


def test_a_safe_request_is_retried_after_a_lost_answer() -> None:
    call = policy().call(GET)
    assert isinstance(call.judge(LOST), float)
    final = call.judge(answer(200))
    assert isinstance(final, HttpResponse)
    assert not final.outcome_unknown


def test_a_500_to_an_unsafe_request_without_hook_is_handed_back_not_retried() -> None:
    call = policy().call(POST)
    final = call.judge(answer(500))
    assert isinstance(final, HttpResponse)
    assert final.status == 500
    assert isinstance(call.judge(answer(503)), float)  # 503: refused, nothing applied


def test_with_a_hook_a_possibly_landed_attempt_is_retried_and_the_answer_flagged() -> None:
    seen: list[tuple[str, Failure]] = []

    def hook(request: HttpRequest, failure: Failure) -> bool:
        seen.append((request.method, failure))
        return failure.status != 503

    call = policy().call(POST, hook)
    assert isinstance(call.judge(answer(503)), float)
    assert isinstance(call.judge(LOST), float)
    final = call.judge(answer(412))
    assert isinstance(final, HttpResponse)
    assert (final.status, final.attempts, final.outcome_unknown) == (412, 3, True)
    assert [failure.reason for _, failure in seen] == ["HTTP 503", "timed out"]


def test_a_hook_that_says_not_landed_leaves_the_answer_unflagged() -> None:
    call = policy().call(POST, lambda request, failure: False)
    assert isinstance(call.judge(LOST), float)
    final = call.judge(answer(204))
    assert isinstance(final, HttpResponse)
    assert not final.outcome_unknown


def test_backoff_is_full_jitter_within_the_exponential_bound() -> None:
    retry_policy = RetryPolicy(TransportOptions(backoff_base=0.1, backoff_cap=0.5), seed=1)
    third = [retry_policy.backoff(2) for _ in range(200)]
    capped = [retry_policy.backoff(10) for _ in range(200)]
    assert all(0 <= d <= 0.4 for d in third)
    assert max(third) > 0.3
    assert min(third) < 0.1
    assert all(0 <= d <= 0.5 for d in capped)
    assert max(capped) > 0.45


# -- messages ---------------------------------------------------------------------------------


def test_requests_lower_header_names_and_drop_default_ports() -> None:
    assert POST.host == "acct.table.core.windows.net"
    assert POST.headers == {"authorization": "SharedKey acct:SECRETMAC"}
    assert POST.path == "/t"
    request = HttpRequest.to("get", "http://127.0.0.1:80/acct", query=[("a b", "é/+")])
    assert request.method == "GET"
    assert request.url == "http://127.0.0.1/acct?a%20b=%C3%A9%2F%2B"
    assert HttpRequest.to("GET", "http://h:1/acct/", "/t").path == "/acct/t"
    assert HttpRequest.to("GET", "http://h:1/acct/").path == "/acct/"
    assert HttpRequest.to("GET", "http://h:1").path == "/"


@pytest.mark.parametrize("url", ["ftp://host/x", "http://user:pw@host/", "not a url", "https://"])
def test_bad_endpoints_are_configuration_errors_without_credentials(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        HttpRequest.to("GET", url)
    assert "pw" not in str(caught.value)


def test_reprs_hide_query_values_header_values_and_bodies() -> None:
    text = repr(POST) + repr(HttpResponse(200, {"set-cookie": "SECRET"}, b"SECRET"))
    assert "SECRET" not in text
    assert "authorization" in text
    assert "POST https://acct.table.core.windows.net/t" in text


def test_a_proxy_is_opt_in_and_its_password_stays_hidden() -> None:
    assert proxy_of(TransportOptions()) is None
    options = TransportOptions(proxy="http://alice:hunter%3D2@proxy.local:3128")  # type: ignore[arg-type]
    proxy = proxy_of(options)
    assert proxy is not None
    assert (proxy.host, proxy.port, proxy.authorization) == (
        "proxy.local",
        3128,
        "Basic YWxpY2U6aHVudGVyPTI=",
    )
    assert "hunter" not in repr(options)
    assert "hunter" not in repr(proxy)
    with pytest.raises(ConfigurationError):
        proxy_of(TransportOptions(proxy="socks5://proxy.local:1080"))  # type: ignore[arg-type]


def test_response_heads_are_parsed_like_the_email_parser_does() -> None:
    """The lean head parser agrees with http.client's own on names, values and repeats."""
    import email.parser

    from durastate.transport.response_head import ResponseHeaders

    head = [
        b"ETag: W/\"datetime'2026-11-29T07%3A30%3A05Z'\"\r\n",
        b"x-ms-request-id:  abc \r\n",
        b"Set-Cookie: a=1\r\n",
        b"set-cookie: b=2\r\n",
        b"X-Folded: first\r\n",
        b"  second\r\n",
        b"Content-Length: 0\r\n",
        b"\r\n",
    ]
    ours = ResponseHeaders(head)
    theirs = email.parser.Parser().parsestr(b"".join(head).decode("iso-8859-1"), headersonly=True)
    assert ours.get("etag") == theirs["etag"]
    assert ours.get("X-MS-REQUEST-ID") == "abc"
    assert ours.get_all("set-cookie") == theirs.get_all("set-cookie") == ["a=1", "b=2"]
    assert ours.by_name["set-cookie"] == "a=1, b=2"
    assert ours.get("x-folded") == "first second"
    assert ours.get("missing", "default") == "default"
    assert [name for name, _ in ours.items()] == list(theirs.keys())


def test_a_failure_no_retry_can_cure_ends_the_call_at_once() -> None:
    call = policy(max_attempts=5).call(GET)
    with pytest.raises(BackendUnavailable, match=r"not retried after 1 attempt"):
        call.judge(Failure("connect", "TLS certificate verification failed", retryable=False))


def test_a_call_that_ends_after_a_possibly_landed_attempt_raises_outcome_unknown() -> None:
    """The budget runs out after an attempt that may have been applied: the error must say
    so, or the core would report a write that may have landed as not done."""
    call = policy(max_attempts=3).call(POST, lambda request, failure: True)
    assert isinstance(call.judge(LOST), float)
    assert isinstance(call.judge(answer(503)), float)
    with pytest.raises(OutcomeUnknown, match="earlier attempt may have been applied"):
        call.judge(answer(503))
    clean = policy(max_attempts=2).call(POST, default_may_have_landed)
    assert isinstance(clean.judge(answer(503)), float)
    with pytest.raises(BackendUnavailable) as caught:
        clean.judge(REFUSED)
    assert not isinstance(caught.value, OutcomeUnknown)
