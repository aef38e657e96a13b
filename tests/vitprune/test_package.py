from __future__ import annotations

import vitprune


def test_every_public_name_resolves() -> None:
    for name in vitprune.__all__:
        assert getattr(vitprune, name) is not None
    assert set(vitprune.__all__) <= set(dir(vitprune))


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        vitprune.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
