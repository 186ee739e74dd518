"""Screen-pop headers: masking, safe values, limits."""

from __future__ import annotations

from hotline.acd import screenpop


def test_mask_keeps_the_last_three_of_long_values_only() -> None:
    assert screenpop.mask("2950123456") == "*******456"
    assert screenpop.mask("1234") == "****"
    assert screenpop.mask("1234567") == "*******"


def test_values_cannot_inject_headers() -> None:
    headers = screenpop.screen_pop(
        call_id="c\r\nVia: evil",
        queue="q",
        waited=1.4,
        priority=0,
        variables={"x y": "a\nb", "ok": True, "none": None, "n": 7},
    )
    assert all("\r" not in v and "\n" not in v for _, v in headers)
    assert dict(headers) == {
        "X-Hotline-Call-ID": "c Via: evil",
        "X-Hotline-Queue": "q",
        "X-Hotline-Waited": "1",
        "X-Hotline-Priority": "0",
        "X-Hotline-Var-x-y": "a b",
        "X-Hotline-Var-ok": "true",
        "X-Hotline-Var-none": "",
        "X-Hotline-Var-n": "7",
    }


def test_limits() -> None:
    many = {f"v{i}": "x" * 500 for i in range(100)}
    headers = screenpop.screen_pop(call_id="c", queue="q", waited=0, priority=0, variables=many)
    variables = [v for k, v in headers if k.startswith("X-Hotline-Var-")]
    assert len(variables) == screenpop.MAX_VARIABLES
    assert all(len(v) == screenpop.MAX_VALUE for v in variables)
