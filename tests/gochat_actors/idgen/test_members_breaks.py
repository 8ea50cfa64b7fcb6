"""Adversarial review of ``[idgen] etcd`` member lists (issue 20): one member written
twice in two spellings must be refused like an exact repeat (a paused member would
otherwise cost two request timeouts per request, the whole renewal slack)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gochat_actors.idgen import IdGenSettings


@pytest.mark.parametrize(
    "etcd",
    [
        "http://127.0.0.1:23791,http://127.0.0.1:23791/,http://127.0.0.1:23792",
        "http://127.0.0.1:23791,HTTP://127.0.0.1:23791,http://127.0.0.1:23792",
        "http://etcd-a:23791,http://ETCD-A:23791,http://127.0.0.1:23792",
        "http://etcd-a,http://etcd-a:80,http://127.0.0.1:23792",
        "https://etcd-a,https://etcd-a:443,https://127.0.0.1:23792",
        "http://u:pw-s3cret@127.0.0.1:23791,http://127.0.0.1:23791,http://127.0.0.1:23792",
    ],
)
def test_one_member_in_two_spellings_is_a_repeat(etcd: str) -> None:
    with pytest.raises(ValidationError) as info:
        IdGenSettings.model_validate({"etcd": etcd})
    assert "member 2 of 3 repeats member 1" in str(info.value)
    assert "pw-s3cret" not in str(info.value)  # no password in the message


def test_distinct_members_are_not_repeats() -> None:
    etcd = "http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.2:23791"
    settings = IdGenSettings.model_validate({"etcd": etcd})
    assert len(settings.etcd_members) == 3
